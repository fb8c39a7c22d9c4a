// /metrics: what Prometheus's own linter says about it, its exact content type, and the samples of
// one vif, rendered from a real stats arena and a fake control plane.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHttpApp, startHttpServer, type HealthSnapshot, type HttpServer, type VifSnapshot } from "../../src/http/index.ts";
import { escapeLabelValue, PROMETHEUS_CONTENT_TYPE } from "../../src/http/prometheus.ts";
import { StatsArena, VIF_COUNTERS } from "../../src/stats/index.ts";
import { XenbusState } from "../../src/xen/xenbus-state.ts";
import { publishingWriter, type StatsWriter } from "../stats/stats-writer.ts";
import { promtoolCheckMetrics } from "../support/promtool.ts";

const arena = StatsArena.create({ workers: 1, slotsPerWorker: 4 });
const health: HealthSnapshot = { xenstore: "reconnecting", uptimeSeconds: 42, workers: { configured: 2, running: 1 } };
let vifs: VifSnapshot[] = [];
let writer: StatsWriter;
let server: HttpServer;

beforeAll(async () => {
  const slot = arena.allocate(0);
  writer = await publishingWriter(arena, slot, { tx_packets: 7, tx_bytes: 2 ** 40, rx_drops: 3, carrier: 1 });
  vifs = [
    {
      domid: 12, devid: 1, backendState: XenbusState.Connected, frontendState: XenbusState.Connected, worker: 0,
      mac: "00:16:3e:00:00:0c", features: {}, slot, hostSide: { kind: "tap", name: "vif12.1" },
    },
    { domid: 13, devid: 0, backendState: XenbusState.InitWait, frontendState: XenbusState.Initialising, worker: null, mac: null, features: {}, slot: null, hostSide: null },
  ];
  const app = createHttpApp({
    health: () => health,
    vifs: () => vifs,
    stats: arena,
    // A commit string with every character the format must escape.
    build: { version: "0.1.0", commit: 'a\\b"c\nd' },
  });
  server = startHttpServer(app, { host: "127.0.0.1", port: 0 });
});

afterAll(async () => {
  await server?.stop();
  await writer?.stop();
});

async function scrape(): Promise<{ res: Response; text: string }> {
  const res = await fetch(`${server.url}/metrics`);
  return { res, text: await res.text() };
}

test("promtool check metrics accepts it, lint included, and the content type is the 0.0.4 text format", async () => {
  const { res, text } = await scrape();
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE);
  expect(PROMETHEUS_CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8");
  expect(promtoolCheckMetrics(text)).toEqual({ status: 0, output: "" });
});

test("a vif's counters are _total counters with numeric domid and devid labels, 53-bit values exact", async () => {
  const { text } = await scrape();
  const id = 'vif="vif12.1",domid="12",devid="1"';
  expect(text).toContain(`# TYPE qnicd_vif_tx_packets_total counter\n`);
  expect(text).toContain(`qnicd_vif_tx_packets_total{${id}} 7\n`);
  expect(text).toContain(`qnicd_vif_tx_bytes_total{${id}} 1099511627776\n`);
  expect(text).toContain(`qnicd_vif_rx_drops_total{${id}} 3\n`);
  expect(text).toContain(`# TYPE qnicd_vif_carrier gauge\nqnicd_vif_carrier{${id}} 1\n`);
  expect(text).toContain(`qnicd_vif_info{${id},mac="00:16:3e:00:00:0c",peer="tap",host_interface="vif12.1",worker="0"} 1\n`);
  // Every row of the counter table is served for the vif, once.
  for (const row of VIF_COUNTERS) {
    const name = `qnicd_vif_${(row as { family?: string }).family ?? row.name}${row.kind === "counter" ? "_total" : ""}`;
    expect(text).toContain(`# TYPE ${name} ${row.kind}\n`);
  }
  // The vif still in InitWait has states but no counters.
  expect(text).toContain('qnicd_vif_backend_state{vif="vif13.0",domid="13",devid="0"} 2\n');
  expect(text).not.toContain('qnicd_vif_tx_packets_total{vif="vif13.0"');
  // The direction convention is in the HELP text of each per-vif counter.
  expect(text).toMatch(/# HELP qnicd_vif_tx_packets_total .*guest's side/);
});

test("the daemon's own families: workers, xenstore connection, vifs by state, build info", async () => {
  const { text } = await scrape();
  expect(text).toContain("\nqnicd_workers_configured 2\n");
  expect(text).toContain("\nqnicd_workers_running 1\n");
  expect(text).toContain('qnicd_xenstore_connection{state="connected"} 0\nqnicd_xenstore_connection{state="reconnecting"} 1\nqnicd_xenstore_connection{state="down"} 0\n');
  expect(text).toContain('qnicd_vifs{state="Connected"} 1\n');
  expect(text).toContain('qnicd_vifs{state="InitWait"} 1\n');
  expect(text).toContain('qnicd_vifs{state="Closed"} 0\n');
  expect(text).toContain('qnicd_build_info{version="0.1.0",commit="a\\\\b\\"c\\nd"} 1\n');
  expect(text).toContain("qnicd_uptime_seconds 42\n");
});

test("label values escape backslash, double quote and line feed, nothing else", () => {
  expect(escapeLabelValue('a\\b"c\nd\te')).toBe('a\\\\b\\"c\\nd\te');
});
