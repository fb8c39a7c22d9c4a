// A scrape of a running daemon forwarding traffic between two guests on the simulated host:
// promtool accepts what it serves, its counters agree with the guests' own, and a guest whose
// netfront reconnects keeps counting up from where it was (counters never go backwards).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { promtoolCheckMetrics } from "../support/promtool.ts";
import { startTrafficDaemon, type TrafficDaemon } from "../support/traffic-daemon.ts";
import { until } from "../backend/sim-host.ts";

let t: TrafficDaemon;
beforeAll(async () => {
  t = await startTrafficDaemon();
});
afterAll(async () => {
  await t?.close();
});

async function scrape(): Promise<string> {
  const res = await fetch(`${t.daemon.http.url}/metrics`);
  expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return res.text();
}

/** The value of `family` for vif `vif`, or undefined when it has no such sample. */
function sample(text: string, family: string, vif: string): number | undefined {
  const m = text.match(new RegExp(`^${family}\\{vif="${vif.replace(".", "\\.")}",[^}]*\\} (\\S+)$`, "m"));
  return m ? Number(m[1]) : undefined;
}

/**
 * A scrape once the vif's published counters reach `tx` and `rx` packets: a worker publishes its
 * counters after the batch's notifications, so a guest can see its frames a moment before a scrape does.
 */
async function scrapeWhen(vif: string, tx: number, rx: number): Promise<string> {
  let text = "";
  await until(`${vif} published tx ${tx} and rx ${rx}`, async () => {
    text = await scrape();
    return (sample(text, "qnicd_vif_tx_packets_total", vif) ?? -1) >= tx && (sample(text, "qnicd_vif_rx_packets_total", vif) ?? -1) >= rx;
  });
  return text;
}

test("a running daemon's /metrics passes promtool, and its counters are the guests' frames", async () => {
  await t.arp(20);
  const text = await scrapeWhen(t.alice.vif, t.alice.nf.counters.txRspOkay, t.alice.nf.counters.rxPackets);
  const check = promtoolCheckMetrics(text);
  expect(check).toEqual({ status: 0, output: "" });
  const { alice, bob } = t;
  // Labels: numeric domid and devid beside the vif's name.
  expect(text).toContain(`qnicd_vif_tx_packets_total{vif="${alice.vif}",domid="${alice.domid}",devid="0"}`);
  expect(text).toContain(`qnicd_vif_info{vif="${alice.vif}",domid="${alice.domid}",devid="0",mac="${alice.mac}",peer="switch",host_interface="${alice.vif}",worker="0"} 1`);
  expect(sample(text, "qnicd_vif_tx_packets_total", alice.vif)).toBe(alice.nf.counters.txRspOkay);
  expect(sample(text, "qnicd_vif_rx_packets_total", alice.vif)).toBe(alice.nf.counters.rxPackets);
  const textBob = await scrapeWhen(bob.vif, bob.nf.counters.txRspOkay, bob.nf.counters.rxPackets);
  expect(sample(textBob, "qnicd_vif_rx_packets_total", bob.vif)).toBe(bob.nf.counters.rxPackets);
  expect(alice.nf.counters.rxPackets).toBeGreaterThanOrEqual(20);
  expect(text).toContain('qnicd_vifs{state="Connected"} 2\n');
  expect(text).toContain('qnicd_xenstore_connection{state="connected"} 1\n');
  expect(text).toContain("\nqnicd_workers_running 1\n");
  expect(text).toMatch(/\nqnicd_build_info\{version="\d+\.\d+\.\d+",commit="[0-9a-f]{40}(-dirty)?"\} 1\n/);
});

test("a netfront reset (new rings, new connection) continues the vif's counters instead of restarting them", async () => {
  await t.arp(5);
  const { alice } = t;
  const before = await scrapeWhen(alice.vif, alice.nf.counters.txRspOkay, alice.nf.counters.rxPackets);
  const tx0 = sample(before, "qnicd_vif_tx_packets_total", alice.vif)!;
  const rx0 = sample(before, "qnicd_vif_rx_packets_total", alice.vif)!;
  expect(tx0).toBeGreaterThan(0);
  await alice.nf.reset();
  await alice.nf.whenConnected(10_000);
  await until("alice's vif connected again", () => t.daemon.vifs().find((v) => v.domid === alice.domid)?.slot);
  const after = await scrape();
  expect(sample(after, "qnicd_vif_tx_packets_total", alice.vif)).toBeGreaterThanOrEqual(tx0);
  expect(sample(after, "qnicd_vif_rx_packets_total", alice.vif)).toBeGreaterThanOrEqual(rx0);
  await t.arp(5);
  const later = await scrapeWhen(alice.vif, tx0 + 5, rx0 + 5);
  expect(sample(later, "qnicd_vif_tx_packets_total", alice.vif)).toBeGreaterThanOrEqual(tx0 + 5);
  expect(sample(later, "qnicd_vif_rx_packets_total", alice.vif)).toBeGreaterThanOrEqual(rx0 + 5);
  // Gauges are levels, not totals: the carrier is 1, not 2.
  expect(sample(later, "qnicd_vif_carrier", alice.vif)).toBe(1);
  expect(promtoolCheckMetrics(later)).toEqual({ status: 0, output: "" });
});
