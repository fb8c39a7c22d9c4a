// A light guest-side driver for many vifs in one process (the vifs and workers scenarios): per guest
// DOMAIN one xenstore connection (the domain's own socket, so permissions apply), one GuestDomain
// (RAM, grant table, event-channel device); per vif two ring pages, one read-only data page, one
// event channel. src/sim/netfront is the faithful driver, but it holds two sim handles and an
// event-waker Worker per vif, which caps one process at ~120 vifs and the host at ~1000
// event-channel devices; this one does only what a connect and a tx flood need:
//   connect: wait for the backend's InitWait, write tx-ring-ref, rx-ring-ref, event-channel,
//   request-rx-copy and feature-rx-notify (Linux's talk_to_netback keys), switch to Connected,
//   and record when the backend reads Connected;
//   send: keep up to `depth` single-slot tx requests of one frame in flight, push, notify when
//   req_event asks; consume responses by polling (rsp_event left behind: the backend's notifies are
//   suppressed, as a busy netfront's NAPI poll does). No rx buffers are posted (--peer null has no rx).
import { openGuestDomain, type GuestDomain } from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { NETIF_RSP_OKAY, NETIF_TX_RING_SIZE } from "../../src/xen/netif.ts";
import { needsNotify } from "../../src/xen/ring.ts";
import { XenstoreClient } from "../../src/xenstore/index.ts";

const CONNECTED = "4";
const INIT_WAIT = "2";
const MASK = NETIF_TX_RING_SIZE - 1;

/** One queue of a light vif: its two ring pages, one read-only data page, one event channel. */
class LightQueue {
  readonly txFrame: number;
  readonly rxFrame: number;
  readonly txRef: number;
  readonly rxRef: number;
  readonly dataRef: number;
  readonly port: number;
  private readonly tx: DataView;
  private readonly txWords: Uint32Array;
  private prod = 0;
  private cons = 0;
  ok = 0;
  errors = 0;

  constructor(private readonly dom: LightDomain, frameBytes: Uint8Array) {
    const g = dom.guest;
    this.txFrame = g.allocPage();
    this.rxFrame = g.allocPage();
    for (const f of [this.txFrame, this.rxFrame]) {
      const v = g.pageView(f);
      const w = new Uint32Array(v.buffer, v.byteOffset, 1024);
      w.fill(0);
      w[1] = w[3] = 1; // SHARED_RING_INIT
    }
    const v = g.pageView(this.txFrame);
    this.tx = new DataView(v.buffer, v.byteOffset, 4096);
    this.txWords = new Uint32Array(v.buffer, v.byteOffset, 1024);
    const data = g.allocPage();
    g.pageView(data).set(frameBytes, 0);
    this.dataRef = g.grantAccess(0, data, true);
    this.txRef = g.grantAccess(0, this.txFrame, false);
    this.rxRef = g.grantAccess(0, this.rxFrame, false);
    this.port = g.evtchn.bindUnboundPort(0);
    this.frameLen = frameBytes.length;
  }
  private readonly frameLen: number;

  ackAll(): void {
    const words = this.txWords;
    let rsp = Atomics.load(words, 2) >>> 0;
    for (; rsp !== this.prod; rsp = (rsp + 1) >>> 0) this.tx.setInt16(64 + (rsp & MASK) * 12 + 2, NETIF_RSP_OKAY, true);
    Atomics.store(words, 2, rsp | 0);
  }

  pump(depth: number): number {
    const words = this.txWords;
    const rsp = Atomics.load(words, 2) >>> 0;
    let got = 0;
    while (this.cons !== rsp) {
      const st = this.tx.getInt16(64 + (this.cons & MASK) * 12 + 2, true);
      if (st === NETIF_RSP_OKAY) this.ok++;
      else this.errors++;
      this.cons = (this.cons + 1) >>> 0;
      got++;
    }
    const start = this.prod;
    while (((this.prod - this.cons) >>> 0) < depth) {
      const off = 64 + (this.prod & MASK) * 12;
      this.tx.setUint32(off, this.dataRef, true);
      this.tx.setUint16(off + 4, 0, true);
      this.tx.setUint16(off + 6, 0, true);
      this.tx.setUint16(off + 8, this.prod & 0xffff, true);
      this.tx.setUint16(off + 10, this.frameLen, true);
      this.prod = (this.prod + 1) >>> 0;
    }
    if (this.prod !== start) {
      Atomics.store(words, 0, this.prod | 0);
      if (needsNotify(this.prod, start, Atomics.load(words, 1) >>> 0)) this.dom.guest.evtchn.notify(this.port);
    }
    return got;
  }
}

export class LightVif {
  /** Its queues (Linux netfront's layout in xenstore: top-level keys for one, queue-<n>/ for more). */
  readonly queues: LightQueue[];
  /** performance.now() when the backend read Connected (NaN until then). */
  connectedAt = NaN;

  constructor(private readonly dom: LightDomain, readonly devid: number, frameBytes: Uint8Array, queues = 1) {
    this.queues = Array.from({ length: queues }, () => new LightQueue(dom, frameBytes));
  }

  /** tx responses with NETIF_RSP_OKAY / other statuses, over all queues. */
  get ok(): number {
    return this.queues.reduce((a, q) => a + q.ok, 0);
  }
  get errors(): number {
    return this.queues.reduce((a, q) => a + q.errors, 0);
  }

  get frontend(): string {
    return `/local/domain/${this.dom.domid}/device/vif/${this.devid}`;
  }
  get backendState(): string {
    return `/local/domain/0/backend/vif/${this.dom.domid}/${this.devid}/state`;
  }

  /** talk_to_netback, then Connected; resolves when the backend reads Connected. */
  async connect(timeoutMs: number): Promise<void> {
    const xs = this.dom.xs;
    let wrote = false;
    let busy = false;
    let again = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`vif${this.dom.domid}.${this.devid}: not Connected within ${timeoutMs} ms`)), timeoutMs);
      const check = async () => {
        if (busy) return void (again = true);
        busy = true;
        try {
          const be = await xs.tryRead(this.backendState);
          if (be === CONNECTED && wrote) {
            this.connectedAt = performance.now();
            clearTimeout(timer);
            await w.unwatch().catch(() => {});
            return resolve();
          }
          if (!wrote && (be === INIT_WAIT || be === CONNECTED)) {
            wrote = true;
            const fe = this.frontend;
            const n = this.queues.length;
            if (n > 1) await xs.write(`${fe}/multi-queue-num-queues`, String(n));
            for (let i = 0; i < n; i++) {
              const q = this.queues[i];
              const dir = n === 1 ? fe : `${fe}/queue-${i}`;
              await xs.write(`${dir}/tx-ring-ref`, String(q.txRef));
              await xs.write(`${dir}/rx-ring-ref`, String(q.rxRef));
              await xs.write(`${dir}/event-channel`, String(q.port));
            }
            await xs.write(`${fe}/request-rx-copy`, "1");
            await xs.write(`${fe}/feature-rx-notify`, "1");
            await xs.write(`${fe}/state`, CONNECTED);
          }
        } catch (e) {
          clearTimeout(timer);
          return reject(e);
        } finally {
          busy = false;
        }
        if (again) {
          again = false;
          void check();
        }
      };
      let w: { unwatch(): Promise<void> };
      void xs.watch(this.backendState, () => void check()).then((h) => (w = h), reject);
    });
  }

  /**
   * Stands in for an infinitely fast backend (the generator measured alone): answers every posted
   * request OKAY at once. Leaves the rings consistent (rsp_prod = req_prod), so a backend attaching
   * later resumes from there (BACK_RING_ATTACH).
   */
  ackAll(): void {
    for (const q of this.queues) q.ackAll();
  }

  /** Posts requests until `depth` are in flight on each queue; notifies if the backend asked. Returns responses consumed. */
  pump(depth: number): number {
    let got = 0;
    for (const q of this.queues) got += q.pump(depth);
    return got;
  }
}

export class LightDomain {
  readonly vifs: LightVif[] = [];
  private constructor(readonly domid: number, readonly guest: GuestDomain, readonly xs: XenstoreClient) {}

  static async open(dir: string, domid: number): Promise<LightDomain> {
    const xs = await XenstoreClient.connect({ path: simPaths(dir).domainSocket(domid), reconnect: { enabled: false } });
    return new LightDomain(domid, openGuestDomain(dir, domid), xs);
  }

  addVifs(devids: number[], frameBytes: Uint8Array, queues = 1): LightVif[] {
    const out = devids.map((d) => new LightVif(this, d, frameBytes, queues));
    this.vifs.push(...out);
    return out;
  }

  close(): void {
    this.xs.close();
    this.guest.close();
  }
}
