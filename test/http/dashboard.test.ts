// The dashboard at / in headless Chromium, against a daemon forwarding traffic between two guests:
// every vif with its states, host interface and queues, live rates that are not zero, charts that
// grow while the page is watched, and nothing requested from anywhere but the daemon.
// QNICD_DASHBOARD_SCREENSHOT=docs/dashboard.png (with QNICD_DASHBOARD_SECONDS=60 for fuller charts)
// writes the README's screenshot.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchChromium, type Browser } from "../support/chromium.ts";
import { startTrafficDaemon, type TrafficDaemon } from "../support/traffic-daemon.ts";
import { until } from "../backend/sim-host.ts";

let t: TrafficDaemon | undefined;
let browser: Browser | undefined;
let traffic = true;
let pumping: Promise<void> = Promise.resolve();
const dir = mkdtempSync(join(tmpdir(), "qnicd-dashboard-"));
afterAll(async () => {
  traffic = false;
  await pumping;
  await browser?.close();
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface CardView {
  name: string;
  fields: Record<string, string>;
  carrier: string;
  points: Record<string, number>;
}

const READ_PAGE = `(() => {
  const cards = [...document.querySelectorAll("#vifs [data-vif]")].map((c) => ({
    name: c.dataset.vif,
    fields: Object.fromEntries([...c.querySelectorAll(".facts [data-field], .chart [data-field]")].map((f) => [f.dataset.field, f.textContent])),
    carrier: c.querySelector('[data-field="carrier"]').textContent,
    points: Object.fromEntries([...c.querySelectorAll("polyline")].map((p) => [p.closest("[data-chart]").dataset.chart + "." + p.dataset.series, Number(p.dataset.count || 0)])),
  }));
  return { updated: Number(document.body.dataset.updated || 0), health: document.getElementById("health").textContent, summary: document.getElementById("summary").textContent, cards };
})()`;

type PageView = { updated: number; health: string; summary: string; cards: CardView[] };

test("the dashboard shows every vif live: states, host interface, queues, rates and charts that update, all from the daemon alone", async () => {
  t = await startTrafficDaemon();
  const d = t;
  // Traffic all along: alice asks for bob again and again (both vifs carry frames each way).
  pumping = (async () => {
    while (traffic) {
      await d.arp(40);
      await Bun.sleep(20);
    }
  })();
  browser = await launchChromium();
  await browser.goto(d.daemon.http.url + "/");
  const seconds = Number(process.env.QNICD_DASHBOARD_SECONDS ?? 4);
  const view = await until(
    "both vifs shown with traffic",
    async () => {
      const v = await browser!.evaluate<PageView>(READ_PAGE);
      return v.cards.length === 2 && v.cards.every((c) => c.points["pps.tx"] >= 2 && / [1-9]/.test(c.fields.pps ?? "")) ? v : undefined;
    },
    20_000,
  );
  expect(view.health).toBe("ok");
  expect(view.summary).toContain("xenstore connected · workers 1/1 · 2 vifs");
  for (const g of [d.alice, d.bob]) {
    const card = view.cards.find((c) => c.name === g.vif)!;
    expect(card.fields).toMatchObject({
      "backend-state": "Connected",
      "frontend-state": "Connected",
      "host-interface": `switch ${g.vif}`,
      worker: "0",
      queues: "1",
      mac: g.mac,
    });
    expect(card.carrier).toBe("carrier on");
    // "tx 123.4 pkt/s  rx 120.0 pkt/s": packets each way, and bits.
    expect(card.fields.pps).toMatch(/^tx [\d.]+ k? ?pkt\/s {2}rx [\d.]+ k? ?pkt\/s$/);
    expect(card.fields.bps).toMatch(/^tx [\d.]+ [kM]?bit\/s {2}rx [\d.]+ [kM]?bit\/s$/);
    expect(card.fields.dps).toMatch(/^drop [\d.]+ [kMG]?\/s$/);
  }

  // Watched a little longer, the charts have more points and the page has redrawn.
  await Bun.sleep(Math.max(2, seconds) * 1000);
  const later = await browser.evaluate<PageView>(READ_PAGE);
  expect(later.updated).toBeGreaterThan(view.updated + 1);
  for (const c of later.cards) expect(c.points["pps.tx"]).toBeGreaterThan(view.cards.find((v) => v.name === c.name)!.points["pps.tx"]);

  // Nothing from the network: every request went to the daemon.
  expect(browser.requests.length).toBeGreaterThan(3);
  expect(browser.requests.filter((u) => !u.startsWith(d.daemon.http.url + "/"))).toEqual([]);
  expect(browser.errors).toEqual([]);

  const png = await browser.screenshotPng();
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const dv = new DataView(png.buffer, png.byteOffset);
  expect(dv.getUint32(16)).toBe(1280); // IHDR width
  writeFileSync(process.env.QNICD_DASHBOARD_SCREENSHOT ?? join(dir, "dashboard.png"), png);
});
