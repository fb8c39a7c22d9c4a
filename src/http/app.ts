// The status API. Thin on purpose: every route reads snapshots the daemon already has and counters
// from shared memory. Serving a request never messages a worker, so a busy or stuck worker cannot
// slow the API down, and the API cannot slow a worker down.
import { Hono } from "hono";
import * as v from "valibot";
import type { HealthView, HttpDeps } from "./views.ts";
import { toVifView, toVifsView, vifName } from "./vif-view.ts";
import { PROMETHEUS_CONTENT_TYPE, renderMetrics } from "./prometheus.ts";
import { buildInfo, versionLine } from "../build-info.ts";
import { CaptureError } from "../capture/capture-service.ts";
import { xenbusStateName } from "../xen/xenbus-state.ts";
import dashboardFile from "./dashboard.html" with { type: "text" };

const VifNameParam = v.pipe(v.string(), v.regex(/^vif\d+\.\d+$/));

/** A whole number from a query string, within [min, max]. */
const wholeNumber = (what: string, min: number, max: number) =>
  v.pipe(v.string(), v.digits(`${what} must be a whole number`), v.toNumber(), v.minValue(min, `${what} must be ${min} to ${max}`), v.maxValue(max, `${what} must be ${min} to ${max}`));

/** GET /vifs/:name/pcap's query: every capture is bounded in frames, time and bytes per frame. */
/** Imported as text (Bun embeds it in a compiled binary too); Bun's types call every .html import a bundle. */
const dashboardHtml = dashboardFile as unknown as string;

const RatesQuery = v.strictObject({ since: v.optional(v.pipe(v.string(), v.digits("since must be milliseconds since the epoch"), v.toNumber()), "0") });

export const PcapQuery = v.strictObject({
  count: v.optional(wholeNumber("count", 1, 1_000_000), "1000"),
  seconds: v.optional(wholeNumber("seconds", 1, 3600), "10"),
  snaplen: v.optional(wholeNumber("snaplen", 14, 65535), "65535"),
  /** Which of a multi-queue vif's queues (each is served on its own, often by another worker). */
  queue: v.optional(wholeNumber("queue", 0, 63), "0"),
});

export function createHttpApp(deps: HttpDeps): Hono {
  const app = new Hono();

  // Live figures: a cached copy would be wrong by the time anyone reads it.
  app.use(async (c, next) => {
    await next();
    c.header("Cache-Control", "no-store");
  });

  app.get("/health", (c) => {
    const h = deps.health();
    const ok = h.xenstore === "connected" && h.workers.running === h.workers.configured;
    const body: HealthView = { status: ok ? "ok" : "degraded", ...h };
    return c.json(body, ok ? 200 : 503);
  });

  // The live dashboard: one self-contained page (src/http/dashboard.html) reading /health, /vifs, /rates.
  app.get("/", (c) => c.html(dashboardHtml.replace("__QNICD_VERSION__", escapeHtml(versionLine(deps.build ?? buildInfo())))));

  app.get("/rates", (c) => {
    if (!deps.rates) return c.json({ error: "rate history is not kept by this daemon" }, 503);
    const q = v.safeParse(RatesQuery, c.req.query());
    if (!q.success) return c.json({ error: `rates: ${q.issues[0].message}` }, 400);
    return c.json(deps.rates.view(q.output.since));
  });

  app.get("/metrics", (c) => {
    const body = renderMetrics({ health: deps.health(), vifs: toVifsView(deps.vifs(), deps.stats).vifs, build: deps.build ?? buildInfo() });
    return c.body(body, 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
  });

  app.get("/vifs", (c) => c.json(toVifsView(deps.vifs(), deps.stats)));

  app.get("/vifs/:name", (c) => {
    const name = c.req.param("name");
    if (!v.is(VifNameParam, name)) {
      return c.json({ error: `malformed vif name ${JSON.stringify(name)}: expected vif<domid>.<devid>` }, 400);
    }
    const snap = deps.vifs().find((s) => vifName(s.domid, s.devid) === name);
    if (!snap) return c.json({ error: `no vif named ${name}` }, 404);
    return c.json(toVifView(snap, deps.stats));
  });

  app.get("/vifs/:name/pcap", (c) => {
    const name = c.req.param("name");
    if (!v.is(VifNameParam, name)) {
      return c.json({ error: `malformed vif name ${JSON.stringify(name)}: expected vif<domid>.<devid>` }, 400);
    }
    const query = v.safeParse(PcapQuery, c.req.query());
    if (!query.success) {
      const issue = query.issues[0];
      const key = issue.path?.map((p) => String(p.key)).join(".") ?? "";
      const message = issue.type === "strict_object" ? `unknown parameter ${JSON.stringify(key)}: expected count, seconds, snaplen, queue` : issue.message;
      return c.json({ error: `${name}: pcap: ${message}` }, 400);
    }
    if (!deps.captures) return c.json({ error: "packet capture is not available in this daemon" }, 503);
    const snap = deps.vifs().find((s) => vifName(s.domid, s.devid) === name);
    if (!snap) return c.json({ error: `no vif named ${name}` }, 404);
    if (snap.slot === null || snap.worker === null) return c.json({ error: `${name} is not connected (its frontend is ${xenbusStateName(snap.frontendState)}): nothing to capture yet` }, 409);
    const { queue: qi, ...limits } = query.output;
    const queues = snap.queues ?? [{ worker: snap.worker, slot: snap.slot }];
    const target = queues[qi];
    if (!target) return c.json({ error: `${name} has ${queues.length} queue${queues.length === 1 ? "" : "s"}: queue must be 0 to ${queues.length - 1}` }, 400);
    let stream: ReadableStream<Uint8Array>;
    try {
      const label = queues.length > 1 ? `${name}-q${qi}` : name;
      stream = deps.captures.start({ name: label, worker: target.worker, slot: target.slot, hostSide: snap.hostSide ? `${snap.hostSide.kind} ${snap.hostSide.name}` : "no host side" }, limits);
    } catch (e) {
      if (e instanceof CaptureError) return c.json({ error: e.message }, e.status);
      throw e;
    }
    return new Response(stream, {
      headers: { "Content-Type": "application/x-pcapng", "Content-Disposition": `attachment; filename="${name}.pcapng"`, "Cache-Control": "no-store" },
    });
  });

  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));

  app.onError((err, c) => {
    const message = oneLine(err instanceof Error ? err.message : String(err));
    deps.log?.error("http request failed", { method: c.req.method, path: c.req.path, err: message });
    return c.json({ error: message }, 500);
  });

  return app;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ");
}
