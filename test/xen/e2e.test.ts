// Real Xen, end to end: Xen 4.17 + a Debian dom0 booted under QEMU (TCG) on this machine, with a PV
// guest, from Debian packages (test/xen/harness/, images cached outside the repo by recipe hash).
// One boot runs every check; each test below reads its verdict from the serial console markers.
//   1. kernel netback baseline: pings 56..1472 both ways without loss, a 16 MB TCP transfer each
//      way with equal sha256, throughput recorded (for the later qnicd/netback ratio);
//   2. the real platform (src/platform/xen.ts) under Bun in dom0: map, copy statuses, evtchn;
//   3. qnicd as the backend: both sides Connected, /vifs shows the vif, and the same pings and TCP
//      transfers as the baseline, so the throughput ratio qnicd / netback comes from one boot;
//      then xl network-detach / network-attach while the guest runs, a second guest on another
//      worker, xl destroy leaving qnicd no mapping or port of them, and SIGTERM ending qnicd.
// Nothing here is skipped: a machine that cannot run it fails with one line saying why.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { consoleTails, runTestbed, type TestbedRun } from "./harness/run.ts";

const repo = join(import.meta.dir, "..", "..");
const hasDaemon = existsSync(join(repo, "src", "main.ts"));

let run: TestbedRun | undefined;
let setupError: string | undefined;

beforeAll(async () => {
  try {
    run = await runTestbed({ timeoutS: 900 });
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
  // qnicd vs kernel netback, measured in the same VM (absolute MB/s under TCG mean nothing).
  const mbps = (key: string) => Number(/mbps=([0-9.]+)/.exec(run!.results.find((l) => l.startsWith(key)) ?? "")?.[1]);
  for (const dir of ["up", "down"]) {
    const [q, k] = [mbps(`qnicd_tcp_${dir}`), mbps(`netback_tcp_${dir}`)];
    if (q > 0 && k > 0) console.log(`xen e2e: qnicd/netback TCP ${dir} throughput ratio ${(q / k).toFixed(2)} (${q} vs ${k} MB/s)`);
  }
});

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

  test("the real platform under Bun in dom0: grant map, copy with per-segment statuses, event channels", () => expectStep("platform"));

  if (hasDaemon) {
    test("qnicd --platform xen as the backend: both sides Connected, /vifs shows the vif, pings 56..1472 both ways, 16 MB TCP each way with equal sha256", () => {
      expectStep("qnicd");
      const r = needRun();
      expect(r.results.filter((l) => /^qnicd_(dom0|guest)_ping .*recv=5$/.test(l)).length).toBe(6);
      expect(r.results.some((l) => /^qnicd_tcp_up .*mbps=[0-9.]+$/.test(l))).toBe(true);
      expect(r.results.some((l) => /^qnicd_tcp_down .*mbps=[0-9.]+$/.test(l))).toBe(true);
    });

    test("qnicd: xl network-detach releases the vif's ports and mappings while the guest runs; after xl network-attach pings 56..1472 both ways", () => {
      expectStep("qnicd-reattach");
      const r = needRun();
      expect(r.results.filter((l) => /^qnicd_reattach_(dom0|guest)_ping .*recv=5$/.test(l)).length).toBe(6);
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

    test("qnicd: xl destroy leaves no grant mapping, no bound port and no /vifs entry of the guests", () => expectStep("qnicd-destroy"));

    test("qnicd: SIGTERM ends the daemon", () => expectStep("qnicd-exit"));
  } else {
    test.todo("qnicd --platform xen as the backend: waits for the daemon (src/main.ts is not there yet)");
  }
});
