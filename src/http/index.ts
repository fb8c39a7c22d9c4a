// The HTTP room's public face.
export { createHttpApp } from "./app.ts";
export { startHttpServer, HttpServerError, type HttpServer } from "./server.ts";
export { vifName } from "./vif-view.ts";
export type { HealthSnapshot, HealthView, HttpDeps, VifSnapshot, VifView, VifsView, XenstoreHealth } from "./views.ts";
