// Real Xen, end to end: Xen 4.17 + a Debian dom0 booted under QEMU (TCG) on this machine, with a PV
// guest, from Debian packages (test/xen/harness/, images cached outside the repo by recipe hash).
// One boot runs every check; each test below reads its verdict from the serial console markers.
//   1. kernel netback baseline: pings 56..1472 both ways without loss, a 16 MB TCP transfer each
//      way (busybox nc) with equal sha256; then its throughput: 3 x 32 MB each way (xfer.c), each
//      compared by sha256, with the interrupts and packets they took;
//   2. the real platform (src/platform/xen.ts) under Bun in dom0: map, copy statuses, evtchn;
//   3. qnicd as the backend: both sides Connected, /vifs shows the vif, and the same pings, TCP
//      transfers and throughput transfers as the baseline (with /vifs' syscalls, FFI calls,
//      notifications and wake-ups, and one more up transfer under strace naming qnicd's system
//      calls per thread), so the qnicd / netback ratios come from one boot; the guest's netfront
//      rx_gso_checksum_fixup is read around each direction for both backends; then xl
//      network-detach / network-attach while the guest runs (attached with rate=: a guest transfer
//      within the limit), a second guest on another worker, qnicd killed (-9) and stopped (SIGTERM)
//      under a transfer, each successor (the compiled binary, `npm run build`) taking the vifs
//      over (its start's phases and the ping gap printed), 4 x 32 MB up through the last successor
//      printed beside the first qnicd's, xl destroy leaving qnicd no mapping or port of them, and
//      SIGTERM ending qnicd.
// The throughput figures are printed and written to bench/results/xen-throughput.json (shown by
// `bun run bench`); the tests require every transfer to complete intact, never a speed.
// Nothing here is skipped: a machine that cannot run it fails with one line saying why.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { formatXenReport, XEN_REPORT_PATH } from "../../bench/lib/xen-report.ts";
import { consoleTails, runTestbed, TPUT_MB, type TestbedRun } from "./harness/run.ts";
import { recordXenReport, restartComparison } from "./harness/throughput.ts";

const repo = join(import.meta.dir, "..", "..");
/** Up transfers of the restarted qnicd (dom0-run.sh QNICD_RESTARTED_N's default). */
const RESTARTED_N = 4;
const hasDaemon = existsSync(join(repo, "src", "main.ts"));

let run: TestbedRun | undefined;
let setupError: string | undefined;

beforeAll(async () => {
  try {
    // 900 s before the throughput steps, which take about 2 minutes more (more on a loaded host).
    run = await runTestbed({ timeoutS: 1080 });
  } catch (e) {
    setupError = (e as Error).message;
  }
}, 1_500_000);

afterAll(() => {
  if (!run) return;
  const t = run.timings;
  console.log(
    `xen e2e: images ${t.buildImagesS.toFixed(1)} s${t.fromCache ? " (cached)" : " (built)"}, run disk ${t.runDiskS.toFixed(1)} s, ` +
      `QEMU ${t.qemuS.toFixed(1)} s (toolstack ready at ${t.bootToToolstackS?.toFixed(1) ?? "?"} s); ${run.completed ? "completed" : `stopped: ${run.stopReason}`}`,
  );
  for (const r of run.results) console.log(`xen e2e: ${r}`);
  for (const l of run.lines) if (/^\[(platform|qnicd|qnicd-diag)\]/.test(l)) console.log(`xen e2e: ${l}`);
  // busybox nc moves a few KiB per poll round: its transfers check the data path, not its speed.
  const mbps = (key: string) => Number(/mbps=([0-9.]+)/.exec(run!.results.find((l) => l.startsWith(key)) ?? "")?.[1]);
  for (const dir of ["up", "down"]) {
    const [q, k] = [mbps(`qnicd_tcp_${dir}`), mbps(`netback_tcp_${dir}`)];
    if (q > 0 && k > 0) console.log(`xen e2e: busybox nc TCP ${dir} (nc-bound, not a backend figure): qnicd ${q} vs netback ${k} MB/s`);
  }
  // qnicd vs kernel netback, measured in the same VM (absolute MB/s under TCG mean little).
  const report = recordXenReport(run, TPUT_MB);
  if (report) {
    for (const l of formatXenReport(report)) console.log(`xen e2e: ${l}`);
    console.log(`xen e2e: throughput figures written to ${XEN_REPORT_PATH}`);
  }
});

/** The step's three transfers each way, all complete (every byte) with the sender's sha256. */
function expectIntactTransfers(backend: string): void {
  const r = needRun();
  for (const dir of ["up", "down"]) {
    const ts = r.results.filter((l) => l.startsWith(`tput backend=${backend} dir=${dir} `));
    expect(ts.length).toBe(3);
    for (const t of ts) expect(t).toMatch(new RegExp(`bytes=${TPUT_MB * 1048576} secs=[0-9.]+ mbps=[0-9.]+ sha=ok$`));
  }
}

/**
 * The guest read Linux netfront's rx_gso_checksum_fixup (ethtool statistics, through xfer.c) after
 * the dom0 -> guest transfers; printed, its value not judged here (issue 12 wants it at 0 for qnicd).
 */
function expectGsoChecksumFixupsRead(backend: string): void {
  const r = needRun();
  const line = r.results.find((l) => l.startsWith(`tput_snap backend=${backend} dir=down at=after guest ethtool `)) ?? "";
  expect(line).toMatch(/ guest ethtool eth\d+ rx_gso_checksum_fixup=\d+$/);
  const before = r.results.find((l) => l.startsWith(`tput_snap backend=${backend} dir=down at=before guest ethtool `)) ?? "";
  const n = (l: string) => Number(/rx_gso_checksum_fixup=(\d+)$/.exec(l)?.[1] ?? NaN);
  console.log(`xen e2e: ${backend}: guest netfront rx_gso_checksum_fixup ${n(line)} after the dom0 -> guest transfers (+${n(line) - n(before)} during them)`);
}

/** The run, or a failure with one line (setup) or the console tails (boot). */
function needRun(): TestbedRun {
  if (setupError) throw new Error(`xen testbed could not run: ${setupError.split("\n")[0]}\n${setupError}`);
  if (!run) throw new Error("xen testbed did not run");
  return run;
}

function expectStep(name: string): void {
  const r = needRun();
  const v = r.steps.get(name);
  if (!v || v.status !== "ok") {
    const why = v ? `${v.status}: ${v.detail}` : r.completed ? "the step reported nothing" : `the run stopped (${r.stopReason})`;
    throw new Error(`xen e2e step ${name}: ${why}\n${consoleTails(r.lines)}`);
  }
  expect(v.status).toBe("ok");
}

describe("real Xen under QEMU", () => {
  test("Xen + dom0 boot and the testbed runs to its end", () => {
    const r = needRun();
    if (!r.completed) throw new Error(`xen testbed stopped: ${r.stopReason}\n${consoleTails(r.lines)}`);
    expect(r.completed).toBe(true);
  });

  test("dom0 toolstack: xenstored, xen-init-dom0, xenconsoled, xenbr0", () => expectStep("toolstack"));

  test("kernel netback baseline: pings 56..1472 both ways without loss, 16 MB TCP each way with equal sha256", () => {
    expectStep("netback-baseline");
    const r = needRun();
    expect(r.results.filter((l) => l.startsWith("netback_dom0_ping")).length).toBe(3);
    expect(r.results.filter((l) => l.startsWith("netback_guest_ping")).length).toBe(3);
    expect(r.results.some((l) => /^netback_tcp_up .*mbps=[0-9.]+$/.test(l))).toBe(true);
    expect(r.results.some((l) => /^netback_tcp_down .*mbps=[0-9.]+$/.test(l))).toBe(true);
  });

  test(`kernel netback throughput: 3 x ${TPUT_MB} MB each way, every transfer complete with equal sha256, the guest's rx_gso_checksum_fixup read`, () => {
    expectStep("netback-throughput");
    expectIntactTransfers("netback");
    expectGsoChecksumFixupsRead("netback");
  });

  test("the real platform under Bun in dom0: grant map, copy with per-segment statuses, event channels", () => expectStep("platform"));

  if (hasDaemon) {
    test("qnicd --platform xen as the backend: both sides Connected, /vifs shows the vif, pings 56..1472 both ways, 16 MB TCP each way with equal sha256", () => {
      expectStep("qnicd");
      const r = needRun();
      expect(r.results.filter((l) => /^qnicd_(dom0|guest)_ping .*recv=5$/.test(l)).length).toBe(6);
      expect(r.results.some((l) => /^qnicd_tcp_up .*mbps=[0-9.]+$/.test(l))).toBe(true);
      expect(r.results.some((l) => /^qnicd_tcp_down .*mbps=[0-9.]+$/.test(l))).toBe(true);
    });

    test(`qnicd throughput: 3 x ${TPUT_MB} MB each way, every transfer complete with equal sha256, /vifs counters and the guest's rx_gso_checksum_fixup read around them`, () => {
      expectStep("qnicd-throughput");
      expectIntactTransfers("qnicd");
      expectGsoChecksumFixupsRead("qnicd");
      const r = needRun();
      for (const dir of ["up", "down"])
        for (const at of ["before", "after"])
          expect(r.results.some((l) => new RegExp(`^tput_snap backend=qnicd dir=${dir} at=${at} vifs "counters":\\{.*"syscalls":\\d+`).test(l))).toBe(true);
    });

    test("qnicd: xl network-detach releases the vif's ports and mappings while the guest runs; after xl network-attach pings 56..1472 both ways", () => {
      expectStep("qnicd-reattach");
      const r = needRun();
      expect(r.results.filter((l) => /^qnicd_reattach_(dom0|guest)_ping .*recv=5$/.test(l)).length).toBe(6);
    });

    test("qnicd: rate=2MB/s@20ms in the vif config (xl network-attach): libxl's B/rate read, a 4 MB guest transfer within the limit, hold-backs counted", () => {
      expectStep("qnicd-rate");
      const r = needRun();
      const limited = r.results.find((l) => l.startsWith("qnicd_rate limited ")) ?? "";
      expect(limited).toMatch(/ throttles=[1-9]\d* sha=ok$/);
      console.log(`xen e2e: ${limited}`);
      console.log(`xen e2e: ${r.results.find((l) => l.startsWith("qnicd_rate unlimited ")) ?? "qnicd_rate unlimited: no result"}`);
    });

    test("qnicd: a second guest at once is served by another worker, pings both ways while the first is pinged", () => {
      expectStep("qnicd-two-guests");
      const r = needRun();
      const line = r.results.find((l) => l.startsWith("qnicd_two_guests workers")) ?? "";
      const workers = [...line.matchAll(/=(\d+)/g)].map((m) => m[1]);
      expect(workers.length).toBe(2);
      expect(workers[0]).not.toBe(workers[1]);
      expect(r.results.filter((l) => /^qnicd_guest3_(dom0|guest)_ping .*recv=5$/.test(l)).length).toBe(6);
    });

    test("qnicd restarted under a transfer (kill -9, then SIGTERM, each started again): both 32 MB transfers intact, the vif's states never leave 4, pings resume", () => {
      expectStep("qnicd-restart");
      const r = run!;
      for (const how of ["kill9", "sigterm"]) {
        const line = r.results.find((l) => l.startsWith(`qnicd_restart how=${how} `) && l.includes(" sha="));
        expect(line).toMatch(/ sha=ok ping_gap_s=[0-9.]+ /);
        console.log(`xen e2e: restart ${line}`);
        // Where the successor's start went (src/startup-clock.ts), printed, not judged.
        console.log(`xen e2e: restart ${r.results.find((l) => l.startsWith(`qnicd_restart how=${how} run=`)) ?? `qnicd_restart how=${how}: no serving line`}`);
      }
    });

    test(`qnicd after a restart (the successor that took the vifs over): ${RESTARTED_N} x ${TPUT_MB} MB up, every transfer complete with equal sha256, printed beside the first qnicd's`, () => {
      expectStep("qnicd-restarted-throughput");
      const r = needRun();
      const ts = r.results.filter((l) => l.startsWith("restarted_tput dir=up "));
      expect(ts.length).toBe(RESTARTED_N);
      for (const t of ts) expect(t).toMatch(new RegExp(`bytes=${TPUT_MB * 1048576} secs=[0-9.]+ mbps=[0-9.]+ sha=ok$`));
      for (const l of restartComparison(r.results)) console.log(`xen e2e: ${l}`);
    });
    test("qnicd multi-queue: a vcpus=2 guest negotiates two queues with split event channels, both carry packets both ways; a guest with xen-netfront max_queues=1 still works", () => {
      expectStep("qnicd-queues");
      const r = needRun();
      expect(r.results.find((l) => l.startsWith("qnicd_queues_xenstore"))).toMatch(/max=2 num=2 dirs="queue-0 queue-1 "/);
      const counters = r.results.filter((l) => l.startsWith("qnicd_queues_counters "));
      expect(counters.length).toBe(2);
      for (const l of counters) expect(l).toMatch(/tx_packets=[1-9]\d* rx_packets=[1-9]\d*$/);
      console.log(`xen e2e: per-queue counters ${counters.join(" | ")}`);
      expect(r.results.filter((l) => /^qnicd_queues_single_(dom0|guest)_ping .*recv=5$/.test(l)).length).toBe(6);
    });
    test("qnicd: xl destroy leaves no grant mapping, no bound port and no /vifs entry of the guests", () => expectStep("qnicd-destroy"));

    test("qnicd: SIGTERM ends the daemon", () => expectStep("qnicd-exit"));
  } else {
    test.todo("qnicd --platform xen as the backend: waits for the daemon (src/main.ts is not there yet)");
  }
});
