// The data-path rig shared by the tx, rx, bidir and switch scenarios: a simulated host in the
// scenario's work dir with one guest domain, ring pages the guest grants and the backend maps, the
// workers' own TxPath / RxPath driven in a loop (no worker thread, no poll: the loop the worker runs
// per wake-up, back to back), the C reference loops (bench/datapath-ref.c, gcc -O2) on the very same
// rings and grant device, and the load generator (bench/datapath-guest.c): a C guest in its own
// process keeping a ring full of requests.
//
// Every loop here gives the CPU away when it finds nothing to do (datapath-ref.c says why); the
// scenarios using this rig run pinned to one CPU (Scenario.pin): producer and consumer then take
// turns deterministically. Unpinned, on a 2-vCPU VM shared with other work, the 64 B TS/C ratios
// swung between 0.5 and 0.9 from run to run.
import { dlopen, FFIType } from "bun:ffi";
import { join, resolve } from "node:path";
import { nativeLibraryPath } from "../../src/native/lib.ts";
import { buildUdpFrame, parseMac } from "../../src/net/frames.ts";
import { NullPeer, SourcePeer, type Peer } from "../../src/net/index.ts";
import type { SwitchPeer } from "../../src/net/switch.ts";
import { openPlatform, type GrantDevice, type GrantMapping, type Platform } from "../../src/platform/index.ts";
import { createDomain, initHypervisor, openGuestDomain, teardownHypervisor, type GuestDomain } from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { VIF_COUNTER_NAMES, type VifCounters } from "../../src/stats/index.ts";
import { FRAME_META_CSUM, FRAME_META_GSO_TYPE_SHIFT } from "../../src/net/peer.ts";
import { XEN_NETIF_GSO_TYPE_TCPV4 } from "../../src/xen/netif.ts";
import { RxPath } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";

/** Requests per tx pass, as the daemon's default budget. */
export const BUDGET = 64;
/** The guest stops when this is written into its ring page's pad (word 15). */
const STOP = 0x53544f50;
/** The generator alone must beat what it feeds by this factor, or the figure is marked invalid. */
export const GENERATOR_MARGIN = 1.25;

const BENCH = resolve(import.meta.dir, "..");

export function gcc(args: string[]): void {
  const r = Bun.spawnSync(["gcc", "-O2", "-Wall", ...args], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`gcc ${args.join(" ")} failed: ${r.stderr.toString()}`);
}

export function counters(): VifCounters {
  const c: Record<string, number> = {};
  for (const n of VIF_COUNTER_NAMES) c[n] = 0;
  return c as unknown as VifCounters;
}

export const GUEST_MAC = "00:16:3e:00:00:01";
export function udpFrame(size: number, dst = GUEST_MAC, src = "02:00:00:00:00:fe"): Uint8Array {
  return buildUdpFrame({ size, srcMac: parseMac(src), dstMac: parseMac(dst), srcIp: [10, 0, 0, 2], dstIp: [10, 0, 0, 1], srcPort: 9, dstPort: 9 });
}

/** A ring page: granted by the guest, mapped by the backend. */
export interface RingPage {
  frame: number;
  ref: number;
  /** The guest's view (the producer resets it and the bench writes STOP into it). */
  words: Uint32Array;
  map: GrantMapping;
}

export interface Producer {
  stop(): Promise<void>;
}

function openRef(so: string) {
  return dlopen(so, {
    ref_tx: { args: [FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    ref_rx: { args: [FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    ref_bidir: {
      args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.i32, FFIType.ptr],
      returns: FFIType.i32,
    },
    ref_switch: {
      args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.i32],
      returns: FFIType.i32,
    },
    ref_rx_gso: { args: [FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    ref_tx_gso: { args: [FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    ref_ack: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    ref_ack2: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    ref_yield: { args: [], returns: FFIType.void },
  }).symbols;
}

/** The null sink as a vnet TAP: takes checksum-partial and GSO frames as they are (the kernel would finish them). */
class GsoSink extends NullPeer {
  readonly offloads = true;
}

export class DatapathRig {
  readonly dir: string;
  readonly domid: number;
  readonly guest: GuestDomain;
  readonly platform: Platform;
  readonly gnt: GrantDevice;
  readonly scratch = new WorkerScratch(BUDGET);
  readonly ref: ReturnType<typeof openRef>;
  private readonly gdevHandle: number;
  private readonly guestBin: string;
  private readonly ramFile: string;
  private readonly maps: GrantMapping[] = [];
  private readonly rxOut = new Int32Array(1);
  /** The scratch of a worker whose vifs negotiate feature-sg (64 KiB frame slots both ways), for the gso scenario. */
  private sgScratch: WorkerScratch | null = null;
  get gsoScratch(): WorkerScratch {
    return (this.sgScratch ??= new WorkerScratch(BUDGET, { scatterGather: true }));
  }

  /** Builds the C parts into `workDir` and a simulated host under `workDir/sim`. */
  constructor(workDir: string) {
    const nativeBuild = resolve(nativeLibraryPath("simxen"), "..");
    const refSo = join(workDir, "libdpref.so");
    this.guestBin = join(workDir, "dpguest");
    gcc(["-shared", "-fPIC", join(BENCH, "datapath-ref.c"), "-o", refSo, `-L${nativeBuild}`, "-lsimxen", "-ll2switch", `-Wl,-rpath,${nativeBuild}`]);
    gcc([join(BENCH, "datapath-guest.c"), "-o", this.guestBin]);
    this.dir = join(workDir, "sim");
    initHypervisor(this.dir);
    this.domid = createDomain(this.dir, { memoryPages: 128 });
    this.guest = openGuestDomain(this.dir, this.domid);
    this.platform = openPlatform({ kind: "sim", dir: this.dir, domid: 0 });
    this.gnt = this.platform.openGrantDevice();
    this.gdevHandle = (this.gnt as unknown as { handle: number }).handle;
    // Opened after the sim library is loaded: its -lsimxen resolves to that same instance (same handles).
    this.ref = openRef(refSo);
    this.ramFile = join(simPaths(this.dir).shmDir, `dom${this.domid}.ram`);
  }

  ring(): RingPage {
    const frame = this.guest.allocPage();
    const ref = this.guest.grantAccess(0, frame, false);
    const v = this.guest.pageView(frame);
    const map = this.gnt.map(this.domid, [ref], true);
    this.maps.push(map);
    return { frame, ref, words: new Uint32Array(v.buffer, v.byteOffset, 1024), map };
  }

  /** A read-only granted page holding `frame` at offset 0 (what the tx producer posts, over and over). */
  dataPage(frameBytes: Uint8Array): number {
    const page = this.guest.allocPage();
    this.guest.pageView(page).set(frameBytes, 0);
    return this.guest.grantAccess(0, page, true);
  }

  /** Writable granted pages for rx buffers. */
  rxBuffers(n: number): number[] {
    return Array.from({ length: n }, () => this.guest.grantAccess(0, this.guest.allocPage(), false));
  }

  /** Starts the C guest on `ring` (reset first): "tx <gref> <size>" or "rx <gref,...>". */
  async producer(ring: RingPage, args: string[]): Promise<Producer> {
    ring.words.fill(0);
    ring.words[1] = ring.words[3] = 1; // SHARED_RING_INIT
    const p = Bun.spawn([this.guestBin, this.ramFile, String(ring.frame), ...args], { stdout: "pipe", stderr: "inherit" });
    const rd = (p.stdout as ReadableStream<Uint8Array>).getReader();
    const first = await rd.read(); // "ready"
    if (first.done) throw new Error(`the C guest (${args[0]}) exited before it was ready (exit ${await p.exited})`);
    return {
      stop: async () => {
        Atomics.store(ring.words, 15, STOP);
        await p.exited;
      },
    };
  }

  /** The generator alone: requests/s its ring gets acknowledged at when nothing is done with them. */
  ackRate(ring: RingPage, ms: number): number {
    return this.ref.ref_ack(ring.map.addr, ms) / (ms / 1000);
  }
  ack2Rate(a: RingPage, b: RingPage, ms: number): number {
    return this.ref.ref_ack2(a.map.addr, b.map.addr, ms) / (ms / 1000);
  }

  /** qnicd's tx path for `ms` into `peer` (the null sink by default): packets/s. */
  tsTx(ring: RingPage, ms: number, peer: Peer = new NullPeer("null")): number {
    const tx = new TxPath(ring.map.buffer, this.domid);
    const c = counters();
    const yieldCpu = this.ref.ref_yield;
    const end = performance.now() + ms;
    let total = 0;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const p = tx.service(BUDGET, this.scratch, this.gnt, peer, c);
      if (p.fault) throw new Error(p.fault);
      total += p.packets;
      if (p.slots === 0) yieldCpu(); // idle: as the C loops do
    }
    return total / (ms / 1000);
  }

  cTx(ring: RingPage, ms: number): number {
    const s = this.scratch;
    const f = s.txFrames;
    const n = this.ref.ref_tx(ring.map.addr, this.gdevHandle, this.domid, f.base, f.stride, s.txSegs.addr, BUDGET, f.lensAddr, ms);
    if (n < 0) throw new Error("C reference tx: req_prod more than a ring ahead");
    return n / (ms / 1000);
  }

  /**
   * qnicd's rx path for `ms` from the source generator: frames/s delivered. Same work per pass as the
   * C loop: one receive batch, frames beyond the posted requests dropped (a one-frame queue) rather
   * than queued, so the comparison is per delivered frame.
   */
  tsRx(ring: RingPage, ms: number, size: number): number {
    const rx = new RxPath(ring.map.buffer, this.domid, 64, 60_000);
    const src = new SourcePeer("src", { size });
    const c = counters() as unknown as { rx_packets: number } & VifCounters;
    const yieldCpu = this.ref.ref_yield;
    const end = performance.now() + ms;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const before = c.rx_packets;
      const p = rx.service(src, 1, this.scratch, this.gnt, c);
      if (p.fault) throw new Error(p.fault);
      if (c.rx_packets === before) yieldCpu();
    }
    rx.close();
    return c.rx_packets / (ms / 1000);
  }

  cRx(ring: RingPage, ms: number, tmpl: Uint8Array): number {
    const s = this.scratch;
    const f = s.rxFrames;
    const n = this.ref.ref_rx(ring.map.addr, this.gdevHandle, this.domid, f.base, f.stride, s.rxSegs.addr, f.capacity, f.lensAddr, tmpl, tmpl.length, ms);
    if (n < 0) throw new Error("C reference rx: req_prod more than a ring ahead");
    return n / (ms / 1000);
  }

  /** Both directions of one vif, as one worker serves it per wake-up (tx pass, then rx pass): packets/s tx + rx. */
  tsBidir(txRing: RingPage, rxRing: RingPage, ms: number, size: number): { total: number; rx: number } {
    const tx = new TxPath(txRing.map.buffer, this.domid);
    const rx = new RxPath(rxRing.map.buffer, this.domid, 64, 60_000);
    const sink = new NullPeer("null");
    const src = new SourcePeer("src", { size });
    const c = counters() as unknown as { rx_packets: number } & VifCounters;
    const yieldCpu = this.ref.ref_yield;
    const end = performance.now() + ms;
    let txn = 0;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const p = tx.service(BUDGET, this.scratch, this.gnt, sink, c);
      if (p.fault) throw new Error(p.fault);
      txn += p.packets;
      const before = c.rx_packets;
      const q = rx.service(src, 1, this.scratch, this.gnt, c);
      if (q.fault) throw new Error(q.fault);
      if (p.slots === 0 && c.rx_packets === before) yieldCpu();
    }
    rx.close();
    return { total: (txn + c.rx_packets) / (ms / 1000), rx: c.rx_packets / (ms / 1000) };
  }

  cBidir(txRing: RingPage, rxRing: RingPage, ms: number, tmpl: Uint8Array): { total: number; rx: number } {
    const s = this.scratch;
    const t = s.txFrames, r = s.rxFrames;
    const n = this.ref.ref_bidir(txRing.map.addr, rxRing.map.addr, this.gdevHandle, this.domid, t.base, t.stride, r.base, r.stride, s.txSegs.addr, s.rxSegs.addr, BUDGET, t.lensAddr, r.lensAddr, tmpl, tmpl.length, ms, this.rxOut);
    if (n < 0) throw new Error("C reference bidir: req_prod more than a ring ahead");
    return { total: n / (ms / 1000), rx: this.rxOut[0]! / (ms / 1000) };
  }

  /**
   * Guest to guest through the in-daemon switch, as one worker serving both vifs per wake-up: vif A's
   * tx pass into port `a`, then vif B's rx pass from port `b` into its ring. Frames/s delivered to B.
   */
  tsSwitch(txRing: RingPage, rxRing: RingPage, a: SwitchPeer, b: SwitchPeer, ms: number): number {
    const tx = new TxPath(txRing.map.buffer, this.domid);
    const rx = new RxPath(rxRing.map.buffer, this.domid, 64, 60_000);
    const ca = counters();
    const cb = counters() as unknown as { rx_packets: number } & VifCounters;
    const yieldCpu = this.ref.ref_yield;
    const end = performance.now() + ms;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const p = tx.service(BUDGET, this.scratch, this.gnt, a, ca);
      if (p.fault) throw new Error(p.fault);
      const before = cb.rx_packets;
      const q = rx.service(b, 1, this.scratch, this.gnt, cb);
      if (q.fault) throw new Error(q.fault);
      if (p.slots === 0 && cb.rx_packets === before) yieldCpu();
    }
    rx.close();
    return cb.rx_packets / (ms / 1000);
  }

  cSwitch(txRing: RingPage, rxRing: RingPage, fabric: number, a: SwitchPeer, b: SwitchPeer, ms: number): number {
    const s = this.scratch;
    const t = s.txFrames, r = s.rxFrames;
    const n = this.ref.ref_switch(txRing.map.addr, rxRing.map.addr, this.gdevHandle, this.domid, t.base, t.stride, r.base, r.stride, s.txSegs.addr, s.rxSegs.addr, BUDGET, t.lensAddr, r.lensAddr, fabric, a.index, b.index, ms);
    if (n < 0) throw new Error("C reference switch: req_prod more than a ring ahead");
    return n / (ms / 1000);
  }

  /**
   * qnicd's rx path with feature-sg + feature-gso-tcpv4 for `ms`, from a generator handing out
   * `frame` as a TCPv4 GSO frame (as a TAP with rx offloads does): frames/s delivered.
   */
  tsRxGso(ring: RingPage, ms: number, frame: Uint8Array, mss: number): number {
    // The daemon's default queue: a frame read while the ring has no room for one waits there, as in a worker.
    const rx = new RxPath(ring.map.buffer, this.domid, 128 * 4096, 60_000, null, { sg: true, gsoMask: 1 << XEN_NETIF_GSO_TYPE_TCPV4 });
    rx.peerMeta = true;
    const src = new SourcePeer("src", { size: frame.length, frame, meta: FRAME_META_CSUM | (XEN_NETIF_GSO_TYPE_TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | mss });
    const c = counters() as unknown as { rx_packets: number; rx_drops: number } & VifCounters;
    const yieldCpu = this.ref.ref_yield;
    const s = this.gsoScratch;
    const end = performance.now() + ms;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const before = c.rx_packets;
      const p = rx.service(src, 1, s, this.gnt, c);
      if (p.fault) throw new Error(p.fault);
      if (c.rx_packets === before) yieldCpu();
    }
    rx.close();
    if (c.rx_drops > 0) throw new Error(`qnicd rx gso: ${c.rx_drops} frames dropped: the path should read only what the ring and its queue take`);
    return c.rx_packets / (ms / 1000);
  }

  cRxGso(ring: RingPage, ms: number, frame: Uint8Array, mss: number): number {
    const s = this.gsoScratch;
    const f = s.rxFrames;
    const n = this.ref.ref_rx_gso(ring.map.addr, this.gdevHandle, this.domid, f.base, f.stride, s.rxSegs.addr, f.capacity, f.lensAddr, frame, frame.length, mss, ms);
    if (n < 0) throw new Error("C reference rx gso: req_prod more than a ring ahead");
    return n / (ms / 1000);
  }

  /** qnicd's tx path with feature-sg + feature-gso for `ms` into a sink that takes GSO frames (as a vnet TAP does): packets/s. */
  tsTxGso(ring: RingPage, ms: number): number {
    const tx = new TxPath(ring.map.buffer, this.domid, { sg: true, gso: true });
    const sink = new GsoSink("sink");
    const c = counters();
    const s = this.gsoScratch;
    const yieldCpu = this.ref.ref_yield;
    const end = performance.now() + ms;
    let total = 0;
    for (let i = 0; ; i++) {
      if ((i & 63) === 0 && performance.now() >= end) break;
      const p = tx.service(BUDGET, s, this.gnt, sink, c);
      if (p.fault) throw new Error(p.fault);
      total += p.packets;
      if (p.slots === 0) yieldCpu();
    }
    if (c.tx_errors > 0 || c.tx_drops > 0) throw new Error(`qnicd tx gso: ${c.tx_errors} errors, ${c.tx_drops} drops: the producer's packets should all be valid`);
    return total / (ms / 1000);
  }

  cTxGso(ring: RingPage, ms: number): number {
    const s = this.gsoScratch;
    const f = s.txFrames;
    const n = this.ref.ref_tx_gso(ring.map.addr, this.gdevHandle, this.domid, f.base, f.stride, s.txSegs.addr, f.capacity, f.lensAddr, ms);
    if (n < 0) throw new Error("C reference tx gso: req_prod more than a ring ahead, or a malformed packet");
    return n / (ms / 1000);
  }

  close(): void {
    this.sgScratch?.free();
    this.scratch.free();
    for (const m of this.maps) m.unmap();
    this.gnt.close();
    this.platform.close();
    this.guest.close();
    teardownHypervisor(this.dir);
  }
}
