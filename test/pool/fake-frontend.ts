// A minimal netfront in the test process, on the simulated host: ring pages allocated, initialised
// (SHARED_RING_INIT) and granted to dom0, unbound ports offered to dom0, tx requests posted the way
// netfront posts them (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY), responses read back.
import { expect } from "bun:test";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { openGuestDomain, type GuestDomain } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RSP_OKAY, NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE, NETTXF_extra_info, NETTXF_more_data, RxRequest, RxResponse, TxRequest, TxResponse } from "../../src/xen/netif.ts";
import { needsNotify, slotOffset } from "../../src/xen/ring.ts";
import type { VifConnectSpec } from "../../src/pool/types.ts";

const GTF_reading = 1 << 3;
const GTF_writing = 1 << 4;

export class FakeFrontend {
  readonly guest: GuestDomain;
  readonly txRef: number;
  readonly rxRef: number;
  readonly txPort: number;
  readonly rxPort: number;
  private readonly tx: DataView;
  private readonly txWords: Uint32Array;
  private readonly rx: DataView;
  private readonly rxWords: Uint32Array;
  private reqProdPvt = 0;
  private rspCons = 0;
  private rxReqProdPvt = 0;
  private rxRspCons = 0;
  /** One page of tx data granted read-only to dom0 (netfront grants its tx pages read-only). */
  readonly dataRef: number;
  readonly dataPage: Uint8Array;
  /** Tx data pages for sendFrames (one per frame in flight), granted read-only to dom0. */
  private readonly txPages: { ref: number; page: Uint8Array }[] = [];
  private nextTxPage = 0;
  /** Rx buffers: id -> (gref, page), granted writable to dom0. */
  private readonly rxBufs = new Map<number, { ref: number; page: Uint8Array }>();
  private readonly fired = new Uint32Array(8);

  constructor(readonly dir: string, readonly domid: number, opts: { split?: boolean } = {}) {
    this.guest = openGuestDomain(dir, domid);
    const txFrame = this.guest.allocPage();
    const rxFrame = this.guest.allocPage();
    for (const f of [txFrame, rxFrame]) {
      const w = new Uint32Array(this.guest.pageView(f).buffer, this.guest.pageView(f).byteOffset, 1024);
      w.fill(0);
      w[1] = 1; // req_event
      w[3] = 1; // rsp_event
    }
    const page = this.guest.pageView(txFrame);
    this.tx = new DataView(page.buffer, page.byteOffset, 4096);
    this.txWords = new Uint32Array(page.buffer, page.byteOffset, 1024);
    const rpage = this.guest.pageView(rxFrame);
    this.rx = new DataView(rpage.buffer, rpage.byteOffset, 4096);
    this.rxWords = new Uint32Array(rpage.buffer, rpage.byteOffset, 1024);
    const dataFrame = this.guest.allocPage();
    this.dataPage = this.guest.pageView(dataFrame);
    for (let i = 0; i < 4096; i++) this.dataPage[i] = (i * 7 + domid) & 0xff;
    this.dataRef = this.guest.grantAccess(0, dataFrame, true);
    this.txRef = this.guest.grantAccess(0, txFrame, false);
    this.rxRef = this.guest.grantAccess(0, rxFrame, false);
    this.txPort = this.guest.evtchn.bindUnboundPort(0);
    this.rxPort = opts.split ? this.guest.evtchn.bindUnboundPort(0) : this.txPort;
  }

  spec(over: Partial<VifConnectSpec> = {}): VifConnectSpec {
    return {
      key: `vif${this.domid}.0#1`,
      name: `vif${this.domid}.0`,
      frontendDomid: this.domid,
      devid: 0,
      txRingRef: this.txRef,
      rxRingRef: this.rxRef,
      txEvtchn: this.txPort,
      rxEvtchn: this.rxPort,
      mac: "00:16:3e:00:00:01",
      // Linux netfront always writes feature-rx-notify; without it netback (and we) drop rx frames
      // that wait 30 ms, which these tests' slow posting would trip over.
      features: { "feature-rx-notify": true },
      peer: { kind: "null", name: "null", fd: -1 },
      ...over,
    };
  }

  /** Posts one single-slot packet per id (with an extra-info slot after it when `extra`), pushes, notifies if asked. */
  postTx(ids: number[], opts: { extra?: boolean } = {}): void {
    const start = this.reqProdPvt;
    for (const id of ids) {
      const off = slotOffset(this.reqProdPvt++, NETIF_TX_RING_SIZE, 12);
      this.tx.setUint32(off + TxRequest.gref, this.dataRef, true);
      this.tx.setUint16(off + TxRequest.offset, 0, true);
      this.tx.setUint16(off + TxRequest.flags, opts.extra ? NETTXF_extra_info : 0, true);
      this.tx.setUint16(off + TxRequest.id, id, true);
      this.tx.setUint16(off + TxRequest.size, 60, true);
      if (opts.extra) {
        const e = slotOffset(this.reqProdPvt++, NETIF_TX_RING_SIZE, 12);
        this.tx.setUint8(e, 1); // XEN_NETIF_EXTRA_TYPE_GSO
        this.tx.setUint8(e + 1, 0);
        this.tx.setUint16(e + 2, 1448, true);
      }
    }
    Atomics.store(this.txWords, 0, this.reqProdPvt);
    if (needsNotify(this.reqProdPvt, start, Atomics.load(this.txWords, 1))) this.guest.evtchn.notify(this.txPort);
  }

  /** Posts raw tx requests (any gref/offset/flags/size: hostile cases), pushes, notifies if asked. Returns the first index. */
  postRawTx(reqs: { gref?: number; offset?: number; flags?: number; id: number; size: number }[]): number {
    const start = this.reqProdPvt;
    for (const r of reqs) {
      const off = slotOffset(this.reqProdPvt++, NETIF_TX_RING_SIZE, 12);
      this.tx.setUint32(off + TxRequest.gref, r.gref ?? this.dataRef, true);
      this.tx.setUint16(off + TxRequest.offset, r.offset ?? 0, true);
      this.tx.setUint16(off + TxRequest.flags, r.flags ?? 0, true);
      this.tx.setUint16(off + TxRequest.id, r.id, true);
      this.tx.setUint16(off + TxRequest.size, r.size, true);
    }
    Atomics.store(this.txWords, 0, this.reqProdPvt);
    if (needsNotify(this.reqProdPvt, start, Atomics.load(this.txWords, 1))) this.guest.evtchn.notify(this.txPort);
    return start;
  }

  /**
   * Sends each frame from its own granted page (pages reused round-robin: keep fewer than `pages`
   * frames in flight), with ids from `firstId`; pushes once, notifies if asked. Returns the first index.
   */
  sendFrames(frames: Uint8Array[], firstId: number, o: { flags?: number; pages?: number } = {}): number {
    const pages = o.pages ?? 64;
    const reqs = frames.map((f, i) => {
      if (this.txPages.length < pages) {
        const fr = this.guest.allocPage();
        this.txPages.push({ ref: this.guest.grantAccess(0, fr, true), page: this.guest.pageView(fr) });
      }
      const p = this.txPages[this.nextTxPage++ % this.txPages.length]!;
      p.page.set(f, 0);
      return { gref: p.ref, offset: 0, flags: o.flags ?? 0, id: (firstId + i) & 0xffff, size: f.length };
    });
    return this.postRawTx(reqs);
  }

  /**
   * Posts one packet of several slots as netfront lays it out with feature-sg: `frame` cut into
   * `chunks` (zero-length ones allowed), each on a granted page of its own at `offsets[k]`, the
   * first slot's size the whole packet's. Returns the requests posted (for checking what was read).
   */
  postSgPacket(frame: Uint8Array, chunks: number[], firstId: number, offsets: number[] = []): { gref: number; offset: number; size: number; id: number }[] {
    const reqs: { gref: number; offset: number; size: number; id: number; flags: number }[] = [];
    let at = 0;
    for (let k = 0; k < chunks.length; k++) {
      const fr = this.guest.allocPage();
      const off = offsets[k] ?? 0;
      this.guest.pageView(fr).set(frame.subarray(at, at + chunks[k]!), off);
      const more = k < chunks.length - 1 ? NETTXF_more_data : 0;
      reqs.push({ gref: this.guest.grantAccess(0, fr, true), offset: off, size: k === 0 ? frame.length : chunks[k]!, id: (firstId + k) & 0xffff, flags: more });
      at += chunks[k]!;
    }
    this.postRawTx(reqs);
    return reqs.map((r, k) => ({ gref: r.gref, offset: r.offset, size: chunks[k]!, id: r.id }));
  }

  /** Rewrites a tx slot already posted (a guest changing a request under the backend). */
  rewriteTx(idx: number, r: { gref?: number; offset?: number; flags?: number; id?: number; size?: number }): void {
    const off = slotOffset(idx, NETIF_TX_RING_SIZE, 12);
    if (r.gref !== undefined) this.tx.setUint32(off + TxRequest.gref, r.gref, true);
    if (r.offset !== undefined) this.tx.setUint16(off + TxRequest.offset, r.offset, true);
    if (r.flags !== undefined) this.tx.setUint16(off + TxRequest.flags, r.flags, true);
    if (r.id !== undefined) this.tx.setUint16(off + TxRequest.id, r.id, true);
    if (r.size !== undefined) this.tx.setUint16(off + TxRequest.size, r.size, true);
  }

  /** Posts `n` rx buffers (a page each, granted writable to dom0), pushes, notifies if asked. */
  postRx(n: number): void {
    const start = this.rxReqProdPvt;
    for (let k = 0; k < n; k++) {
      const id = this.rxReqProdPvt & (NETIF_RX_RING_SIZE - 1); // netfront: id = slot, buffer reused per slot
      let b = this.rxBufs.get(id);
      if (!b) {
        const f = this.guest.allocPage();
        b = { ref: this.guest.grantAccess(0, f, false), page: this.guest.pageView(f) };
        this.rxBufs.set(id, b);
      }
      const off = slotOffset(this.rxReqProdPvt++, NETIF_RX_RING_SIZE, 8);
      this.rx.setUint16(off + RxRequest.id, id, true);
      this.rx.setUint32(off + RxRequest.gref, b.ref, true);
    }
    Atomics.store(this.rxWords, 0, this.rxReqProdPvt);
    if (needsNotify(this.rxReqProdPvt, start, Atomics.load(this.rxWords, 1))) this.guest.evtchn.notify(this.rxPort);
  }

  /** Posts raw rx requests (any id and gref: hostile cases), pushes, notifies if asked. Returns the first index. */
  postRawRx(reqs: { id: number; gref: number }[]): number {
    const start = this.rxReqProdPvt;
    for (const r of reqs) {
      const off = slotOffset(this.rxReqProdPvt++, NETIF_RX_RING_SIZE, 8);
      this.rx.setUint16(off + RxRequest.id, r.id, true);
      this.rx.setUint32(off + RxRequest.gref, r.gref, true);
    }
    Atomics.store(this.rxWords, 0, this.rxReqProdPvt);
    if (needsNotify(this.rxReqProdPvt, start, Atomics.load(this.rxWords, 1))) this.guest.evtchn.notify(this.rxPort);
    return start;
  }

  /** The ring pages' frames (a second process rewriting slots maps them through its own guest view). */
  get ringFrames(): { tx: number; rx: number } {
    return { tx: this.guest.grantEntry(this.txRef).frame, rx: this.guest.grantEntry(this.rxRef).frame };
  }

  /** The grefs of the rx buffers postRx() granted so far. */
  rxBufferRefs(): number[] {
    return [...this.rxBufs.values()].map((b) => b.ref);
  }

  /** A hostile frontend: rx req_prod far ahead. */
  setRxReqProd(value: number): void {
    Atomics.store(this.rxWords, 0, value);
    this.guest.evtchn.notify(this.rxPort);
  }

  /** Rx responses since the last call, with the frame read from the buffer (by slot, as Linux does); re-arms rsp_event. */
  takeRx(): { id: number; offset: number; flags: number; status: number; frame: Uint8Array | null }[] {
    const out: { id: number; offset: number; flags: number; status: number; frame: Uint8Array | null }[] = [];
    for (;;) {
      const prod = Atomics.load(this.rxWords, 2);
      while (this.rxRspCons !== prod) {
        const idx = this.rxRspCons++;
        const off = slotOffset(idx, NETIF_RX_RING_SIZE, 8);
        const id = this.rx.getUint16(off + RxResponse.id, true);
        const offset = this.rx.getUint16(off + RxResponse.offset, true);
        const status = this.rx.getInt16(off + RxResponse.status, true);
        const b = this.rxBufs.get(idx & (NETIF_RX_RING_SIZE - 1));
        out.push({ id, offset, flags: this.rx.getUint16(off + RxResponse.flags, true), status, frame: status > 0 && b ? b.page.slice(offset, offset + status) : null });
      }
      Atomics.store(this.rxWords, 3, this.rxRspCons + 1);
      if (Atomics.load(this.rxWords, 2) === this.rxRspCons) return out;
    }
  }

  /** Waits until `count` rx responses have arrived from now on. */
  async received(count: number, limitMs = 10000): Promise<ReturnType<FakeFrontend["takeRx"]>> {
    const got = this.takeRx();
    const deadline = Date.now() + limitMs;
    while (got.length < count) {
      if (Date.now() > deadline) throw new Error(`dom${this.domid}: ${got.length} of ${count} rx frames within ${limitMs} ms`);
      await Bun.sleep(1);
      got.push(...this.takeRx());
    }
    return got;
  }

  /** The tx and rx ring headers as the backend left them (req_event, rsp_prod) and as we set them. */
  headers(): { tx: { reqProd: number; reqEvent: number; rspProd: number; rspEvent: number }; rx: { reqProd: number; reqEvent: number; rspProd: number; rspEvent: number } } {
    const h = (w: Uint32Array) => ({ reqProd: Atomics.load(w, 0), reqEvent: Atomics.load(w, 1), rspProd: Atomics.load(w, 2), rspEvent: Atomics.load(w, 3) });
    return { tx: h(this.txWords), rx: h(this.rxWords) };
  }

  /** A hostile frontend: req_prod far beyond what it could have posted. */
  setReqProd(value: number): void {
    Atomics.store(this.txWords, 0, value);
    this.guest.evtchn.notify(this.txPort);
  }

  /** New responses since the last call, as {id, status}; then asks for an event at the next one (RING_FINAL_CHECK_FOR_RESPONSES). */
  takeResponses(): { id: number; status: number }[] {
    const out: { id: number; status: number }[] = [];
    for (;;) {
      const prod = Atomics.load(this.txWords, 2);
      while (this.rspCons !== prod) {
        const off = slotOffset(this.rspCons++, NETIF_TX_RING_SIZE, 12);
        out.push({ id: this.tx.getUint16(off + TxResponse.id, true), status: this.tx.getInt16(off + TxResponse.status, true) });
      }
      Atomics.store(this.txWords, 3, this.rspCons + 1);
      if (Atomics.load(this.txWords, 2) === this.rspCons) return out;
    }
  }

  /** Waits (yielding to the event loop) until one of our ports fires; returns the ports, unmasked. */
  async waitEvent(limitMs = 10000): Promise<number[]> {
    const deadline = Date.now() + limitMs;
    while (!this.guest.evtchn.wait(0)) {
      if (Date.now() > deadline) throw new Error(`dom${this.domid}: no event within ${limitMs} ms`);
      await Bun.sleep(1);
    }
    const n = this.guest.evtchn.readPending(this.fired);
    this.guest.evtchn.unmask(this.fired, n);
    return Array.from(this.fired.subarray(0, n));
  }

  /** Waits until `count` responses have arrived in total from now on, event by event. */
  async responses(count: number): Promise<{ id: number; status: number }[]> {
    const got = this.takeResponses();
    while (got.length < count) {
      await this.waitEvent();
      got.push(...this.takeResponses());
    }
    return got;
  }

  portState(port: number): number {
    return this.guest.evtchn.portState(port).state;
  }

  /** Whether dom0 has this gref mapped (GTF_reading/GTF_writing set by the hypervisor). */
  mapped(gref: number): boolean {
    return (this.guest.grantEntry(gref).flags & (GTF_reading | GTF_writing)) !== 0;
  }

  close(): void {
    this.guest.close();
  }
}

/** Lines of /proc/self/maps naming a file of the simulated host (grant mappings, sim state). */
export function simMappings(shmDir: string): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.includes(shmDir)).length;
}

/**
 * Pages of dom<domid>'s RAM this process has mapped one at a time (grant mappings of ring pages),
 * as opposed to whole-RAM mappings (the guest's own view, the grant device's copy cache).
 */
export function ringPagesMapped(shmDir: string, domid: number): number {
  let pages = 0;
  const file = `${shmDir}/dom${domid}.ram`;
  for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
    if (!line.endsWith(file) && !line.endsWith(`${file} (deleted)`)) continue;
    const [lo, hi] = line.split(" ")[0].split("-").map((x) => parseInt(x, 16));
    if (hi - lo < 16 * 4096) pages += (hi - lo) / 4096;
  }
  return pages;
}

/** Threads named "Worker": Bun's Worker threads. */
export function workerThreads(): { tid: string; state: string }[] {
  const out: { tid: string; state: string }[] = [];
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim() !== "Worker") continue;
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      out.push({ tid, state: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] });
    } catch {
      // the thread exited while we looked
    }
  }
  return out;
}

export function fdTargets(): string[] {
  return readdirSync("/proc/self/fd").map((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return "?";
    }
  });
}

// ---- traffic between fake frontends through the switch (shared by the pool, seed and hostile tests) ----

export const BCAST = new Uint8Array(6).fill(0xff);
export const macOf = (n: number) => Uint8Array.from([0x00, 0x16, 0x3e, 0x00, 0x00, n]);

/** `count` broadcast frames from `src`, sizes from `size`, payload from `seed`. */
export function frames(src: Uint8Array, count: number, seed: number, size = (i: number) => 60 + ((i * 37) % 1400)): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const f = new Uint8Array(size(i));
    for (let k = 12; k < f.length; k++) f[k] = (k * 13 + i + seed) & 0xff;
    f.set(BCAST, 0);
    f.set(src, 6);
    return f;
  });
}

/** Frames `to` received whose source MAC is `from`, reposting every buffer it consumed. */
export async function collect(to: FakeFrontend, from: Uint8Array, n: number, limitMs = 10000): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const deadline = Date.now() + limitMs;
  while (out.length < n) {
    const got = to.takeRx();
    if (got.length) to.postRx(got.length);
    for (const r of got) if (r.frame && r.frame.subarray(6, 12).every((b, i) => b === from[i])) out.push(r.frame);
    if (out.length >= n) break;
    if (Date.now() > deadline) throw new Error(`dom${to.domid}: ${out.length} of ${n} frames within ${limitMs} ms`);
    await Bun.sleep(1);
  }
  return out;
}

/** a -> b through the switch: every request answered once, OKAY, in order; every frame arrives intact, in order. */
export async function forwards(a: { fe: FakeFrontend; mac: Uint8Array }, b: { fe: FakeFrontend }, n: number, seed: number, firstId = 0): Promise<void> {
  let id = firstId;
  const all: Uint8Array[] = [];
  for (let sent = 0; sent < n; ) {
    const k = Math.min(48, n - sent);
    const fs = frames(a.mac, k, seed + sent);
    a.fe.sendFrames(fs, id);
    expect(await a.fe.responses(k)).toEqual(fs.map((_, i) => ({ id: (id + i) & 0xffff, status: NETIF_RSP_OKAY })));
    id += k;
    sent += k;
    all.push(...fs);
  }
  expect(await collect(b.fe, a.mac, n)).toEqual(all);
}

/**
 * Keeps draining the rx rings of `fes` in the background (every buffer reposted at once, as a
 * guest that keeps up does), handing each frame to `onFrame`. stop() waits for the loop to end.
 */
export function drainRx(fes: FakeFrontend[], onFrame: (fe: FakeFrontend, frame: Uint8Array) => void = () => {}): { stop(): Promise<void> } {
  let stopped = false;
  for (const fe of fes) fe.postRx(256);
  const loop = (async () => {
    while (!stopped) {
      for (const fe of fes) {
        const got = fe.takeRx();
        if (got.length) fe.postRx(got.length);
        for (const r of got) if (r.frame) onFrame(fe, r.frame);
      }
      await Bun.sleep(1);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
