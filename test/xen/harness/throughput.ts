// Turns the throughput steps' console results (dom0-run.sh: "tput ..." per transfer, "tput_snap ..."
// counters before and after each direction) into the report bench/lib/xen-report.ts describes:
// MB/s of each transfer, medians, the qnicd / netback ratios and what each direction cost per MB
// and per packet. Pure: the numbers come only from the lines.
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { join } from "node:path";
import type { Rate, XenBackend, XenDirection, XenDirectionCost, XenThroughputReport, XenTransfer } from "../../../bench/lib/xen-report.ts";
import { XEN_BACKENDS, XEN_DIRECTIONS, XEN_REPORT_PATH, writeXenReport } from "../../../bench/lib/xen-report.ts";
import type { TestbedRun, XferMark } from "./run.ts";

const MB = 1 << 20;

function fields(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/(\w+)=(\S+)/g)) out[m[1]!] = m[2]!;
  return out;
}

/** The transfers, each with the CPU time QEMU spent between its start and end marks when both were seen. */
export function parseTransfers(results: readonly string[], marks: readonly XferMark[] = []): XenTransfer[] {
  const out: XenTransfer[] = [];
  for (const l of results) {
    if (!l.startsWith("tput ")) continue;
    const f = fields(l);
    const label = `${f.backend} ${f.dir} ${f.i}`;
    const start = marks.find((m) => m.label === label && m.phase === "start");
    const end = marks.find((m) => m.label === label && m.phase === "end");
    const cpu = start && end ? end.qemuCpuS - start.qemuCpuS : undefined;
    out.push({
      backend: f.backend as XenBackend,
      dir: f.dir as XenDirection,
      i: Number(f.i),
      bytes: Number(f.bytes),
      secs: Number(f.secs),
      mbps: Number(f.mbps),
      shaOk: f.sha === "ok",
      ...(cpu !== undefined && cpu > 0 ? { qemuCpuS: cpu, mbPerCpuS: Number(f.bytes) / MB / cpu } : {}),
    });
  }
  return out;
}

export interface InterruptLine {
  irq: string;
  /** Summed over the CPU columns. */
  count: number;
  /** The handlers' names (what a driver passed to request_irq), e.g. "vif1.0-q0-tx", "evtchn:bun". */
  name: string;
}

/**
 * One /proc/interrupts line: "IRQ: <count per CPU> <chip> [hwirq] -<flow> <names>". Xen's event
 * channel IRQs read e.g. " 52:  1234  xen-dyn  -event  vif1.0-q0-tx" (linux kernel/irq/proc.c,
 * show_interrupts: the flow handler's name is printed with a leading '-', the actions' names last).
 */
export function parseInterruptLine(line: string): InterruptLine | null {
  const m = /^\s*(\w+):((?:\s+\d+)+)\s+(.*)$/.exec(line);
  if (!m) return null;
  const count = m[2]!.trim().split(/\s+/).reduce((a, n) => a + Number(n), 0);
  const rest = m[3]!.trim().split(/\s+/);
  const flow = rest.findIndex((t) => t.startsWith("-"));
  const name = (flow >= 0 ? rest.slice(flow + 1) : rest.slice(-1)).join(" ");
  return { irq: m[1]!, count, name };
}

interface Snapshot {
  dev?: Record<string, number>;
  retrans?: number;
  guestRetrans?: number;
  irqs: InterruptLine[];
  vifs?: Record<string, number>;
  guestDev?: Record<string, number>;
  guestIrqs: InterruptLine[];
  /** netfront's rx_gso_checksum_fixup, summed over the guest's eth* (xfer.c's "ethtool" lines). */
  guestGsoCsumFixups?: number;
  /** dom0's /proc/stat "cpu" line, in ticks. */
  cpu?: Record<string, number>;
  /** The backend's threads (qnicd's, or netback's kthreads of the vif): CPU ticks in user and kernel mode. */
  threads: { comm: string; tid: string; utime: number; stime: number }[];
}

type SnapKey = `${XenBackend} ${XenDirection} ${"before" | "after"}`;

function numbers(f: Record<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(f)) if (/^\d+$/.test(v)) out[k] = Number(v);
  return out;
}

/** The `"counters":{...}` the harness cut out of a /vifs answer, or undefined when absent or cut short. */
function vifsCounters(body: string | undefined): Record<string, number> | undefined {
  if (!body) return undefined;
  try {
    return (JSON.parse(`{${body}}`) as { counters: Record<string, number> }).counters;
  } catch {
    return undefined;
  }
}

export function parseSnapshots(results: readonly string[]): Map<SnapKey, Snapshot> {
  const snaps = new Map<SnapKey, Snapshot>();
  for (const l of results) {
    const m = /^tput_snap backend=(\w+) dir=(\w+) at=(\w+) (\w+) ?(.*)$/.exec(l);
    if (!m) continue;
    const key = `${m[1]} ${m[2]} ${m[3]}` as SnapKey;
    const s = snaps.get(key) ?? { irqs: [], guestIrqs: [], threads: [] };
    snaps.set(key, s);
    const [kind, body] = [m[4]!, m[5]!];
    if (kind === "dev") s.dev = numbers(fields(body));
    else if (kind === "tcp") s.retrans = numbers(fields(body)).retrans_segs;
    else if (kind === "cpu") s.cpu = numbers(fields(body));
    else if (kind === "thread") {
      const f = fields(body);
      const n = numbers(f);
      if (f.comm !== undefined && f.tid !== undefined && n.utime !== undefined && n.stime !== undefined) s.threads.push({ comm: f.comm, tid: f.tid, utime: n.utime, stime: n.stime });
    }
    else if (kind === "irq") {
      const irq = parseInterruptLine(body);
      if (irq) s.irqs.push(irq);
    } else if (kind === "vifs") {
      s.vifs = vifsCounters(body);
    } else if (kind === "guest") {
      if (body.startsWith("dev ")) s.guestDev = numbers(fields(body));
      else if (body.startsWith("tcp ")) s.guestRetrans = numbers(fields(body)).retrans_segs;
      else if (body.startsWith("ethtool ")) {
        const v = /^ethtool \S+ rx_gso_checksum_fixup=(\d+)$/.exec(body);
        if (v) s.guestGsoCsumFixups = (s.guestGsoCsumFixups ?? 0) + Number(v[1]);
      }
      else if (body.startsWith("irq ")) {
        const irq = parseInterruptLine(body.slice(4));
        if (irq) s.guestIrqs.push(irq);
      }
    }
  }
  return snaps;
}

function rate(total: number, mb: number, packets?: number): Rate {
  return { total, perMB: mb > 0 ? total / mb : 0, ...(packets !== undefined ? { perPacket: packets > 0 ? total / packets : 0 } : {}) };
}

/** Counts after minus before, per IRQ (an IRQ not there before counts from 0). */
function irqDelta(before: InterruptLine[], after: InterruptLine[], keep: (name: string) => boolean): { total: number; byName: Record<string, number> } {
  const byName: Record<string, number> = {};
  let total = 0;
  for (const a of after) {
    if (!keep(a.name)) continue;
    const b = before.find((x) => x.irq === a.irq && x.name === a.name);
    const d = a.count - (b?.count ?? 0);
    byName[a.name] = (byName[a.name] ?? 0) + d;
    total += d;
  }
  return { total, byName };
}

/** Which dom0 IRQs are the backend's: netback's vif IRQs, or qnicd's user-space event channels. */
function isBackendIrq(backend: XenBackend, name: string): boolean {
  if (backend === "netback") return /^vif\d+\.\d+-/.test(name);
  return name.startsWith("evtchn:") && !/^evtchn:(xenstored|xenconsoled)\b/.test(name);
}

/** USER_HZ: the unit of /proc/stat and of a thread's utime/stime (100 on every x86 Linux). */
const TICKS_PER_SECOND = 100;

/**
 * Where dom0's CPU went over the transfers, in ms per MiB: dom0 as a whole (/proc/stat) and the
 * backend's threads. Threads are matched by tid; one that appeared meanwhile counts from 0.
 */
function cpuCost(mb: number, before: Snapshot, after: Snapshot): XenDirectionCost["cpu"] {
  if (!before.cpu || !after.cpu || mb <= 0) return undefined;
  const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND / mb;
  const d = (...keys: string[]) => ms(keys.reduce((sum, k) => sum + (after.cpu![k] ?? 0) - (before.cpu![k] ?? 0), 0));
  const byThread: Record<string, { user: number; system: number }> = {};
  let user = 0;
  let system = 0;
  for (const a of after.threads) {
    const b = before.threads.find((t) => t.tid === a.tid);
    const u = ms(a.utime - (b?.utime ?? 0));
    const k = ms(a.stime - (b?.stime ?? 0));
    const t = (byThread[a.comm] ??= { user: 0, system: 0 });
    t.user += u;
    t.system += k;
    user += u;
    system += k;
  }
  return {
    dom0: { user: d("user", "nice"), system: d("system"), irq: d("irq", "softirq"), idle: d("idle", "iowait"), steal: d("steal") },
    backend: { user, system, byThread },
  };
}

function directionCost(backend: XenBackend, dir: XenDirection, mb: number, before: Snapshot, after: Snapshot): XenDirectionCost | undefined {
  if (!before.dev || !after.dev) return undefined;
  const d = (a: Record<string, number> | undefined, b: Record<string, number> | undefined, k: string) => (a?.[k] ?? 0) - (b?.[k] ?? 0);
  // dom0's netdev for the guest counts from the host's side: rx = from the guest.
  const dom0Data = d(after.dev, before.dev, dir === "up" ? "rx_packets" : "tx_packets");
  const irqs = irqDelta(before.irqs, after.irqs, (n) => isBackendIrq(backend, n));
  const cost: XenDirectionCost = {
    mb,
    dom0DataPackets: rate(dom0Data, mb),
    dom0Interrupts: { ...rate(irqs.total, mb), byName: irqs.byName },
  };
  if (before.retrans !== undefined && after.retrans !== undefined) {
    cost.tcpRetransmits = { dom0: after.retrans - before.retrans };
    if (before.guestRetrans !== undefined && after.guestRetrans !== undefined) cost.tcpRetransmits.guest = after.guestRetrans - before.guestRetrans;
  }
  if (before.guestGsoCsumFixups !== undefined && after.guestGsoCsumFixups !== undefined) cost.guestGsoChecksumFixups = after.guestGsoCsumFixups - before.guestGsoCsumFixups;
  if (before.guestDev && after.guestDev) {
    cost.guestDataPackets = rate(d(after.guestDev, before.guestDev, dir === "up" ? "tx_packets" : "rx_packets"), mb);
    cost.guestInterrupts = rate(irqDelta(before.guestIrqs, after.guestIrqs, () => true).total, mb);
  }
  const cpu = cpuCost(mb, before, after);
  if (cpu) cost.cpu = cpu;
  if (backend === "qnicd" && before.vifs && after.vifs) {
    const v = (k: string) => d(after.vifs, before.vifs, k);
    const packets = v("tx_packets") + v("rx_packets");
    cost.qnicd = {
      packets,
      syscalls: rate(v("syscalls"), mb, packets),
      ffiCalls: rate(v("ffi_calls"), mb, packets),
      notifiesSent: rate(v("notifies_sent"), mb, packets),
      eventsReceived: rate(v("events_received"), mb, packets),
      batches: rate(v("tx_batches") + v("rx_batches"), mb, packets),
    };
  }
  return cost;
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function buildXenReport(
  results: readonly string[],
  meta: { date: string; commit: string; dirty: boolean; mbPerTransfer: number; qemuSeconds?: number; hostLoad?: number[] },
  marks: readonly XferMark[] = [],
): XenThroughputReport {
  const transfers = parseTransfers(results, marks);
  const snaps = parseSnapshots(results);
  const good = (b: XenBackend, d: XenDirection) => transfers.filter((t) => t.backend === b && t.dir === d && t.shaOk && t.mbps > 0);
  const med = (b: XenBackend) => ({ up: median(good(b, "up").map((t) => t.mbps)), down: median(good(b, "down").map((t) => t.mbps)) });
  const medians = { netback: med("netback"), qnicd: med("qnicd") };
  const medCpu = (b: XenBackend) => {
    const of = (d: XenDirection) => good(b, d).flatMap((t) => (t.mbPerCpuS !== undefined ? [t.mbPerCpuS] : []));
    return { up: median(of("up")), down: median(of("down")) };
  };
  const mediansCpu = { netback: medCpu("netback"), qnicd: medCpu("qnicd") };
  const over = (m: typeof medians, d: XenDirection) => {
    const [q, k] = [m.qnicd[d], m.netback[d]];
    return q !== null && k !== null && k > 0 ? q / k : null;
  };
  const ratio = (d: XenDirection) => over(medians, d);
  const cost: XenThroughputReport["cost"] = { netback: {}, qnicd: {} };
  for (const b of XEN_BACKENDS)
    for (const d of XEN_DIRECTIONS) {
      const [before, after] = [snaps.get(`${b} ${d} before`), snaps.get(`${b} ${d} after`)];
      const mb = good(b, d).reduce((a, t) => a + t.bytes, 0) / MB;
      const c = before && after ? directionCost(b, d, mb, before, after) : undefined;
      if (c) cost[b][d] = c;
    }
  return {
    kind: "qnicd-xen-throughput",
    ...meta,
    transfers,
    median: medians,
    ratio: { up: ratio("up"), down: ratio("down") },
    medianPerCpuS: mediansCpu,
    ratioPerCpuS: { up: over(mediansCpu, "up"), down: over(mediansCpu, "down") },
    cost,
  };
}

/**
 * The report of a testbed run that got as far as any throughput transfer, written to path (where
 * `bun run bench` looks); null, and nothing written, when the run has no throughput figure.
 */
export function recordXenReport(run: TestbedRun, mbPerTransfer: number, path = XEN_REPORT_PATH): XenThroughputReport | null {
  if (!run.results.some((l) => l.startsWith("tput "))) return null;
  const repo = join(import.meta.dir, "..", "..", "..");
  const git = (...args: string[]) => spawnSync("git", ["-C", repo, ...args], { encoding: "utf8" }).stdout?.trim() ?? "";
  const report = buildXenReport(
    run.results,
    {
    date: new Date().toISOString(),
    commit: git("rev-parse", "HEAD") || "unknown",
    dirty: git("status", "--porcelain", "--untracked-files=no") !== "",
    mbPerTransfer,
    qemuSeconds: run.timings.qemuS,
    hostLoad: loadavg(),
    },
    run.xferMarks,
  );
  writeXenReport(report, path);
  return report;
}

/**
 * The first qnicd's up transfers (step qnicd-throughput) beside those of the qnicd that took the
 * vifs over after the restart step (step qnicd-restarted-throughput), from one boot: MB/s of each,
 * the median, and /vifs' syscalls and batches per packet over them. Printed, never judged.
 */
export function restartComparison(results: readonly string[]): string[] {
  const counters = (line: string | undefined) => vifsCounters(/vifs ("counters":\{[^}]*\})/.exec(line ?? "")?.[1]);
  const describe = (label: string, transfers: string[], before?: Record<string, number>, after?: Record<string, number>): string => {
    const mbps = transfers.map((l) => Number(fields(l).mbps ?? NaN)).filter((x) => x > 0);
    const m = median(mbps);
    let cost = "";
    if (before && after) {
      const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      const packets = d("tx_packets") + d("rx_packets");
      if (packets > 0) cost = `, per packet: syscalls ${(d("syscalls") / packets).toFixed(2)}, batches ${((d("tx_batches") + d("rx_batches")) / packets).toFixed(2)} (${packets} packets)`;
    }
    return `${label} MB/s ${mbps.map((x) => x.toFixed(1)).join(" ")}  median ${m === null ? "?" : m.toFixed(1)}${cost}`;
  };
  const first = results.filter((l) => l.startsWith("tput backend=qnicd dir=up "));
  const restarted = results.filter((l) => l.startsWith("restarted_tput dir=up "));
  if (restarted.length === 0) return [];
  return [
    describe("qnicd up, as first started:          ", first, counters(results.find((l) => l.startsWith("tput_snap backend=qnicd dir=up at=before vifs "))), counters(results.find((l) => l.startsWith("tput_snap backend=qnicd dir=up at=after vifs ")))),
    describe("qnicd up, after taking the vifs over:", restarted, counters(results.find((l) => l.startsWith("restarted_tput at=before vifs "))), counters(results.find((l) => l.startsWith("restarted_tput at=after vifs ")))),
  ];
}
