// The vif's `rate` (xl's rate=, B/rate) against a sim guest flooding its tx ring through the daemon:
// what gets through stays within the limit (upper bound only: a loaded machine sends less, never
// more), the hold-backs are counted and /vifs shows the rate; a runtime write of B/rate applies at
// once; a malformed one is unlimited with one warning.
import { expect, test } from "bun:test";
import { parseVifRate } from "../../src/sim/toolstack/vif-rate.ts";
import { until } from "../backend/sim-host.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

interface VifBody {
  rate: { bytesPerInterval: number; intervalUsecs: number; bytesPerSecond: number; text: string } | null;
  counters: Record<string, number>;
}

async function guestWithRate(rate: string | null) {
  await fx.startHost();
  await fx.startDaemon(["--workers", "1", "--peer", "null"], { log: "info" });
  const nic = rate === null ? {} : { rate: parseVifRate(rate) };
  const { domid, vif: name, nf, info } = await fx.guest("limited", { txBacklog: 4000 }, { domain: { vifs: 1, nics: [nic] } });
  const vif = () => fx.vif<VifBody>(name);
  const frame = new Uint8Array(1500);
  frame.fill(0xff, 0, 6);
  // Keeps the tx ring and backlog full until stopped.
  let flooding = true;
  const flood = (async () => {
    while (flooding) {
      while (flooding && nf.queueDepths().txBacklog < 2000) nf.send(frame);
      await Bun.sleep(2);
    }
  })();
  const stop = async () => {
    flooding = false;
    await flood;
  };
  return { domid, nf, info, name, vif, stop, B: `/local/domain/0/backend/vif/${domid}/0` };
}

/** tx bytes through the vif over `ms`, and the time it really took. */
async function measure(vif: () => Promise<VifBody>, ms: number) {
  const t0 = performance.now();
  const b0 = (await vif()).counters.tx_bytes;
  await Bun.sleep(ms);
  const b1 = (await vif()).counters.tx_bytes;
  return { bytes: b1 - b0, seconds: (performance.now() - t0) / 1000 };
}

test("rate=1MB/s@20ms: a flooding guest gets at most 1 MB/s through (+ 128 KiB + one interval), held back and counted, /vifs shows it", async () => {
  const g = await guestWithRate("1MB/s@20ms");
  try {
    await until("traffic", async () => (await g.vif()).counters.tx_packets > 0, 5000);
    const m = await measure(g.vif, 2000);
    if (process.env.QNICD_TEST_VERBOSE) console.log(`rate 1MB/s@20ms: ${m.bytes} bytes in ${m.seconds.toFixed(3)} s = ${(m.bytes / m.seconds / 1e6).toFixed(3)} MB/s`);
    expect(m.bytes).toBeLessThanOrEqual(1_000_000 * m.seconds + 131072 + 20000);
    // The limit, not the sender, set the pace: packets were held back, time spent so was counted.
    const v = await g.vif();
    expect(v.counters.tx_throttles).toBeGreaterThan(10);
    expect(v.counters.tx_throttled_usecs).toBeGreaterThan(100_000);
    expect(v.rate).toEqual({ bytesPerInterval: 20000, intervalUsecs: 20000, bytesPerSecond: 1_000_000, text: "20000 bytes per 20000 us (1 MB/s)" });
  } finally {
    await g.stop();
  }
});

test("a runtime write of B/rate applies at once (within an interval); a malformed value is unlimited with one warning", async () => {
  const g = await guestWithRate("1MB/s@20ms");
  try {
    await until("traffic", async () => (await g.vif()).counters.tx_packets > 0, 5000);
    // 50 MB/s: the guest's own pace now, far above 1 MB/s.
    await fx.host.xs.write(`${g.B}/rate`, "1000000,20000");
    await until("new rate shown", async () => (await g.vif()).rate?.bytesPerInterval === 1000000, 5000);
    const fast = await measure(g.vif, 1000);
    expect(fast.bytes).toBeGreaterThan(2 * (1_000_000 * fast.seconds + 131072 + 20000));
    // Back down: the limit holds again.
    await fx.host.xs.write(`${g.B}/rate`, "20000,20000");
    await until("old rate shown", async () => (await g.vif()).rate?.bytesPerInterval === 20000, 5000);
    await Bun.sleep(100);
    const slow = await measure(g.vif, 1000);
    expect(slow.bytes).toBeLessThanOrEqual(1_000_000 * slow.seconds + 131072 + 20000);
    // Malformed: unlimited, one warning however often the node is rewritten.
    await fx.host.xs.write(`${g.B}/rate`, "abc");
    await until("unlimited", async () => (await g.vif()).rate === null, 5000);
    await fx.host.xs.write(`${g.B}/rate`, "abc");
    const free = await measure(g.vif, 1000);
    expect(free.bytes).toBeGreaterThan(2 * (1_000_000 * free.seconds + 131072 + 20000));
    expect(fx.logs.filter((l) => l.includes("failed to parse its rate limit")).length).toBe(1);
  } finally {
    await g.stop();
  }
});
