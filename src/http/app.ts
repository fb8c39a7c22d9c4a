// The status API. Thin on purpose: every route reads snapshots the daemon already has and counters
// from shared memory. Serving a request never messages a worker, so a busy or stuck worker cannot
// slow the API down, and the API cannot slow a worker down.
import { Hono } from "hono";
import * as v from "valibot";
import type { HealthView, HttpDeps } from "./views.ts";
import { toVifView, toVifsView, vifName } from "./vif-view.ts";
import { PROMETHEUS_CONTENT_TYPE, renderMetrics } from "./prometheus.ts";
import { buildInfo } from "../build-info.ts";

const VifNameParam = v.pipe(v.string(), v.regex(/^vif\d+\.\d+$/));

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

  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));

  app.onError((err, c) => {
    const message = oneLine(err instanceof Error ? err.message : String(err));
    deps.log?.error("http request failed", { method: c.req.method, path: c.req.path, err: message });
    return c.json({ error: message }, 500);
  });

  return app;
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ");
}
