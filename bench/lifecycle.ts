// Usage: bun bench/lifecycle.ts [--cycles N (100)] [--warmup N (10)] [--workers N (2)] [--out FILE (bench/results/lifecycle.json)]
//
// Guest lifecycle against the daemon as its own process on a simulated host (the loop of
// bench/lib/sim-daemon.ts, which test/daemon/lifecycle.test.ts asserts on): N guests, each `xl
// create` with one vif and a real netfront, both sides Connected, then `xl destroy` the libxl way.
// Prints the time from the start of the create call to both xenstore state nodes reading 4
// (Connected), seen through xenstore watches: median, p90, max. The span includes libxl's work and
// its wait for the backend's InitWait, the netfront's start (in this process) and both handshakes.
// Also the daemon's open fds, threads and RSS after warm-up and after the N cycles.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_WARMUP, lifecycleLoop, percentile, startRig, type ProcSnapshot } from "./lib/sim-daemon.ts";

const USAGE = "usage: bun bench/lifecycle.ts [--cycles N (100)] [--warmup N (10)] [--workers N (2)] [--out FILE (bench/results/lifecycle.json)]";

function count(name: string, v: string | undefined, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`lifecycle: --${name}: "${v}" is not an integer >= ${min}\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

let args;
try {
  args = parseArgs({
    options: { cycles: { type: "string" }, warmup: { type: "string" }, workers: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } },
  }).values;
} catch (e) {
  process.stderr.write(`lifecycle: ${(e as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const cycles = count("cycles", args.cycles, 100, 1);
const warmup = count("warmup", args.warmup, DEFAULT_WARMUP, 0);
const workers = count("workers", args.workers, 2, 1);
const out = resolve(args.out ?? resolve(import.meta.dir, "results", "lifecycle.json"));

const rig = await startRig({ workers });
let result;
try {
  process.stderr.write(`lifecycle: daemon pid ${rig.pid}, ${workers} workers; ${warmup} warm-up cycles, then ${cycles}\n`);
  result = await lifecycleLoop(rig, {
    cycles,
    warmup,
    onCycle: (i) => {
      if ((i + 1) % 25 === 0) process.stderr.write(`lifecycle: ${i + 1}/${cycles}\n`);
    },
  });
} finally {
  const { exitCode, hostWarnings } = await rig.close();
  if (exitCode !== 0) process.stderr.write(`lifecycle: the daemon exited with ${exitCode} on SIGTERM\n`);
  for (const w of hostWarnings) process.stderr.write(`lifecycle: host teardown: ${w}\n`);
}

const { warm, after } = result;
const connect = result.cycles.map((c) => c.connectMs).sort((a, b) => a - b);
const destroy = result.cycles.map((c) => c.destroyMs).sort((a, b) => a - b);
const summary = (xs: number[]) => ({ median: percentile(xs, 50), p90: percentile(xs, 90), max: xs.at(-1)! });
const proc = (s: ProcSnapshot) => ({ fds: s.fds, threads: s.threads, workerThreads: s.workerThreads, rssKiB: s.rssKiB, guestMappings: s.guestMappings.length });
const problems = [
  after.fds !== warm.fds && `fds ${warm.fds} -> ${after.fds}`,
  after.guestMappings.length > 0 && `${after.guestMappings.length} guest mappings left`,
  after.workerThreads !== warm.workerThreads && `worker threads ${warm.workerThreads} -> ${after.workerThreads}`,
  result.portsAfter.length > 0 && `${result.portsAfter.length} dom0 ports in use`,
  ...rig.libxlLog.filter((l) => /^libxl: (error|warning):/.test(l)),
].filter((p): p is string => typeof p === "string");

const report = {
  name: "lifecycle",
  date: new Date().toISOString(),
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? "unknown",
  bun: Bun.version,
  workers,
  warmup,
  cycles,
  createToConnectedMs: summary(connect),
  destroyToForgottenMs: summary(destroy),
  daemon: { afterWarmup: proc(warm), afterCycles: proc(after) },
  dom0Ports: { afterWarmup: result.portsWarm, afterCycles: result.portsAfter.length },
  problems,
  samples: result.cycles,
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

const ms = (x: number) => `${x.toFixed(1)} ms`;
const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
const c = report.createToConnectedMs;
const d = report.destroyToForgottenMs;
console.log(`xl create -> both Connected (${cycles} guests): median ${ms(c.median)}, p90 ${ms(c.p90)}, max ${ms(c.max)}`);
console.log(`xl destroy -> vif gone from /vifs:       median ${ms(d.median)}, p90 ${ms(d.p90)}, max ${ms(d.max)}`);
console.log(`daemon open fds:  ${warm.fds} after ${warmup} warm-up cycles, ${after.fds} after ${cycles} more`);
console.log(`daemon RSS:       ${mib(warm.rssKiB)} after warm-up, ${mib(after.rssKiB)} after ${cycles} cycles`);
console.log(`daemon threads:   ${warm.threads} -> ${after.threads} (pool workers ${warm.workerThreads} -> ${after.workerThreads}); guest mappings ${after.guestMappings.length}; dom0 ports in use ${result.portsAfter.length}`);
console.log(problems.length ? `LEAKS OR ERRORS: ${problems.join("; ")}` : "nothing left behind");
console.log(`wrote ${out}`);
if (problems.length) process.exitCode = 1;
