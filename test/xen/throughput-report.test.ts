// The real-Xen throughput report is computed from the testbed's console lines alone: these pin the
// arithmetic (medians, ratios, deltas per MB and per packet) and the /proc/interrupts parsing,
// without booting Xen.
import { describe, expect, test } from "bun:test";
import { formatXenReport } from "../../bench/lib/xen-report.ts";
import { buildXenReport, parseInterruptLine, restartComparison } from "./harness/throughput.ts";

const META = { date: "2026-12-07T00:00:00.000Z", commit: "0123456789abcdef", dirty: false, mbPerTransfer: 32 };
const B = 32 * 1048576;

function transfers(backend: string, dir: string, mbps: number[], sha = ["ok", "ok", "ok"]): string[] {
  return mbps.map((m, i) => `tput backend=${backend} dir=${dir} i=${i + 1} bytes=${B} secs=${(32 / m).toFixed(3)} mbps=${m.toFixed(2)} sha=${sha[i]}`);
}

function snap(backend: string, dir: string, at: string, lines: string[]): string[] {
  return lines.map((l) => `tput_snap backend=${backend} dir=${dir} at=${at} ${l}`);
}

describe("parseInterruptLine", () => {
  test("sums the CPU columns and keeps the handler's name after the flow type", () => {
    expect(parseInterruptLine(" 52:       1200        34  xen-dyn    -event     vif1.0-q0-tx")).toEqual({ irq: "52", count: 1234, name: "vif1.0-q0-tx" });
  });

  test("a name with spaces (a thread's command) stays whole", () => {
    expect(parseInterruptLine("117:         77  xen-dyn-lateeoi    -event     evtchn:Bun Pool 1")).toEqual({ irq: "117", count: 77, name: "evtchn:Bun Pool 1" });
  });

  test("a line that is not an interrupt line is refused", () => {
    expect(parseInterruptLine("           CPU0       ")).toBeNull();
  });
});

describe("buildXenReport", () => {
  const results = [
    ...snap("netback", "up", "before", [
      "dev rx_packets=100 tx_packets=50 rx_bytes=0 tx_bytes=0",
      "tcp retrans_segs=7",
      "guest tcp retrans_segs=3",
      "irq  60:        10  xen-dyn    -event     vif1.0-q0-tx",
      "irq  61:        20  xen-dyn    -event     vif1.0-q0-rx",
      "irq  40:       500  xen-dyn    -event     evtchn:xenstored",
      "guest dev eth0 rx_packets=0 tx_packets=0 rx_bytes=0 tx_bytes=0",
      "guest irq  20:   5  xen-dyn  -event  eth0-q0-tx",
      "guest ethtool eth0 rx_gso_checksum_fixup=4",
      "guest ethtool eth1 rx_gso_checksum_fixup=1",
    ]),
    ...transfers("netback", "up", [30, 20, 25]),
    ...snap("netback", "up", "after", [
      "dev rx_packets=2100 tx_packets=1050 rx_bytes=0 tx_bytes=0",
      "tcp retrans_segs=7",
      "guest tcp retrans_segs=5",
      "irq  60:       970  xen-dyn    -event     vif1.0-q0-tx",
      "irq  61:        20  xen-dyn    -event     vif1.0-q0-rx",
      "irq  40:       999  xen-dyn    -event     evtchn:xenstored",
      "guest dev eth0 rx_packets=960 tx_packets=1920 rx_bytes=0 tx_bytes=0",
      "guest irq  20: 485  xen-dyn  -event  eth0-q0-tx",
      "guest ethtool eth0 rx_gso_checksum_fixup=10",
      "guest ethtool eth1 rx_gso_checksum_fixup=1",
      "guest ethtool eth2 rx_gso_checksum_fixup error=Operation not supported",
    ]),
    ...transfers("netback", "down", [40, 44, 10]),
    ...transfers("qnicd", "up", [12, 5, 10]),
    ...transfers("qnicd", "down", [4, 99, 5], ["ok", "bad", "ok"]),
    ...snap("qnicd", "down", "before", [
      "dev rx_packets=0 tx_packets=0 rx_bytes=0 tx_bytes=0",
      "irq 117:       100  xen-dyn-lateeoi    -event     evtchn:bun",
      "irq  40:       999  xen-dyn    -event     evtchn:xenstored",
      'vifs "counters":{"tx_packets":10,"rx_packets":20,"syscalls":1000,"ffi_calls":500,"notifies_sent":7,"events_received":9,"tx_batches":1,"rx_batches":2}',
      "cpu user=1000 nice=0 system=2000 idle=5000 iowait=0 irq=0 softirq=100 steal=300",
      "thread comm=bun tid=700 utime=50 stime=20",
      "thread comm=Bun_Pool_0 tid=701 utime=400 stime=300",
    ]),
    ...snap("qnicd", "down", "after", [
      "dev rx_packets=3000 tx_packets=64000 rx_bytes=0 tx_bytes=0",
      "irq 117:      6500  xen-dyn-lateeoi    -event     evtchn:bun",
      "irq 118:       300  xen-dyn-lateeoi    -event     evtchn:bun",
      "irq  40:      1999  xen-dyn    -event     evtchn:xenstored",
      'vifs "counters":{"tx_packets":3010,"rx_packets":64020,"syscalls":68000,"ffi_calls":4500,"notifies_sent":1607,"events_received":3209,"tx_batches":1001,"rx_batches":2002}',
      "cpu user=1640 nice=0 system=3280 idle=5064 iowait=0 irq=0 softirq=420 steal=1580",
      "thread comm=bun tid=700 utime=50 stime=20",
      "thread comm=Bun_Pool_0 tid=701 utime=912 stime=1068",
      "thread comm=Bun_Pool_1 tid=702 utime=64 stime=0",
    ]),
  ];
  // QEMU's CPU seconds at each transfer's marks: netback up used 1, 2, 1 s; qnicd up 4, 8 s (its
  // third transfer's end mark never arrived, so it has no CPU figure).
  const cpuAt: [string, number, number][] = [
    ["netback up 1", 10, 11], ["netback up 2", 20, 22], ["netback up 3", 30, 31],
    ["qnicd up 1", 100, 104], ["qnicd up 2", 110, 118],
  ];
  const marks = cpuAt.flatMap(([label, a, b]) => [
    { label, phase: "start" as const, qemuCpuS: a },
    { label, phase: "end" as const, qemuCpuS: b },
  ]);
  marks.push({ label: "qnicd up 3", phase: "start", qemuCpuS: 200 });
  const r = buildXenReport(results, META, marks);

  test("medians of each direction's transfers, and qnicd / netback of the medians", () => {
    expect(r.median.netback).toEqual({ up: 25, down: 40 });
    // The transfer whose sha256 differed (99 MB/s) is not a figure: median of 4 and 5.
    expect(r.median.qnicd).toEqual({ up: 10, down: 4.5 });
    expect(r.ratio.up).toBeCloseTo(0.4, 10);
    expect(r.ratio.down).toBeCloseTo(4.5 / 40, 10);
    expect(r.transfers.filter((t) => !t.shaOk)).toHaveLength(1);
  });

  test("MB per QEMU CPU second: each transfer between its marks, medians and their ratio", () => {
    expect(r.transfers.find((t) => t.backend === "netback" && t.dir === "up" && t.i === 2)).toMatchObject({ qemuCpuS: 2, mbPerCpuS: 16 });
    expect(r.transfers.find((t) => t.backend === "qnicd" && t.dir === "up" && t.i === 3)!.mbPerCpuS).toBeUndefined();
    expect(r.medianPerCpuS!.netback.up).toBe(32);
    expect(r.medianPerCpuS!.qnicd.up).toBe(6);
    expect(r.medianPerCpuS!.netback.down).toBeNull();
    expect(r.ratioPerCpuS).toEqual({ up: 6 / 32, down: null });
  });

  test("netback's cost: its vif IRQs only (not xenstored's), data packets on both ends, per MB moved", () => {
    const c = r.cost.netback.up!;
    expect(c.mb).toBe(96);
    expect(c.dom0Interrupts.total).toBe(960);
    expect(c.dom0Interrupts.perMB).toBe(10);
    expect(c.dom0Interrupts.byName).toEqual({ "vif1.0-q0-tx": 960, "vif1.0-q0-rx": 0 });
    expect(c.dom0DataPackets.total).toBe(2000);
    expect(c.guestDataPackets!.perMB).toBe(20);
    expect(c.guestInterrupts!.perMB).toBe(5);
    expect(c.tcpRetransmits).toEqual({ dom0: 0, guest: 2 });
    // netfront's rx_gso_checksum_fixup, summed over the interfaces that answered.
    expect(c.guestGsoChecksumFixups).toBe(6);
    expect(r.cost.netback.down).toBeUndefined();
  });

  test("qnicd's cost: /vifs deltas per packet and per MB of the transfers that arrived intact, and its event-channel IRQs", () => {
    const c = r.cost.qnicd.down!;
    expect(c.mb).toBe(64);
    expect(c.qnicd!.packets).toBe(67000);
    expect(c.qnicd!.syscalls.total).toBe(67000);
    expect(c.qnicd!.syscalls.perPacket).toBe(1);
    expect(c.qnicd!.syscalls.perMB).toBe(67000 / 64);
    expect(c.qnicd!.notifiesSent.perMB).toBe(1600 / 64);
    expect(c.qnicd!.eventsReceived.total).toBe(3200);
    expect(c.qnicd!.batches.total).toBe(3000);
    expect(c.qnicd!.ffiCalls.perPacket).toBeCloseTo(4000 / 67000, 12);
    // A port that appeared during the transfers counts from zero; xenstored's does not count.
    expect(c.dom0Interrupts.total).toBe(6400 + 300);
    expect(c.dom0DataPackets.total).toBe(64000);
  });

  test("where dom0's CPU went: /proc/stat's split and the backend's threads, ticks (10 ms) per MB moved", () => {
    // 64 MB arrived intact: 640 user ticks = 6400 ms = 100 ms/MB, and so on.
    const cpu = r.cost.qnicd.down!.cpu!;
    expect(cpu.dom0).toEqual({ user: 100, system: 200, irq: 50, idle: 10, steal: 200 });
    // A thread that appeared meanwhile counts from zero; one that did nothing still shows.
    expect(cpu.backend.byThread).toEqual({ bun: { user: 0, system: 0 }, Bun_Pool_0: { user: 80, system: 120 }, Bun_Pool_1: { user: 10, system: 0 } });
    expect(cpu.backend.user).toBe(90);
    expect(cpu.backend.system).toBe(120);
    // Snapshots without the lines (an older dom0 script): no CPU figures, nothing made up.
    expect(r.cost.netback.up!.cpu).toBeUndefined();
  });

  test("the printed report names every transfer, the medians, the ratios and the costs", () => {
    const text = formatXenReport(r).join("\n");
    expect(text).toContain("netback up   MB/s 30.0 20.0 25.0");
    expect(text).toContain("99.0(BAD)");
    expect(text).toContain("qnicd/netback (medians): up 0.40, down 0.11");
    expect(text).toContain("syscalls 1047/MB (1.00/pkt)");
    expect(text).toContain("dom0 vif IRQs 10.0/MB");
    expect(text).toContain("TCP retransmits dom0 0 guest 2");
    expect(text).toContain("guest rx_gso_checksum_fixup +6");
    expect(text).toContain("MB per QEMU CPU-s 32.0 16.0 32.0");
    expect(text).toContain("per QEMU CPU-s (medians; time QEMU waited for the host left out): up 0.19, down -");
    expect(text).toContain("cpu  down qnicd:   dom0 ms/MB user 100, system 200, irq+softirq 50.0, idle 10.0, steal 200; qnicd's threads user 90.0, system 120 (user+system: Bun_Pool_0 80.0+120, Bun_Pool_1 10.0+0.0)");
  });
});

describe("restartComparison", () => {
  test("the restarted qnicd's up transfers beside the first one's: MB/s, median, syscalls and batches per packet from /vifs", () => {
    const vifs = (syscalls: number, packets: number, batches: number) =>
      `vifs "counters":{"tx_packets":${packets},"rx_packets":${packets},"syscalls":${syscalls},"tx_batches":${batches},"rx_batches":0}`;
    const results = [
      ...transfers("qnicd", "up", [20, 30, 10]),
      ...snap("qnicd", "up", "before", [vifs(0, 0, 0)]),
      ...snap("qnicd", "up", "after", [vifs(300, 100, 50)]),
      "restarted_tput at=before " + vifs(1000, 1000, 100),
      ...[5, 15, 25, 35].map((m, i) => `restarted_tput dir=up i=${i + 1} bytes=${B} secs=1 mbps=${m.toFixed(2)} sha=ok`),
      "restarted_tput at=after " + vifs(1800, 1200, 200),
    ];
    expect(restartComparison(results)).toEqual([
      "qnicd up, as first started:           MB/s 20.0 30.0 10.0  median 20.0, per packet: syscalls 1.50, batches 0.25 (200 packets)",
      "qnicd up, after taking the vifs over: MB/s 5.0 15.0 25.0 35.0  median 20.0, per packet: syscalls 2.00, batches 0.25 (400 packets)",
    ]);
  });

  test("nothing when the restarted qnicd's step did not run", () => {
    expect(restartComparison(transfers("qnicd", "up", [20, 30, 10]))).toEqual([]);
  });
});
