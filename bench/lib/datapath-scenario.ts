// The tx, rx and bidir scenarios: one vif, frames of 64, 512 and 1500 bytes, qnicd's data path
// (workers/tx.ts, workers/rx.ts) against the C reference loop on the same rings in the same run.
// Per size: the generator alone first (median of three windows), a JIT warm-up, then alternating qnicd / C pairs; the ratio is
// the median of the per-pair ratios, so load from other processes cancels out as far as it can.
import type { Figure, Ratio, ScenarioOptions, ScenarioResult } from "./scenario.ts";
import { DatapathRig, GENERATOR_MARGIN, udpFrame, type Producer, type RingPage } from "./datapath-rig.ts";
import { alternate, median } from "./stats.ts";

export type Direction = "tx" | "rx" | "bidir";

/** qnicd / C goal for the data path (issue 6). */
export const DATAPATH_GOAL = 0.7;
export const DATAPATH_SIZES = [64, 512, 1500];

export function windows(quick: boolean) {
  return quick ? { ms: 100, runs: 3, warmMs: 150 } : { ms: 300, runs: 9, warmMs: 300 };
}

export async function runDatapath(dir: Direction, opts: ScenarioOptions): Promise<ScenarioResult> {
  const { ms, runs, warmMs } = windows(opts.quick);
  const figures: Figure[] = [];
  const ratios: Ratio[] = [];
  const invalid: string[] = [];
  const rig = new DatapathRig(opts.workDir);
  try {
    const txRing = rig.ring();
    const rxRing = rig.ring();
    const rxRefs = rig.rxBuffers(16);
    for (const size of DATAPATH_SIZES) {
      const tmpl = udpFrame(size);
      const producers: Producer[] = [];
      let alone: number, ours: number[], ref: number[], ratio: number;
      try {
        if (dir !== "rx") producers.push(await rig.producer(txRing, ["tx", String(rig.dataPage(tmpl)), String(size)]));
        if (dir !== "tx") producers.push(await rig.producer(rxRing, ["rx", rxRefs.join(",")]));
        const a = pick(dir, rig, txRing, rxRing, size, tmpl);
        alone = median([a.alone(ms), a.alone(ms), a.alone(ms)]); // one window is noisy on a shared VM
        a.ours(warmMs); // JIT warm-up
        const p = alternate(runs, () => a.ours(ms), () => a.ref(ms));
        ours = p.a;
        ref = p.b;
        ratio = p.ratio;
      } finally {
        for (const p of producers) await p.stop();
      }
      const label = `${dir} ${size} B`;
      const o = median(ours), c = median(ref);
      figures.push({ label, value: o, unit: "pps", series: `qnicd ${dir}`, x: size, chart: "frame-size" });
      figures.push({ label, value: c, unit: "pps", series: `C reference ${dir}`, x: size, chart: "frame-size" });
      figures.push({ label, value: alone, unit: "pps", series: "generator alone" });
      ratios.push({ label: `qnicd / C reference, ${label}`, value: ratio, goal: DATAPATH_GOAL });
      if (alone < o * GENERATOR_MARGIN) invalid.push(`qnicd ${label}: the generator alone (${mpps(alone)}) is not ${GENERATOR_MARGIN}x qnicd's ${mpps(o)}: the generator may be the limit`);
      if (alone < c * GENERATOR_MARGIN) invalid.push(`C reference ${label}: the generator alone (${mpps(alone)}) is not ${GENERATOR_MARGIN}x C's ${mpps(c)}: the ratio may understate the gap`);
      opts.log(`${label}: qnicd ${mpps(o)}, C ${mpps(c)}, generator alone ${mpps(alone)}, qnicd/C ${ratio.toFixed(2)}`);
    }
  } finally {
    rig.close();
  }
  const what = dir === "tx" ? "guest tx ring -> null sink" : dir === "rx" ? "source generator -> guest rx ring" : "tx -> null sink and source -> rx on the same vif, one loop (figures are tx + rx packets)";
  return {
    name: dir,
    figures,
    ratios,
    invalid: invalid.length ? invalid : undefined,
    notes: [
      `${what}; sim batched grant copy, batch 64; guest = C producer process (bench/datapath-guest.c)`,
      `${runs} alternating qnicd/C pairs x ${ms} ms per size; figures are medians, ratios the median of per-pair ratios`,
    ],
  };
}

function pick(dir: Direction, rig: DatapathRig, txRing: RingPage, rxRing: RingPage, size: number, tmpl: Uint8Array) {
  if (dir === "tx") return { alone: (ms: number) => rig.ackRate(txRing, ms), ours: (ms: number) => rig.tsTx(txRing, ms), ref: (ms: number) => rig.cTx(txRing, ms) };
  if (dir === "rx") return { alone: (ms: number) => rig.ackRate(rxRing, ms), ours: (ms: number) => rig.tsRx(rxRing, ms, size), ref: (ms: number) => rig.cRx(rxRing, ms, tmpl) };
  return {
    alone: (ms: number) => rig.ack2Rate(txRing, rxRing, ms),
    ours: (ms: number) => rig.tsBidir(txRing, rxRing, ms, size).total,
    ref: (ms: number) => rig.cBidir(txRing, rxRing, ms, tmpl).total,
  };
}

export function mpps(pps: number): string {
  return `${(pps / 1e6).toFixed(3)} Mpps`;
}
