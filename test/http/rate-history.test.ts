// The dashboard's rate history: rates from counter deltas per second, a window that stays bounded,
// vifs forgotten once gone, and `since` returning only newer points.
import { expect, test } from "bun:test";
import { RateHistory } from "../../src/http/rate-history.ts";
import { zeroVifStats, type VifStats } from "../../src/stats/index.ts";

const stats = (o: Partial<VifStats>): VifStats => ({ ...zeroVifStats(), ...o });

test("rates are counter deltas per second each way, bits from bytes, drops from both directions; the total sums the vifs", () => {
  const h = new RateHistory(1000, 60);
  h.sample(10_000, [{ name: "vif1.0", counters: stats({ tx_packets: 100, tx_bytes: 1000 }) }, { name: "vif2.0", counters: stats({}) }]);
  h.sample(12_000, [
    { name: "vif1.0", counters: stats({ tx_packets: 300, tx_bytes: 3000, rx_packets: 10, rx_bytes: 640, tx_drops: 4, rx_drops: 2 }) },
    { name: "vif2.0", counters: stats({ rx_packets: 50 }) },
  ]);
  const v = h.view();
  expect(v.vifs["vif1.0"]).toEqual({ t: [12_000], tx_pps: [100], rx_pps: [5], tx_bps: [8000], rx_bps: [2560], drops_ps: [3] });
  expect(v.vifs["vif2.0"].rx_pps).toEqual([25]);
  expect(v.total).toEqual({ t: [12_000], tx_pps: [100], rx_pps: [30], tx_bps: [8000], rx_bps: [2560], drops_ps: [3] });
  expect(v.direction).toContain("tx = sent by the guest");
});

test("the window keeps its last windowSeconds of points; since= returns newer points only; a vif that is gone is forgotten", () => {
  const h = new RateHistory(1000, 10);
  for (let i = 0; i <= 50; i++) h.sample(i * 1000, [{ name: "vif1.0", counters: stats({ tx_packets: i * 7 }) }]);
  const all = h.view().vifs["vif1.0"];
  expect(all.t.length).toBe(10);
  expect(all.t[0]).toBe(41_000);
  expect(all.tx_pps.every((r) => r === 7)).toBe(true);
  expect(h.view(48_000).vifs["vif1.0"].t).toEqual([49_000, 50_000]);
  h.sample(51_000, [{ name: "vif1.0", counters: null }]);
  expect(h.view().vifs).toEqual({});
});
