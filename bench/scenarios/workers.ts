// Scaling with workers: the real daemon (src/main.ts in its own process, --platform sim --peer
// null, via bench/lib/sim-daemon.ts) with 1, 2, 4, ... workers (up to 2x the CPUs) and as many busy
// vifs (one per worker: the pool places each new vif on the least-loaded worker), every vif
// keeping 64 tx requests of 64 B in flight; aggregate tx packets/s per worker count.
// The generator (bench/lib/light-netfront.ts: every ring polled from this one process) is measured
// alone first on the same rings, answering its own requests as an infinitely fast backend would;
// a worker count whose figure is not clearly below that rate is marked invalid.
//   bun bench/scenarios/workers.ts [--quick]
import { availableParallelism } from "node:os";
import { udpFrame } from "../lib/datapath-rig.ts";
import { GENERATOR_MARGIN } from "../lib/datapath-rig.ts";
import { LightDomain, type LightVif } from "../lib/light-netfront.ts";
import { runStandalone } from "../lib/run-standalone.ts";
import type { Figure, Ratio, Scenario, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { startRig } from "../lib/sim-daemon.ts";

const DEPTH = 64;

/** Aggregate responses/s over `ms` of every vif pumping (and, when `selfAck`, answering itself). */
async function flood(vifs: LightVif[], ms: number, selfAck: boolean): Promise<number> {
  for (const v of vifs) v.pump(DEPTH);
  const ok0 = vifs.reduce((a, v) => a + v.ok, 0);
  const t0 = performance.now();
  const end = t0 + ms;
  for (let round = 0; performance.now() < end; round++) {
    let got = 0;
    for (const v of vifs) {
      if (selfAck) v.ackAll();
      got += v.pump(DEPTH);
    }
    if (got === 0 || (round & 255) === 255) await Bun.sleep(0);
  }
  const secs = (performance.now() - t0) / 1000;
  return (vifs.reduce((a, v) => a + v.ok, 0) - ok0) / secs;
}

function counts(): number[] {
  const max = 2 * availableParallelism();
  const out: number[] = [];
  for (let k = 1; k <= max; k *= 2) out.push(k);
  if (out[out.length - 1] !== max) out.push(max);
  return out;
}

async function run(opts: ScenarioOptions): Promise<ScenarioResult> {
  const ms = opts.quick ? 1000 : 3000;
  const figures: Figure[] = [];
  const ratios: Ratio[] = [];
  const invalid: string[] = [];
  let base = NaN;
  for (const k of counts()) {
    const rig = await startRig({ workers: k });
    let dom: LightDomain | undefined;
    try {
      const d = await rig.ts.create("busy", { vifs: k });
      dom = await LightDomain.open(rig.dir, d.domid);
      const vifs = dom.addVifs(d.nics.map((n) => n.devid), udpFrame(64));
      // Alone: the same rings before the backend has them (it maps them only once they are Connected).
      const alone = await flood(vifs, ms, true);
      await Promise.all(vifs.map((v) => v.connect(30_000)));
      await Bun.sleep(100);
      await flood(vifs, Math.min(300, ms), false); // warm-up: workers' code paths compiled
      const pps = await flood(vifs, ms, false);
      const errors = vifs.reduce((a, v) => a + v.errors, 0);
      if (k === 1) base = pps;
      figures.push({ label: `${k} workers, ${k} vifs, tx 64 B`, value: pps, unit: "pps", series: "qnicd", x: k, chart: "workers" });
      figures.push({ label: `${k} workers, ${k} vifs, tx 64 B`, value: alone, unit: "pps", series: "generator alone", x: k, chart: "workers" });
      ratios.push({ label: `aggregate pps, ${k} workers / 1 worker`, value: pps / base, goal: null });
      if (alone < pps * GENERATOR_MARGIN) invalid.push(`${k} workers: the generator alone (${(alone / 1e6).toFixed(2)} Mpps) is not ${GENERATOR_MARGIN}x qnicd's ${(pps / 1e6).toFixed(2)} Mpps: the generator may be the limit`);
      if (errors) invalid.push(`${k} workers: ${errors} tx requests were answered with errors`);
      opts.log(`${k} workers x ${k} busy vifs: ${(pps / 1e6).toFixed(3)} Mpps (x${(pps / base).toFixed(2)} of 1 worker), generator alone ${(alone / 1e6).toFixed(3)} Mpps`);
    } finally {
      dom?.close();
      await rig.close();
    }
  }
  await queueScaling(ms, figures, ratios, invalid, opts);
  return {
    name: "workers",
    figures,
    ratios,
    invalid: invalid.length ? invalid : undefined,
    notes: [
      `worker counts ${counts().join(", ")} (up to 2x the ${availableParallelism()} CPUs), one busy vif per worker, ${ms} ms each; daemon = src/main.ts (--platform sim --peer null) in its own process, not pinned`,
      "generator: one process polling every ring (bench/lib/light-netfront.ts), 64 requests of 64 B in flight per vif; it shares the machine's CPUs with the daemon's workers, so on a 2-CPU VM scaling past 2 workers is not expected",
      `queues: one vif with ${QUEUE_COUNTS.join(", ")} queues (multi-queue-num-queues, each queue its own ring pair and event channel) on a daemon with ${QUEUE_WORKERS} workers and --max-queues ${QUEUE_WORKERS}; the pool spreads a vif's queues over the workers; 64 requests of 64 B in flight per queue`,
    ],
  };
}

const QUEUE_COUNTS = [1, 2, 4];
const QUEUE_WORKERS = 4;

/** One vif's tx throughput with 1, 2 and 4 queues (issue: multi-queue), each measured against the generator alone. */
async function queueScaling(ms: number, figures: Figure[], ratios: Ratio[], invalid: string[], opts: ScenarioOptions): Promise<void> {
  let base = NaN;
  for (const n of QUEUE_COUNTS) {
    const rig = await startRig({ workers: QUEUE_WORKERS, daemonArgs: ["--max-queues", String(QUEUE_WORKERS)] });
    let dom: LightDomain | undefined;
    try {
      const d = await rig.ts.create("queued", { vifs: 1 });
      dom = await LightDomain.open(rig.dir, d.domid);
      const vifs = dom.addVifs(d.nics.map((nic) => nic.devid), udpFrame(64), n);
      const alone = await flood(vifs, ms, true);
      await Promise.all(vifs.map((v) => v.connect(30_000)));
      await Bun.sleep(100);
      await flood(vifs, Math.min(300, ms), false);
      const pps = await flood(vifs, ms, false);
      const errors = vifs.reduce((a, v) => a + v.errors, 0);
      if (n === 1) base = pps;
      figures.push({ label: `1 vif, ${n} queues, tx 64 B`, value: pps, unit: "pps", series: "qnicd", x: n, chart: "queues" });
      figures.push({ label: `1 vif, ${n} queues, tx 64 B`, value: alone, unit: "pps", series: "generator alone", x: n, chart: "queues" });
      ratios.push({ label: `one vif's pps, ${n} queues / 1 queue`, value: pps / base, goal: null });
      if (alone < pps * GENERATOR_MARGIN) invalid.push(`${n} queues: the generator alone (${(alone / 1e6).toFixed(2)} Mpps) is not ${GENERATOR_MARGIN}x qnicd's ${(pps / 1e6).toFixed(2)} Mpps: the generator may be the limit`);
      if (errors) invalid.push(`${n} queues: ${errors} tx requests were answered with errors`);
      opts.log(`1 vif x ${n} queues: ${(pps / 1e6).toFixed(3)} Mpps (x${(pps / base).toFixed(2)} of 1 queue), generator alone ${(alone / 1e6).toFixed(3)} Mpps`);
    } finally {
      dom?.close();
      await rig.close();
    }
  }
}

export const scenario: Scenario = {
  name: "workers",
  description: "1..2xCPUs workers with as many busy vifs: aggregate tx packets/s per worker count (chart: workers); one vif with 1, 2 and 4 queues (chart: queues)",
  run,
};

if (import.meta.main) await runStandalone(scenario, import.meta.path);
