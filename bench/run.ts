// `bun run bench [SCENARIO ...] [--quick] [--out DIR] [--help]`: runs the scenarios (all by default),
// each in a process of its own with a fresh work dir, and prints one table: every figure next to the
// baselines measured in the same run, and the ratios with their goals. Writes DIR/bench.json (every
// figure, ratio, note, skipped/invalid line and the machine) and DIR/bench.svg (packets per second by
// frame size and by worker count). The last real-Xen throughput figures (bench/results/
// xen-throughput.json, from test/xen/e2e.test.ts) are shown under the table and copied into bench.json. A scenario that fails is one line; the others still run and the
// exit code is 1. Absolute numbers on a shared VM are noise: read the ratios.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { renderChart, chartSeries } from "./lib/chart.ts";
import { describeMachine, machineLine } from "./lib/machine.ts";
import { renderTable, type RunEntry } from "./lib/report.ts";
import { formatXenReport, readXenReport, XEN_REPORT_PATH } from "./lib/xen-report.ts";
import type { ScenarioResult } from "./lib/scenario.ts";
import { SCENARIO_NAMES, isScenarioName, loadScenario, type ScenarioName } from "./scenarios/index.ts";

const REPO = resolve(import.meta.dir, "..");
const CHILD = join(import.meta.dir, "lib", "child.ts");
/** A scenario process still running after this long is killed and reported as failed. */
const TIMEOUT_S = { quick: 240, full: 1200 };

function usage(): string {
  return `usage: bun run bench [SCENARIO ...] [--quick] [--out DIR] [--help]
  SCENARIO   one or more of: ${SCENARIO_NAMES.join(", ")} (default: all)
  --quick    short windows and fewer points, same shape of result
  --out DIR  where bench.json and bench.svg go (default: bench/results/)`;
}

async function help(): Promise<void> {
  const lines = [usage(), "", "scenarios:"];
  for (const name of SCENARIO_NAMES) {
    let desc: string;
    try {
      const l = await loadScenario(name);
      desc = "scenario" in l ? l.scenario.description : `(not available: ${l.unavailable})`;
    } catch (e) {
      desc = `(does not load: ${(e as Error).message.split("\n")[0]})`;
    }
    lines.push(`  ${name.padEnd(8)} ${desc}`);
  }
  console.log(lines.join("\n"));
}

function parseArgs(argv: string[]): { names: ScenarioName[]; quick: boolean; out: string } {
  const names: ScenarioName[] = [];
  let quick = false;
  let out = join(import.meta.dir, "results");
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") quick = true;
    else if (a === "--out") {
      const v = argv[++i];
      if (!v) fail("--out needs a directory");
      out = resolve(v);
    } else if (a.startsWith("--out=")) out = resolve(a.slice(6));
    else if (a.startsWith("-")) fail(`unknown option ${a}; options: --quick, --out DIR, --help`);
    else if (!isScenarioName(a)) fail(`unknown scenario '${a}'; valid scenarios: ${SCENARIO_NAMES.join(", ")}`);
    else if (!names.includes(a)) names.push(a);
  }
  return { names: names.length ? names : [...SCENARIO_NAMES], quick, out };
}

function fail(line: string): never {
  console.error(`bench: ${line}`);
  process.exit(2);
}

async function runOne(name: ScenarioName, quick: boolean): Promise<RunEntry> {
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  let pin: string | undefined;
  try {
    const l = await loadScenario(name);
    if ("unavailable" in l) return { name, status: "not available", seconds: seconds(), error: l.unavailable };
    // QNICD_BENCH_CPU moves a pinned scenario to another CPU, for a machine where CPU 0 is busy
    // with something else (an emulator, another job): pinned there, both loops would share it with that.
    pin = l.scenario.pin !== undefined ? (process.env.QNICD_BENCH_CPU ?? l.scenario.pin) : undefined;
  } catch (e) {
    return { name, status: "failed", seconds: seconds(), error: `does not load: ${(e as Error).message.split("\n")[0]}` };
  }
  const work = mkdtempSync(join(tmpdir(), `qnicd-bench-${name}-`));
  const resultFile = join(work, "result.json");
  const scenarioDir = join(work, "w");
  mkdirSync(scenarioDir);
  const cmd = [process.execPath, CHILD, name, scenarioDir, resultFile, ...(quick ? ["--quick"] : [])];
  const pinned = pin !== undefined && Bun.which("taskset") !== null;
  if (pinned) cmd.unshift("taskset", "-c", pin!);
  // The child's stdout joins our stderr: the table alone goes to stdout.
  const child = Bun.spawn(cmd, { stdin: "ignore", stdout: 2, stderr: 2, cwd: REPO });
  const limit = quick ? TIMEOUT_S.quick : TIMEOUT_S.full;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, limit * 1000);
  const code = await child.exited;
  clearTimeout(timer);
  try {
    if (timedOut) return { name, status: "failed", seconds: seconds(), error: `still running after ${limit} s: killed` };
    let parsed: { result?: ScenarioResult; error?: string };
    try {
      parsed = JSON.parse(readFileSync(resultFile, "utf8"));
    } catch {
      return { name, status: "failed", seconds: seconds(), error: `its process ended (exit ${code}${child.signalCode ? `, ${child.signalCode}` : ""}) without a result` };
    }
    if (parsed.error !== undefined || !parsed.result) return { name, status: "failed", seconds: seconds(), error: (parsed.error ?? "no result").split("\n")[0] };
    const result = parsed.result;
    if (pinned) result.notes = [...result.notes, `ran pinned to CPU ${pin} (taskset), with the processes it started`];
    return { name, status: result.skipped ? "skipped" : "ok", seconds: seconds(), result };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  await help();
  process.exit(0);
}
const { names, quick, out } = parseArgs(argv);
const machine = describeMachine(quick, REPO);
const t0 = performance.now();
const entries: RunEntry[] = [];
for (const name of names) {
  console.error(`bench: ${name}${quick ? " (quick)" : ""} ...`);
  const e = await runOne(name, quick);
  console.error(`bench: ${name}: ${e.status} in ${e.seconds.toFixed(1)} s${e.error ? `: ${e.error}` : ""}`);
  entries.push(e);
}
const wallSeconds = (performance.now() - t0) / 1000;

const header = [
  `qnicd bench, ${quick ? "quick run" : "full run"}, ${machine.date}, ${wallSeconds.toFixed(0)} s`,
  machineLine(machine),
  "Figures measured side by side in one run; absolute numbers on a shared machine are noise, ratios are not.",
];
console.log(renderTable(entries, header));
// The last real-Xen figures (test/xen/e2e.test.ts writes them): measured elsewhere, shown beside.
const realXen = readXenReport();
console.log(realXen ? `\n${formatXenReport(realXen).join("\n")}` : `\nreal Xen: no figures yet (npm run test:xen records them in ${XEN_REPORT_PATH})`);

const figures = entries.flatMap((e) => e.result?.figures ?? []);
const subtitle = `${quick ? "quick run" : "full run"}, ${machine.date.slice(0, 16).replace("T", " ")} UTC, ${machine.cores} x ${machine.cpuModel}, commit ${machine.commit.slice(0, 10)}`;
mkdirSync(out, { recursive: true });
const report = {
  bench: "qnicd",
  machine,
  quick,
  wallSeconds,
  scenarios: entries.map((e) => ({
    name: e.name,
    status: e.status,
    seconds: e.seconds,
    error: e.error,
    skipped: e.result?.skipped,
    invalid: e.result?.invalid ?? [],
    figures: e.result?.figures ?? [],
    ratios: e.result?.ratios ?? [],
    notes: e.result?.notes ?? [],
  })),
  chart: chartSeries(figures),
  realXen,
};
writeFileSync(join(out, "bench.json"), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(out, "bench.svg"), renderChart(figures, subtitle));
console.error(`bench: wrote ${join(out, "bench.json")} and ${join(out, "bench.svg")} (${wallSeconds.toFixed(1)} s)`);
process.exit(entries.some((e) => e.status === "failed") ? 1 : 0);
