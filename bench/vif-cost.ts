// Usage: bun bench/vif-cost.ts [--vifs N (1000)] [--workers N (the vifs scenario's choice)] [--idle S (10)] [--settle S (1)] [--prof DIR] [--arg DAEMON-OPTION ...]
//
// Where a many-vif daemon's memory and CPU go: N vifs connected to the daemon as its own process
// (the vifs scenario's rig and light netfront, no traffic), then
//   - connect time (first xl create to the last vif Connected), and when the toolstack had created
//     the last domain (domains are created one after another, as a host's boot would: the daemon
//     cannot finish before the last vifs exist, so the time after that is the daemon's tail),
//   - RSS from /proc/<pid>/status and its split from smaps_rollup (anonymous, file, shared memory),
//     and the anonymous mappings grouped by size (JS heaps and allocator arenas show as large ones),
//   - CPU over S idle seconds per thread (/proc/<pid>/task/<tid>/stat utime + stime, by thread
//     name), the bench process itself asleep meanwhile, so it measures the daemon and nothing else.
// A diagnostic, not a scenario: `npm run bench -- vifs` gives the tabled figures.
import { readFileSync, readdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { udpFrame } from "./lib/datapath-rig.ts";
import { LightDomain, type LightVif } from "./lib/light-netfront.ts";
import { startRig } from "./lib/sim-daemon.ts";
import { VIFS_PER_WORKER } from "../src/daemon.ts";
import { runningXenstored } from "../src/sim/toolstack/host.ts";

const CLK_TCK = 100;
const VIFS_PER_DOMAIN = 25;

const { values } = parseArgs({ options: { vifs: { type: "string" }, workers: { type: "string" }, idle: { type: "string" }, settle: { type: "string" }, strace: { type: "boolean" }, prof: { type: "string" }, arg: { type: "string", multiple: true } } });
const n = Number(values.vifs ?? 1000);
const workers = Number(values.workers ?? Math.max(2, Math.ceil(n / VIFS_PER_WORKER)));
const idleS = Number(values.idle ?? 10);
/** Seconds between the last connect and the idle window (the connect's own garbage collection and log lines). */
const settleS = Number(values.settle ?? 1);

function procTicks(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"));
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      out.set(`${name}#${tid}`, Number(f[11]) + Number(f[12]));
    } catch {
      // exited
    }
  }
  return out;
}

function memory(pid: number): string[] {
  const lines: string[] = [];
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  for (const k of ["VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"]) lines.push(new RegExp(`^${k}:.*$`, "m").exec(st)?.[0] ?? "");
  // Anonymous mappings by RSS, largest first; file mappings summed per file.
  const smaps = readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n");
  const maps: { name: string; size: number; rss: number }[] = [];
  let cur: { name: string; size: number; rss: number } | null = null;
  for (const l of smaps) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(l);
    if (head) {
      cur = { name: head[3] || "[anon]", size: (parseInt(head[2]!, 16) - parseInt(head[1]!, 16)) / 1024, rss: 0 };
      maps.push(cur);
    } else if (cur && l.startsWith("Rss:")) cur.rss = Number(/(\d+)/.exec(l)![1]);
  }
  const byName = new Map<string, { n: number; rss: number }>();
  for (const m of maps) {
    const key = m.name === "[anon]" ? `[anon] ${m.size >= 65536 ? ">=64M" : m.size >= 8192 ? "8M-64M" : m.size >= 1024 ? "1M-8M" : m.size >= 128 ? "128K-1M" : "<128K"}` : m.name.replace(/\/dom\d+\./, "/domN.").replace(/qnicd-[^/]*\//, "qnicd-*/");
    const e = byName.get(key) ?? { n: 0, rss: 0 };
    e.n++;
    e.rss += m.rss;
    byName.set(key, e);
  }
  const rows = [...byName].sort((a, b) => b[1].rss - a[1].rss).slice(0, 14);
  for (const [k, e] of rows) lines.push(`  ${(e.rss / 1024).toFixed(1).padStart(7)} MiB in ${String(e.n).padStart(5)} mappings: ${k}`);
  return lines;
}

// --prof DIR: the daemon writes a CPU profile (markdown) there when it exits.
const runtimeArgs = values.prof ? ["--cpu-prof-md", `--cpu-prof-dir=${values.prof}`] : [];
const rig = await startRig({ workers, daemonArgs: values.arg ?? [], runtimeArgs });
const doms: LightDomain[] = [];
try {
  const vifs: LightVif[] = [];
  const connects: Promise<void>[] = [];
  const frame = udpFrame(64);
  const xsd = runningXenstored(rig.dir)!;
  const before = { daemon: procTicks(rig.pid), xenstored: procTicks(xsd), bench: procTicks(process.pid) };
  const threadsBefore = threadTicks(rig.pid);
  const t0 = performance.now();
  for (let made = 0, i = 0; made < n; i++) {
    const k = Math.min(VIFS_PER_DOMAIN, n - made);
    const d = await rig.ts.create(`cost${i}`, { vifs: k });
    const dom = await LightDomain.open(rig.dir, d.domid);
    doms.push(dom);
    for (const v of dom.addVifs(d.nics.map((nic) => nic.devid), frame)) {
      vifs.push(v);
      connects.push(v.connect(180_000));
    }
    made += k;
  }
  const createdS = (performance.now() - t0) / 1000;
  await Promise.all(connects);
  const connectS = (Math.max(...vifs.map((v) => v.connectedAt)) - t0) / 1000;
  const spent = (pid: number, was: number) => `${((procTicks(pid) - was) / CLK_TCK).toFixed(1)} s`;
  console.log(`${n} vifs, ${workers} workers, ${doms.length} domains: all connected in ${connectS.toFixed(2)} s (the toolstack had created the last domain at ${createdS.toFixed(2)} s)`);
  console.log(`  CPU while connecting: daemon ${spent(rig.pid, before.daemon)}, xenstored ${spent(xsd, before.xenstored)}, toolstack and guests (this process) ${spent(process.pid, before.bench)}`);
  const byThread = [...threadTicks(rig.pid)].map(([k, v]) => [k, v - (threadsBefore.get(k) ?? 0)] as const).filter(([, d]) => d > 0);
  console.log(`  daemon threads: ${byThread.sort((x, y) => y[1] - x[1]).slice(0, 6).map(([k, d]) => `${k.replace(/#\d+$/, "")} ${(d / CLK_TCK).toFixed(1)} s`).join(", ")}`);
  await Bun.sleep(settleS * 1000);
  for (const l of memory(rig.pid)) console.log(l);
  // --strace: which system calls the idle daemon makes, per thread (strace -c; it slows each call).
  const tracer = values.strace ? Bun.spawn(["strace", "-f", "-c", "-p", String(rig.pid)], { stdout: "inherit", stderr: "inherit" }) : null;
  const a = threadTicks(rig.pid);
  const i0 = performance.now();
  await Bun.sleep(idleS * 1000);
  tracer?.kill("SIGINT");
  await tracer?.exited;
  const secs = (performance.now() - i0) / 1000;
  const b = threadTicks(rig.pid);
  let total = 0;
  const per: [string, number][] = [];
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    total += d;
    if (d > 0) per.push([k, d]);
  }
  console.log(`idle CPU over ${secs.toFixed(1)} s: ${((total / CLK_TCK / secs) * 100).toFixed(2)} % of one CPU`);
  for (const [k, d] of per.sort((x, y) => y[1] - x[1]).slice(0, 12)) console.log(`  ${((d / CLK_TCK / secs) * 100).toFixed(2).padStart(6)} %  ${k}`);
} finally {
  for (const d of doms) d.close();
  await rig.close();
}
