// Serves an app with Bun.serve. Binding failures become one-line errors naming the address, since
// they are what an operator sees at startup ("address in use", "cannot assign requested address").
import type { Hono } from "hono";
import { formatHttpAddress, type HttpAddress } from "../config/http-address.ts";

export interface HttpServer {
  /** The address actually bound (the real port when asked for port 0). */
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Stops listening and closes open connections. Idempotent. */
  stop(): Promise<void>;
}

export class HttpServerError extends Error {
  readonly code = "QNICD_HTTP_LISTEN";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HttpServerError";
  }
}

export function startHttpServer(app: Hono, address: HttpAddress): HttpServer {
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: address.host,
      port: address.port,
      fetch: app.fetch,
      development: false,
      // Explicit: with development off, Bun was seen sharing a port already in use (SO_REUSEPORT),
      // which would silently split requests between two daemons instead of failing to start.
      reusePort: false,
    });
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).replace(/\s*[\r\n]+\s*/g, " ");
    throw new HttpServerError(`qnicd: --http: cannot listen on ${formatHttpAddress(address)}: ${why}`, { cause: e });
  }
  const bound = { host: address.host, port: server.port! };
  let stopped: Promise<void> | null = null;
  return {
    host: bound.host,
    port: bound.port,
    url: `http://${formatHttpAddress(bound)}`,
    stop: () => (stopped ??= server.stop(true).then(() => undefined)),
  };
}
