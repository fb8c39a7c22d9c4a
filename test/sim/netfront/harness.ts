// A simulated host per test (hypervisor + xenstored in a temp dir, the sim toolstack to create the
// guest and its vif nodes), and a hand-played BACKEND in dom0: it writes the backend's features
// and states, maps the frontend's rings through the sim platform's grant device, binds its event
// channel, and consumes/produces ring slots with the index rules of io/ring.h.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPlatform, type GrantMapping, type Platform } from "../../../src/platform/index.ts";
import * as hv from "../../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../../src/sim/paths.ts";
import { simHypervisor } from "../../../src/sim/toolstack/hypervisor.ts";
import { Toolstack } from "../../../src/sim/toolstack/toolstack.ts";
import { startXenstored, type Xenstored } from "../../../src/sim/xenstored/server.ts";
import { NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE, RxRequest, RxResponse, TxRequest, TxResponse } from "../../../src/xen/netif.ts";
import { needsNotify } from "../../../src/xen/ring.ts";
import { XenstoreClient } from "../../../src/xenstore/index.ts";
import type { SimEventChannelDevice } from "../../../src/sim/hypervisor/evtchn.ts";

export interface Host {
  dir: string;
  xs: XenstoreClient;
  ts: Toolstack;
  /** Creates a guest with one vif (no backend wait); returns its domid. */
  guest(name?: string, mac?: string): Promise<number>;
  client(trace?: (op: string, tx: number, args: readonly string[]) => void): Promise<XenstoreClient>;
  close(): Promise<void>;
}

export async function startHost(): Promise<Host> {
  const dir = mkdtempSync(join(tmpdir(), "qnicd-netfront-"));
  hv.initHypervisor(dir);
  const xsd: Xenstored = await startXenstored({ dir, log: () => {} });
  const clients: XenstoreClient[] = [];
  const client = async (trace?: (op: string, tx: number, args: readonly string[]) => void) => {
    const c = await XenstoreClient.connect({ path: xsd.socketPath, trace, onError: () => {} });
    clients.push(c);
    return c;
  };
  const xs = await client();
  await xs.write("/local/domain/0/domid", "0");
  await xs.write("/local/domain/0/name", "Domain-0");
  const ts = new Toolstack({ xs, hv: simHypervisor(dir), log: () => {}, destroyTimeoutMs: 200 });
  let n = 0;
  return {
    dir,
    xs,
    ts,
    client,
    async guest(name = `guest${++n}`, mac = "00:16:3e:12:34:56") {
      const d = await ts.create(name, { nics: [{ mac }], noWait: true });
      return d.domid;
    },
    async close() {
      for (const c of clients) c.close();
      await xsd.close();
      hv.teardownHypervisor(dir);
      rmSync(dir, { recursive: true, force: true });
      if (existsSync(simPaths(dir).shmDir)) throw new Error(`${simPaths(dir).shmDir} left behind`);
    },
  };
}

export async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(2);
  }
}

/** Linux netback's probe-time feature set (one transaction, then InitWait). */
export const NETBACK_FEATURES: Record<string, string> = {
  "feature-sg": "1",
  "feature-gso-tcpv4": "1",
  "feature-gso-tcpv6": "1",
  "feature-ipv6-csum-offload": "1",
  "feature-rx-copy": "1",
  "feature-rx-flip": "0",
  "feature-multicast-control": "1",
  "feature-dynamic-multicast-control": "1",
  "feature-split-event-channels": "1",
  "multi-queue-max-queues": "4",
  "feature-ctrl-ring": "1",
};

/** A dom0 backend played by hand in the test. */
export class TestBackend {
  readonly B: string;
  readonly F: string;
  readonly platform: Platform;
  readonly ev: SimEventChannelDevice;
  private readonly gnt;
  txMap?: GrantMapping;
  rxMap?: GrantMapping;
  txPort = 0;
  rxPort = 0;
  /** Back-ring private indices. */
  txReqCons = 0;
  txRspProdPvt = 0;
  rxReqCons = 0;
  rxRspProdPvt = 0;
  notifiesSent = 0;

  constructor(
    readonly host: Host,
    readonly domid: number,
    readonly devid = 0,
  ) {
    this.B = `/local/domain/0/backend/vif/${domid}/${devid}`;
    this.F = `/local/domain/${domid}/device/vif/${devid}`;
    this.platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
    this.ev = this.platform.openEventChannelDevice() as SimEventChannelDevice;
    this.gnt = this.platform.openGrantDevice();
  }

  async offer(features: Record<string, string> = NETBACK_FEATURES): Promise<void> {
    await this.host.xs.transaction(async (t) => {
      for (const [k, v] of Object.entries(features)) await t.write(`${this.B}/${k}`, v);
    });
    await this.setState(2);
  }

  setState(s: number): Promise<void> {
    return this.host.xs.write(`${this.B}/state`, String(s));
  }

  async frontendState(): Promise<number> {
    return Number((await this.host.xs.tryRead(`${this.F}/state`)) ?? 0);
  }

  /**
   * Maps the rings, binds the event channel(s), says Connected. `dir` reads one queue's keys from
   * F/<dir> (queue-<i>); `announce: false` leaves the state alone (another queue's player says it).
   */
  async connect(opts: { dir?: string; announce?: boolean } = {}): Promise<void> {
    await until("frontend Connected", async () => (await this.frontendState()) === 4);
    const base = opts.dir ? `${this.F}/${opts.dir}` : this.F;
    const r = (k: string) => this.host.xs.tryRead(`${base}/${k}`);
    const txRef = Number(await r("tx-ring-ref"));
    const rxRef = Number(await r("rx-ring-ref"));
    this.txMap = this.gnt.map(this.domid, [txRef], true);
    this.rxMap = this.gnt.map(this.domid, [rxRef], true);
    const single = await r("event-channel");
    if (single !== undefined) this.txPort = this.rxPort = this.ev.bindInterdomain(this.domid, Number(single));
    else {
      this.txPort = this.ev.bindInterdomain(this.domid, Number(await r("event-channel-tx")));
      this.rxPort = this.ev.bindInterdomain(this.domid, Number(await r("event-channel-rx")));
    }
    this.txReqCons = this.txRspProdPvt = this.rxReqCons = this.rxRspProdPvt = 0;
    if (opts.announce !== false) await this.setState(4);
  }

  /** What netback does on frontend Closing/Closed: unmap and unbind. */
  disconnect(): void {
    this.txMap?.unmap();
    this.rxMap?.unmap();
    this.txMap = this.rxMap = undefined;
    for (const p of new Set([this.txPort, this.rxPort])) if (p) this.ev.unbind(p);
    this.txPort = this.rxPort = 0;
  }

  private hdr(m: GrantMapping): Uint32Array {
    return new Uint32Array(m.buffer, 0, 4);
  }

  txHeader() {
    const h = this.hdr(this.txMap!);
    return { reqProd: Atomics.load(h, 0), reqEvent: Atomics.load(h, 1), rspProd: Atomics.load(h, 2), rspEvent: Atomics.load(h, 3) };
  }

  rxHeader() {
    const h = this.hdr(this.rxMap!);
    return { reqProd: Atomics.load(h, 0), reqEvent: Atomics.load(h, 1), rspProd: Atomics.load(h, 2), rspEvent: Atomics.load(h, 3) };
  }

  /** Consumes every pending tx request: maps its grant read-only, copies the frame, answers OKAY. */
  drainTx(status = 0): { frame: Uint8Array; flags: number; offset: number; id: number; gref: number }[] {
    const m = this.txMap!;
    const h = this.hdr(m);
    const v = new DataView(m.buffer);
    const out = [];
    const prod = Atomics.load(h, 0);
    while (this.txReqCons !== prod) {
      const o = 64 + (this.txReqCons & (NETIF_TX_RING_SIZE - 1)) * 12;
      const req = {
        gref: v.getUint32(o + TxRequest.gref, true),
        offset: v.getUint16(o + TxRequest.offset, true),
        flags: v.getUint16(o + TxRequest.flags, true),
        id: v.getUint16(o + TxRequest.id, true),
        size: v.getUint16(o + TxRequest.size, true),
      };
      this.txReqCons = (this.txReqCons + 1) >>> 0;
      const page = this.gnt.map(this.domid, [req.gref], false);
      const frame = new Uint8Array(page.buffer, req.offset, req.size).slice();
      page.unmap();
      out.push({ frame, flags: req.flags, offset: req.offset, id: req.id, gref: req.gref });
      const r = 64 + (this.txRspProdPvt & (NETIF_TX_RING_SIZE - 1)) * 12;
      v.setUint16(r + TxResponse.id, req.id, true);
      v.setInt16(r + TxResponse.status, status, true);
      this.txRspProdPvt = (this.txRspProdPvt + 1) >>> 0;
    }
    if (out.length) this.pushTx();
    // RING_FINAL_CHECK_FOR_REQUESTS: ask for an event on the next request.
    Atomics.store(h, 1, (this.txReqCons + 1) >>> 0);
    return out;
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY on tx; notifies if the frontend asked. */
  pushTx(): boolean {
    const h = this.hdr(this.txMap!);
    const old = Atomics.load(h, 2);
    Atomics.store(h, 2, this.txRspProdPvt);
    const notify = needsNotify(this.txRspProdPvt, old, Atomics.load(h, 3));
    if (notify) {
      this.ev.notify(this.txPort);
      this.notifiesSent++;
    }
    return notify;
  }

  /** Rx requests posted and not yet consumed. */
  rxAvailable(): number {
    return (Atomics.load(this.hdr(this.rxMap!), 0) - this.rxReqCons) >>> 0;
  }

  /**
   * Writes `frame` into the next posted rx buffer (one slot, at `offset`), as a response in the
   * request's slot. Pushes (and notifies if asked) unless `push` is false.
   */
  postRx(frame: Uint8Array, opts: { offset?: number; flags?: number; status?: number; push?: boolean } = {}): boolean {
    const m = this.rxMap!;
    const v = new DataView(m.buffer);
    if (this.rxAvailable() === 0) throw new Error("no rx request posted");
    const o = 64 + (this.rxReqCons & (NETIF_RX_RING_SIZE - 1)) * 8;
    const id = v.getUint16(o + RxRequest.id, true);
    const gref = v.getUint32(o + RxRequest.gref, true);
    this.rxReqCons = (this.rxReqCons + 1) >>> 0;
    const offset = opts.offset ?? 0;
    const page = this.gnt.map(this.domid, [gref], true);
    // A deliberately bad offset still writes only inside the page.
    new Uint8Array(page.buffer).set(frame.subarray(0, Math.max(0, 4096 - offset)), Math.min(offset, 4096));
    page.unmap();
    const r = 64 + (this.rxRspProdPvt & (NETIF_RX_RING_SIZE - 1)) * 8;
    v.setUint16(r + RxResponse.id, id, true);
    v.setUint16(r + RxResponse.offset, offset, true);
    v.setUint16(r + RxResponse.flags, opts.flags ?? 0, true);
    v.setInt16(r + RxResponse.status, opts.status ?? frame.length, true);
    this.rxRspProdPvt = (this.rxRspProdPvt + 1) >>> 0;
    return opts.push === false ? false : this.pushRx();
  }

  /** Writes a raw 8-byte rx response slot (extra info, bad status...) consuming one request. */
  postRxRaw(bytes: Uint8Array): void {
    const v = new Uint8Array(this.rxMap!.buffer);
    this.rxReqCons = (this.rxReqCons + 1) >>> 0;
    v.set(bytes, 64 + (this.rxRspProdPvt & (NETIF_RX_RING_SIZE - 1)) * 8);
    this.rxRspProdPvt = (this.rxRspProdPvt + 1) >>> 0;
  }

  pushRx(): boolean {
    const h = this.hdr(this.rxMap!);
    const old = Atomics.load(h, 2);
    Atomics.store(h, 2, this.rxRspProdPvt);
    const notify = needsNotify(this.rxRspProdPvt, old, Atomics.load(h, 3));
    if (notify) {
      this.ev.notify(this.rxPort);
      this.notifiesSent++;
    }
    return notify;
  }

  /** Ports that fired since last asked (then unmasked). */
  events(): number[] {
    const out = new Uint32Array(16);
    const n = this.ev.readPending(out);
    this.ev.unmask(out, n);
    return Array.from(out.subarray(0, n));
  }

  close(): void {
    this.platform.close();
  }
}

/**
 * Plays Linux netback's frontend_changed for `be`: F Initialising after Closed -> InitWait;
 * F Connected -> map, bind, Connected; F Closing -> disconnect, Closing; F Closed -> disconnect,
 * Closed. Records the frontend states it saw. Stop with the returned function.
 */
export async function playNetback(be: TestBackend, features: Record<string, string> = NETBACK_FEATURES) {
  const seen: number[] = [];
  let chain = Promise.resolve();
  let bstate = 1;
  const set = async (s: number) => {
    bstate = s;
    await be.setState(s);
  };
  const w = await be.host.xs.watch(`${be.F}/state`, () => {
    chain = chain.then(async () => {
      const v = await be.host.xs.tryRead(`${be.F}/state`);
      if (v === undefined) return;
      const fs = Number(v);
      if (seen.at(-1) !== fs) seen.push(fs);
      if (fs === 1 && (bstate === 1 || bstate === 6)) await (bstate === 1 ? be.offer(features) : set(2));
      else if (fs === 4 && bstate !== 4) {
        if (be.txMap) be.disconnect();
        await be.connect();
        bstate = 4;
      } else if (fs === 5 && bstate !== 5) {
        be.disconnect();
        await set(5);
      } else if (fs === 6 && bstate !== 6) {
        be.disconnect();
        await set(6);
      }
    }).catch(() => {});
  });
  return { seen, stop: () => w.unwatch() };
}
