// The real-Xen throughput figures (test/xen/: the netback-throughput and qnicd-throughput steps), as
// the testbed records them and as `bun run bench` shows the last ones next to its own table. They
// come from one boot of Xen under QEMU's emulation: absolute MB/s mean little there, the qnicd /
// kernel netback ratio and the costs per MB mean a lot (with one emulated CPU shared by Xen, dom0
// and the guest, throughput is the inverse of the CPU cost per byte).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export type XenBackend = "netback" | "qnicd";
export type XenDirection = "up" | "down";
export const XEN_BACKENDS: readonly XenBackend[] = ["netback", "qnicd"];
export const XEN_DIRECTIONS: readonly XenDirection[] = ["up", "down"];

/** Where the testbed writes its last report and the bench reads it (bench/results/ is not committed). */
export const XEN_REPORT_PATH = join(import.meta.dir, "..", "results", "xen-throughput.json");

export interface XenTransfer {
  backend: XenBackend;
  /** up: guest -> dom0; down: dom0 -> guest. */
  dir: XenDirection;
  i: number;
  bytes: number;
  secs: number;
  /** MiB per second (the testbed's MB are MiB). */
  mbps: number;
  /** sha256 of what arrived equals what was sent, and all of it arrived. */
  shaOk: boolean;
  /**
   * CPU seconds QEMU spent between the transfer's console marks (the whole emulated machine: Xen,
   * dom0, the guest); unlike MB/s, not inflated when other work on the host takes QEMU's core.
   */
  qemuCpuS?: number;
  /** MiB per QEMU CPU second. */
  mbPerCpuS?: number;
}

/** Per MiB moved and, where packets are known, per packet. */
export interface Rate {
  total: number;
  perMB: number;
  perPacket?: number;
}

/** What one direction's three transfers cost, from counters read before and after them. */
export interface XenDirectionCost {
  /** Payload moved by the transfers that completed, in MiB. */
  mb: number;
  /** dom0's interface for the guest (netback's vif netdev, or qnicd's TAP): packets carrying the data. */
  dom0DataPackets: Rate;
  /** The guest's eth0: packets carrying the data (large ones mean GSO), and all its network IRQs. */
  guestDataPackets?: Rate;
  guestInterrupts?: Rate;
  /**
   * dom0 interrupts of the backend's event channels: kernel netback's vif IRQs, or the user-space
   * event channels qnicd bound through /dev/xen/evtchn ("evtchn:<command>"), each one a wake-up
   * the kernel delivered. By IRQ name as well.
   */
  dom0Interrupts: Rate & { byName: Record<string, number> };
  /**
   * Linux netfront's rx_gso_checksum_fixup (its ethtool statistics) over the transfers, summed over
   * the guest's eth* interfaces: received GSO packets netfront had to give a checksum because the
   * backend did not mark them checksum-partial. Absent when the guest could not read it.
   */
  guestGsoChecksumFixups?: number;
  /** TCP segments sent again during the transfers (each a lost or late packet; a timeout stalls a transfer). */
  tcpRetransmits?: { dom0: number; guest?: number };
  /**
   * Where dom0's CPU time went, in ms per MiB moved: dom0 as a whole (/proc/stat: user, system,
   * hard and soft interrupts, idle, and steal, the time it was runnable while Xen ran the guest)
   * and the backend's threads (every thread of qnicd, user and kernel mode; kernel netback's
   * per-queue kthreads of the vif, its NAPI polls being in dom0's softirq time).
   */
  cpu?: {
    dom0: { user: number; system: number; irq: number; idle: number; steal: number };
    backend: { user: number; system: number; byThread: Record<string, { user: number; system: number }> };
  };
  /** qnicd only: deltas of the vif's /vifs counters, per packet = per guest tx + rx packet. */
  qnicd?: {
    packets: number;
    syscalls: Rate;
    ffiCalls: Rate;
    notifiesSent: Rate;
    /** Event-channel notifications from the frontend that woke a worker. */
    eventsReceived: Rate;
    /** Wake-ups that moved at least one packet (tx_batches + rx_batches). */
    batches: Rate;
  };
}

export interface XenThroughputReport {
  kind: "qnicd-xen-throughput";
  date: string;
  commit: string;
  dirty: boolean;
  /** MiB per transfer. */
  mbPerTransfer: number;
  transfers: XenTransfer[];
  /** Median MiB/s of the transfers that completed with the right sha256, null if none did. */
  median: Record<XenBackend, Record<XenDirection, number | null>>;
  /** qnicd median / netback median. */
  ratio: Record<XenDirection, number | null>;
  /**
   * The same by MiB per QEMU CPU second: the time QEMU waited for a host core left out. Two runs
   * on a shared host still differed by 2x for qnicd (the emulated machine did that much more work
   * per MB), so compare runs with care and ratios within one run first.
   */
  medianPerCpuS?: Record<XenBackend, Record<XenDirection, number | null>>;
  ratioPerCpuS?: Record<XenDirection, number | null>;
  cost: Record<XenBackend, Partial<Record<XenDirection, XenDirectionCost>>>;
  /** How long the whole testbed run took (QEMU wall time), when known. */
  qemuSeconds?: number;
  /**
   * The host's load averages (1, 5, 15 min) when the run ended: QEMU's emulation shares the host's
   * cores, so other work there slows every figure (not always evenly) and widens the spread.
   */
  hostLoad?: number[];
}

export function writeXenReport(report: XenThroughputReport, path = XEN_REPORT_PATH): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

/** The last report, or null when the testbed never ran here (or left something unreadable). */
export function readXenReport(path = XEN_REPORT_PATH): XenThroughputReport | null {
  if (!existsSync(path)) return null;
  try {
    const r = JSON.parse(readFileSync(path, "utf8"));
    return r?.kind === "qnicd-xen-throughput" ? (r as XenThroughputReport) : null;
  } catch {
    return null;
  }
}

const f1 = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? "-" : n >= 100 ? n.toFixed(0) : n.toFixed(1));
const f2 = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(2));
const retrans = (c: XenDirectionCost) =>
  c.tcpRetransmits ? `, TCP retransmits dom0 ${c.tcpRetransmits.dom0} guest ${c.tcpRetransmits.guest ?? "-"}` : "";
const fixups = (c: XenDirectionCost) => (c.guestGsoChecksumFixups !== undefined ? `, guest rx_gso_checksum_fixup +${c.guestGsoChecksumFixups}` : "");
const rate = (r: Rate | undefined) => (r ? `${f1(r.perMB)}/MB${r.perPacket !== undefined ? ` (${f2(r.perPacket)}/pkt)` : ""}` : "-");

/** The report as lines for a terminal: each transfer, the medians and ratios, then the costs. */
export function formatXenReport(r: XenThroughputReport): string[] {
  const out = [
    `real Xen under QEMU (${r.date.slice(0, 16).replace("T", " ")} UTC, commit ${r.commit.slice(0, 10)}${r.dirty ? "+dirty" : ""}): ` +
      `3 x ${r.mbPerTransfer} MB each way per backend in one boot, timed in dom0, sha256 checked`,
  ];
  for (const b of XEN_BACKENDS)
    for (const d of XEN_DIRECTIONS) {
      const ts = r.transfers.filter((t) => t.backend === b && t.dir === d);
      const each = ts.map((t) => (t.shaOk ? `${f1(t.mbps)}` : `${f1(t.mbps)}(BAD)`)).join(" ");
      const cpu = ts.map((t) => f1(t.mbPerCpuS)).join(" ");
      out.push(
        `  ${b.padEnd(7)} ${d.padEnd(4)} MB/s ${each.padEnd(18)} median ${f1(r.median[b][d]).padEnd(5)}` +
          (r.medianPerCpuS ? `  MB per QEMU CPU-s ${cpu.padEnd(16)} median ${f1(r.medianPerCpuS[b][d])}` : ""),
      );
    }
  out.push(`  qnicd/netback (medians): up ${f2(r.ratio.up)}, down ${f2(r.ratio.down)}`);
  if (r.ratioPerCpuS) out.push(`  qnicd/netback per QEMU CPU-s (medians; time QEMU waited for the host left out): up ${f2(r.ratioPerCpuS.up)}, down ${f2(r.ratioPerCpuS.down)}`);
  for (const d of XEN_DIRECTIONS) {
    const n = r.cost.netback[d];
    const q = r.cost.qnicd[d];
    if (n)
      out.push(
        `  cost ${d.padEnd(4)} netback: dom0 vif IRQs ${rate(n.dom0Interrupts)}, dom0 vif data packets ${rate(n.dom0DataPackets)}, ` +
          `guest data packets ${rate(n.guestDataPackets)}, guest IRQs ${rate(n.guestInterrupts)}${retrans(n)}${fixups(n)}`,
      );
    if (q) {
      const c = q.qnicd;
      out.push(
        `  cost ${d.padEnd(4)} qnicd:   dom0 evtchn IRQs ${rate(q.dom0Interrupts)}, TAP data packets ${rate(q.dom0DataPackets)}, ` +
          `guest data packets ${rate(q.guestDataPackets)}, guest IRQs ${rate(q.guestInterrupts)}${retrans(q)}${fixups(q)}`,
      );
      if (c)
        out.push(
          `  cost ${d.padEnd(4)} qnicd /vifs (${c.packets} packets): syscalls ${rate(c.syscalls)}, FFI calls ${rate(c.ffiCalls)}, ` +
            `notifies sent ${rate(c.notifiesSent)}, events received ${rate(c.eventsReceived)}, batches ${rate(c.batches)}`,
        );
    }
  }
  for (const d of XEN_DIRECTIONS)
    for (const b of XEN_BACKENDS) {
      const cpu = r.cost[b][d]?.cpu;
      if (!cpu) continue;
      const threads = Object.entries(cpu.backend.byThread)
        .filter(([, t]) => t.user + t.system >= 0.05)
        .map(([name, t]) => `${name} ${f1(t.user)}+${f1(t.system)}`)
        .join(", ");
      out.push(
        `  cpu  ${d.padEnd(4)} ${`${b}:`.padEnd(8)} dom0 ms/MB user ${f1(cpu.dom0.user)}, system ${f1(cpu.dom0.system)}, irq+softirq ${f1(cpu.dom0.irq)}, ` +
          `idle ${f1(cpu.dom0.idle)}, steal ${f1(cpu.dom0.steal)}; ${b === "qnicd" ? "qnicd's threads" : "netback's kthreads"} user ${f1(cpu.backend.user)}, system ${f1(cpu.backend.system)}` +
          (threads ? ` (user+system: ${threads})` : ""),
      );
    }
  if (r.qemuSeconds !== undefined)
    out.push(`  whole testbed run: ${r.qemuSeconds.toFixed(0)} s of QEMU${r.hostLoad ? `; host load average at its end ${r.hostLoad.map((l) => l.toFixed(1)).join(" / ")} (1/5/15 min)` : ""}`);
  return out;
}
