// Many vifs on one daemon: 1, 10, 100 and 1000 vifs connected at once to the real daemon
// (src/main.ts as its own process, --platform sim --peer null, via bench/lib/sim-daemon.ts), with
// the toolstack (src/sim/toolstack, libxl's nodes and waits) and the guests' drivers in this
// process. Per count: connect time (first `xl create` to the last vif Connected, and the per-vif
// median from its domain's create to its Connected), the daemon's RSS, its idle CPU over a few
// seconds with every vif connected (utime + stime from /proc/<pid>/stat), and aggregate tx
// packets/s with every vif sending 64 B frames into the null sink.
//
// Guests: up to 25 vifs per guest domain (a vif's frontend nodes, grants and ports fit the sim's
// per-domain quotas many times over at that size), driven by bench/lib/light-netfront.ts (one
// xenstore connection and one event-channel device per domain; see there why not src/sim/netfront).
// The daemon runs max(2, ceil(vifs / VIFS_PER_WORKER)) workers: two, one per CPU of the 2-CPU VMs
// this runs on, up to 2048 vifs (src/daemon.ts). Idle CPU is measured over 10 s once the connects'
// aftermath (garbage collection, the allocator's purge) has passed: an idle daemon, not a settling one.
//   bun bench/scenarios/vifs.ts [--quick]
import { readFileSync } from "node:fs";
import { udpFrame } from "../lib/datapath-rig.ts";
import { LightDomain, type LightVif } from "../lib/light-netfront.ts";
import { runStandalone } from "../lib/run-standalone.ts";
import type { Figure, Scenario, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { startRig, type Rig } from "../lib/sim-daemon.ts";
import { median } from "../lib/stats.ts";
import { VIFS_PER_WORKER } from "../../src/daemon.ts";

const VIFS_PER_DOMAIN = 25;
const CLK_TCK = 100;
const DEPTH = 64;
/** From the last connect to the idle window (full runs). */
const SETTLE_MS = 10_000;

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface CountResult {
  vifs: number;
  workers: number;
  domains: number;
  connectS: number;
  perVifMs: number;
  rssMiB: number;
  idlePct: number;
  pps: number;
  errors: number;
}

async function measure(n: number, quick: boolean, log: (l: string) => void): Promise<CountResult> {
  const workers = Math.max(2, Math.ceil(n / VIFS_PER_WORKER));
  // Default log level: the rig waits for the daemon's "serving" line.
  const rig: Rig = await startRig({ workers });
  const doms: LightDomain[] = [];
  try {
    const frame = udpFrame(64);
    const vifs: LightVif[] = [];
    const startedAt = new Map<LightVif, number>();
    const connects: Promise<void>[] = [];
    const t0 = performance.now();
    for (let made = 0, i = 0; made < n; i++) {
      const k = Math.min(VIFS_PER_DOMAIN, n - made);
      const tc = performance.now();
      const d = await rig.ts.create(`bench${i}`, { vifs: k });
      const dom = await LightDomain.open(rig.dir, d.domid);
      doms.push(dom);
      // libxl unpauses the guest once its devices are added; its driver then connects each vif.
      for (const v of dom.addVifs(d.nics.map((nic) => nic.devid), frame)) {
        startedAt.set(v, tc);
        vifs.push(v);
        connects.push(v.connect(120_000));
      }
      made += k;
    }
    await Promise.all(connects);
    const connectS = (Math.max(...vifs.map((v) => v.connectedAt)) - t0) / 1000;
    const perVifMs = median(vifs.map((v) => v.connectedAt - startedAt.get(v)!));
    // The aftermath of the connects (the JS collector and the allocator returning their garbage,
    // measured at ~1.5-2.5 % of a CPU for 10 s after 1000 vifs) is not idleness: let it pass.
    await Bun.sleep(quick ? 300 : SETTLE_MS);
    const rss = rssMiB(rig.pid);
    const idleMs = quick ? 2000 : 10_000;
    const c0 = cpuTicks(rig.pid);
    const i0 = performance.now();
    await Bun.sleep(idleMs);
    const idlePct = ((cpuTicks(rig.pid) - c0) / CLK_TCK / ((performance.now() - i0) / 1000)) * 100;
    // Every vif sending: this process polls every ring in turn (one CPU), the daemon has the other.
    const trafficMs = quick ? 1000 : 3000;
    for (const v of vifs) v.pump(DEPTH); // warm-up: rings filled once
    await Bun.sleep(50);
    const okBefore = vifs.reduce((a, v) => a + v.ok, 0);
    const t1 = performance.now();
    const end = t1 + trafficMs;
    for (let round = 0; performance.now() < end; round++) {
      let got = 0;
      for (const v of vifs) got += v.pump(DEPTH);
      if (got === 0 || (round & 255) === 255) await Bun.sleep(0);
    }
    const secs = (performance.now() - t1) / 1000;
    const pps = (vifs.reduce((a, v) => a + v.ok, 0) - okBefore) / secs;
    const errors = vifs.reduce((a, v) => a + v.errors, 0);
    const r = { vifs: n, workers, domains: doms.length, connectS, perVifMs, rssMiB: rss, idlePct, pps, errors };
    log(`${n} vifs (${doms.length} domains, ${workers} workers): connect ${connectS.toFixed(2)} s (per vif median ${perVifMs.toFixed(0)} ms), RSS ${rss.toFixed(0)} MiB, idle CPU ${idlePct.toFixed(1)} %, ${(pps / 1000).toFixed(0)} kpps aggregate`);
    return r;
  } finally {
    for (const d of doms) d.close();
    await rig.close();
  }
}

async function run(opts: ScenarioOptions): Promise<ScenarioResult> {
  const counts = opts.quick ? [1, 10, 100] : [1, 10, 100, 1000];
  const figures: Figure[] = [];
  const notes: string[] = [];
  const invalid: string[] = [];
  for (const n of counts) {
    const r = await measure(n, opts.quick, opts.log);
    const s = "qnicd";
    figures.push({ label: `${n} vifs: connect time, all`, value: r.connectS, unit: "s", series: s, x: n });
    figures.push({ label: `${n} vifs: connect time per vif, median`, value: r.perVifMs, unit: "ms", series: s, x: n });
    figures.push({ label: `${n} vifs: daemon RSS`, value: r.rssMiB, unit: "MiB", series: s, x: n });
    figures.push({ label: `${n} vifs: daemon idle CPU`, value: r.idlePct, unit: "%", series: s, x: n });
    figures.push({ label: `${n} vifs: aggregate tx 64 B`, value: r.pps, unit: "pps", series: s, x: n });
    notes.push(`${n} vifs: ${r.domains} guest domain(s) of up to ${VIFS_PER_DOMAIN} vifs, daemon --workers ${r.workers}`);
    if (r.errors) invalid.push(`${n} vifs: ${r.errors} tx requests were answered with errors`);
  }
  notes.push(
    "daemon = src/main.ts in its own process (--platform sim --peer null); toolstack and guest drivers (bench/lib/light-netfront.ts) in the bench process",
    "connect time: from the first xl create (which waits for InitWait, as libxl) to the last vif's backend Connected; per vif: from its domain's create to its Connected",
    `idle CPU: daemon utime + stime over ${opts.quick ? 2 : 10} s (from ${opts.quick ? 0.3 : SETTLE_MS / 1000} s after the last connect) with every vif connected and no traffic, % of one CPU; aggregate: every vif keeps ${DEPTH} tx requests in flight, the generator polling every ring from one process (not measured alone: with many vifs it shares the 2 CPUs with the daemon)`,
  );
  return { name: "vifs", figures, ratios: [], invalid: invalid.length ? invalid : undefined, notes };
}

export const scenario: Scenario = {
  name: "vifs",
  description: "1/10/100/1000 vifs on one daemon: connect time, RSS, idle CPU, aggregate packets/s (--quick stops at 100)",
  run,
};

if (import.meta.main) await runStandalone(scenario, import.meta.path);
