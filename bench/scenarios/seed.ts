// The seed-algorithm baseline: QEMU qnic's way (workers/seed-tx.ts, workers/seed-rx.ts: one grant
// map and unmap per packet, one peer call per frame, a push-and-notify check per response) against
// qnicd's batched path (workers/tx.ts, workers/rx.ts), both inside qnicd's data path behind the
// in-daemon switch, against the same generator in the same run, so the gain from batching is
// measured, not claimed.
//
// Setup (bench/lib/datapath-rig.ts): one simulated guest whose C producer process keeps a ring full
// (tx: requests for a granted frame; rx: posted buffers); the backend side runs each path's
// service() back to back, as a worker does per wake-up. tx: guest ring -> the vif's switch port ->
// a sink port drained every pass. rx: a source port sends one batch into the switch every pass ->
// the vif's port -> the guest ring. Both paths do the same switch work; only the data path differs.
// Before each pass the rig re-arms rsp_event at rsp_prod + 1, as a netfront does after consuming its
// responses, so notifications are asked for as a guest asks for them; each notify is a real
// event-channel notify to the guest. Alternating batched / seed pairs; ratio = median of per-pair
// ratios. FFI calls and syscalls per packet come from each path's vif counters (src/stats names).
//   bun bench/scenarios/seed.ts [--quick] [--no-pin]
import { createFrameBatch, freeFrameBatch, SwitchFabric, SwitchPeer, type FrameBatch } from "../../src/net/index.ts";
import type { EventChannelDevice } from "../../src/platform/types.ts";
import type { VifCounters } from "../../src/stats/index.ts";
import { RingHeader } from "../../src/xen/ring.ts";
import { RxPath } from "../../workers/rx.ts";
import { SeedRxPath } from "../../workers/seed-rx.ts";
import { SeedTxPath } from "../../workers/seed-tx.ts";
import { TxPath } from "../../workers/tx.ts";
import { BUDGET, counters, DatapathRig, GENERATOR_MARGIN, GUEST_MAC, udpFrame, type RingPage } from "../lib/datapath-rig.ts";
import { runStandalone } from "../lib/run-standalone.ts";
import type { Figure, Ratio, Scenario, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { alternate, median } from "../lib/stats.ts";

const SIZES = [64, 1500];
const W_RSP_PROD = RingHeader.rspProd >> 2;
const W_RSP_EVENT = RingHeader.rspEvent >> 2;

type Path = "batched" | "seed";
type Dir = "tx" | "rx";

interface Costs {
  packets: number;
  ffi: number;
  sys: number;
  notifies: number;
}

function windows(quick: boolean) {
  return quick ? { ms: 100, runs: 3, warmMs: 150 } : { ms: 300, runs: 7, warmMs: 300 };
}

/** The switch around the vif: its port, and the host-side port (sink for tx, source for rx). */
class SwitchSide {
  readonly fabric = new SwitchFabric({ ports: 4 });
  readonly vif: SwitchPeer;
  readonly host: SwitchPeer;
  readonly batch: FrameBatch & { bytes: Uint8Array };

  constructor(frameBytes: Uint8Array) {
    this.vif = new SwitchPeer(this.fabric.address, "vif");
    this.host = new SwitchPeer(this.fabric.address, "host");
    this.batch = createFrameBatch(64, 2048);
    for (let i = 0; i < 64; i++) {
      this.batch.bytes.set(frameBytes, i * this.batch.stride);
      this.batch.lens[i] = frameBytes.length;
    }
  }

  /** Sink side of tx: takes whatever reached the host port. */
  drain(): void {
    while (this.host.receive(this.batch) === this.batch.capacity);
  }

  /** Source side of rx: one batch of 64 frames for the guest into the switch. */
  feed(): void {
    this.batch.count = 64;
    this.host.send(this.batch);
  }

  close(): void {
    this.vif.close();
    this.host.close();
    this.fabric.destroy();
    freeFrameBatch(this.batch);
  }
}

class SeedBench {
  private readonly ev: EventChannelDevice;
  private readonly port: number;
  readonly costs: Record<`${Dir} ${Path}`, Costs> = {
    "tx batched": zero(), "tx seed": zero(), "rx batched": zero(), "rx seed": zero(),
  };

  constructor(private readonly rig: DatapathRig) {
    // A real event channel to the guest: the seed notifies through it per response, the batched path per pass.
    this.ev = rig.platform.openEventChannelDevice();
    this.port = this.ev.bindInterdomain(rig.domid, rig.guest.evtchn.bindUnboundPort(0));
  }

  /** One window of `path` in direction `dir`: packets/s (costs added up when `record`). */
  run(dir: Dir, path: Path, ring: RingPage, sw: SwitchSide, ms: number, record: boolean): number {
    const rig = this.rig;
    const c = counters();
    const cc = c as unknown as Record<string, number>;
    const words = new Uint32Array(ring.map.buffer, 0, 1024);
    const yieldCpu = rig.ref.ref_yield;
    const target = { ev: this.ev, port: this.port };
    const notify = () => {
      cc.ffi_calls++;
      cc.syscalls++;
      cc.notifies_sent++;
      this.ev.notify(this.port);
    };
    const end = performance.now() + ms;
    if (dir === "tx") {
      const tx = path === "seed" ? new SeedTxPath(ring.map.buffer, rig.domid) : new TxPath(ring.map.buffer, rig.domid);
      if (tx instanceof SeedTxPath) tx.notifyTarget = target;
      for (let i = 0; ; i++) {
        if ((i & 63) === 0 && performance.now() >= end) break;
        Atomics.store(words, W_RSP_EVENT, (Atomics.load(words, W_RSP_PROD) + 1) | 0); // the frontend asks for the next response
        const p = tx.service(BUDGET, rig.scratch, rig.gnt, sw.vif, c);
        if (p.fault) throw new Error(p.fault);
        if (p.notify) notify();
        sw.drain();
        if (p.slots === 0) yieldCpu();
      }
    } else {
      // A one-frame queue: frames beyond the posted buffers are dropped, so both count delivered frames only.
      const rx = path === "seed" ? new SeedRxPath(ring.map.buffer, rig.domid, 64, 60_000) : new RxPath(ring.map.buffer, rig.domid, 64, 60_000);
      if (rx instanceof SeedRxPath) rx.notifyTarget = target;
      for (let i = 0; ; i++) {
        if ((i & 63) === 0 && performance.now() >= end) break;
        Atomics.store(words, W_RSP_EVENT, (Atomics.load(words, W_RSP_PROD) + 1) | 0);
        sw.feed();
        const before = cc.rx_packets;
        const p = rx.service(sw.vif, 1, rig.scratch, rig.gnt, c);
        if (p.fault) throw new Error(p.fault);
        if (p.notify) notify();
        if (cc.rx_packets === before) yieldCpu();
      }
      rx.close();
    }
    const packets = dir === "tx" ? cc.tx_packets : cc.rx_packets;
    if (record) {
      const k = this.costs[`${dir} ${path}`];
      k.packets += packets;
      k.ffi += cc.ffi_calls;
      k.sys += cc.syscalls;
      k.notifies += cc.notifies_sent;
    }
    return packets / (ms / 1000);
  }

  close(): void {
    this.ev.close();
  }
}

function zero(): Costs {
  return { packets: 0, ffi: 0, sys: 0, notifies: 0 };
}

function kpps(pps: number): string {
  return `${(pps / 1000).toFixed(1)} kpps`;
}

async function run(opts: ScenarioOptions): Promise<ScenarioResult> {
  const { ms, runs, warmMs } = windows(opts.quick);
  const figures: Figure[] = [];
  const ratios: Ratio[] = [];
  const invalid: string[] = [];
  const rig = new DatapathRig(opts.workDir);
  const bench = new SeedBench(rig);
  try {
    const txRing = rig.ring();
    const rxRing = rig.ring();
    const rxRefs = rig.rxBuffers(16);
    for (const size of SIZES) {
      const tmpl = udpFrame(size, GUEST_MAC);
      for (const dir of ["tx", "rx"] as const) {
        const ring = dir === "tx" ? txRing : rxRing;
        const sw = new SwitchSide(tmpl);
        const producer = await rig.producer(ring, dir === "tx" ? ["tx", String(rig.dataPage(tmpl)), String(size)] : ["rx", rxRefs.join(",")]);
        let alone: number;
        let pairs: ReturnType<typeof alternate>;
        try {
          alone = rig.ackRate(ring, ms);
          bench.run(dir, "batched", ring, sw, warmMs, false); // JIT warm-up, both paths
          bench.run(dir, "seed", ring, sw, warmMs, false);
          pairs = alternate(runs, () => bench.run(dir, "batched", ring, sw, ms, true), () => bench.run(dir, "seed", ring, sw, ms, true));
        } finally {
          await producer.stop();
          sw.close();
        }
        const label = `${dir} ${size} B`;
        const ours = median(pairs.a);
        const seed = median(pairs.b);
        figures.push({ label, value: ours, unit: "pps", series: `qnicd ${dir} (switch)`, x: size, chart: "frame-size" });
        figures.push({ label, value: seed, unit: "pps", series: `seed algorithm ${dir} (switch)`, x: size, chart: "frame-size" });
        figures.push({ label, value: alone, unit: "pps", series: "generator alone" });
        for (const path of ["batched", "seed"] as const) {
          const k = bench.costs[`${dir} ${path}`];
          const series = path === "seed" ? "seed algorithm" : "qnicd";
          figures.push({ label: `${label} FFI calls per packet`, value: k.ffi / k.packets, unit: "calls", series });
          figures.push({ label: `${label} syscalls per packet`, value: k.sys / k.packets, unit: "calls", series });
          figures.push({ label: `${label} notifies per packet`, value: k.notifies / k.packets, unit: "calls", series });
          bench.costs[`${dir} ${path}`] = zero();
        }
        ratios.push({ label: `qnicd / seed algorithm, ${label}`, value: pairs.ratio, goal: null });
        if (alone < ours * GENERATOR_MARGIN) invalid.push(`qnicd ${label}: the generator alone (${kpps(alone)}) is not ${GENERATOR_MARGIN}x qnicd's ${kpps(ours)}: the generator may be the limit, and the ratio understates batching's gain`);
        const f = figures.slice(-6);
        opts.log(`${label}: qnicd ${kpps(ours)}, seed ${kpps(seed)}, generator alone ${kpps(alone)}, qnicd/seed ${pairs.ratio.toFixed(2)}; per packet ffi ${f[0]!.value.toFixed(2)}/${f[3]!.value.toFixed(2)}, syscalls ${f[1]!.value.toFixed(2)}/${f[4]!.value.toFixed(2)}`);
      }
    }
  } finally {
    bench.close();
    rig.close();
  }
  return {
    name: "seed",
    figures,
    ratios,
    invalid: invalid.length ? invalid : undefined,
    notes: [
      "seed algorithm = QEMU qnic's net_tx_packets / net_rx_packet run inside qnicd's data path (--datapath seed): a grant map + unmap per packet, one switch call per frame, a push and notify check per response",
      "tx: C guest producer -> vif switch port -> sink port drained each pass; rx: 64 frames fed into the switch each pass -> vif port -> guest buffers (one-frame queue: frames past the posted buffers are dropped on both paths)",
      `${runs} alternating qnicd/seed pairs x ${ms} ms per size and direction; figures are medians, ratios the median of per-pair ratios; rsp_event re-armed before each pass as a netfront does`,
      "syscalls per packet count what Xen would do (map: ioctl + mmap, unmap: munmap + ioctl, grant copy: one ioctl, notify: one ioctl), from the vif counters",
    ],
  };
}

export const scenario: Scenario & { pin?: string } = {
  name: "seed",
  description: "QEMU qnic's per-packet algorithm (map/unmap per packet, notify check per response) vs qnicd's batched path, tx/rx 64/1500 B behind the switch",
  pin: "0",
  run,
};

if (import.meta.main) await runStandalone(scenario, import.meta.path);
