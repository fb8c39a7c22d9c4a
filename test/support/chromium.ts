// Headless Chromium (Debian's chromium, installed when missing) driven over the DevTools protocol:
// load a page, evaluate expressions in it, list every URL it requested, take a screenshot.
import { spawn, type Subprocess } from "bun";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebPackages } from "./apt.ts";

export interface Browser {
  /** Every URL the page requested since it was opened. */
  readonly requests: string[];
  /** Console errors and uncaught exceptions in the page. */
  readonly errors: string[];
  goto(url: string): Promise<void>;
  evaluate<T>(expression: string): Promise<T>;
  screenshotPng(): Promise<Uint8Array>;
  close(): Promise<void>;
}

export async function launchChromium(size = { width: 1280, height: 900 }): Promise<Browser> {
  ensureDebPackages(["chromium"]);
  const profile = mkdtempSync(join(tmpdir(), "qnicd-chromium-"));
  const proc: Subprocess<"ignore", "ignore", "pipe"> = spawn(
    [
      "chromium",
      "--headless=new",
      "--no-sandbox", // tests run as root, where Chromium's sandbox refuses to start
      "--disable-gpu",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--disable-component-update",
      `--user-data-dir=${profile}`,
      `--window-size=${size.width},${size.height}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  const cleanup = async () => {
    proc.kill();
    await proc.exited;
    // Its helper processes may still write into the profile for a moment after the browser exits.
    for (let i = 0; i < 10 && existsSync(profile); i++) {
      rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
      await Bun.sleep(200);
    }
  };
  try {
    const wsBrowser = await devtoolsUrl(proc.stderr);
    const port = new URL(wsBrowser).port;
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { type: string; webSocketDebuggerUrl: string }[];
    const page = targets.find((t) => t.type === "page");
    if (!page) throw new Error("chromium: no page target");
    const cdp = await connect(page.webSocketDebuggerUrl);
    const requests: string[] = [];
    const errors: string[] = [];
    cdp.on("Network.requestWillBeSent", (p) => requests.push(p.request.url));
    cdp.on("Runtime.exceptionThrown", (p) => errors.push(p.exceptionDetails?.exception?.description ?? p.exceptionDetails?.text));
    cdp.on("Runtime.consoleAPICalled", (p) => p.type === "error" && errors.push(p.args.map((a: { value?: unknown; description?: string }) => a.value ?? a.description).join(" ")));
    await cdp.send("Network.enable");
    await cdp.send("Runtime.enable");
    await cdp.send("Page.enable");
    await cdp.send("Emulation.setDeviceMetricsOverride", { width: size.width, height: size.height, deviceScaleFactor: 1, mobile: false });
    return {
      requests,
      errors,
      async goto(url) {
        const loaded = cdp.once("Page.loadEventFired");
        await cdp.send("Page.navigate", { url });
        await loaded;
      },
      async evaluate<T>(expression: string) {
        const r = await cdp.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
        if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      async screenshotPng() {
        const r = await cdp.send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
        return Uint8Array.from(Buffer.from(r.data as string, "base64"));
      },
      async close() {
        cdp.close();
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function devtoolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stderr.getReader();
  const dec = new TextDecoder();
  let text = "";
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value);
    const m = text.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) {
      // Keep draining stderr so Chromium never blocks writing to it.
      void (async () => {
        while (!(await reader.read()).done) {}
      })().catch(() => {});
      return m[1];
    }
  }
  throw new Error(`chromium did not start: ${text.slice(-500)}`);
}

interface Cdp {
  send(method: string, params?: object): Promise<any>;
  on(event: string, f: (params: any) => void): void;
  once(event: string): Promise<any>;
  close(): void;
}

async function connect(url: string): Promise<Cdp> {
  const ws = new WebSocket(url);
  await new Promise<void>((res, rej) => {
    ws.onopen = () => res();
    ws.onerror = () => rej(new Error(`chromium: cannot connect to ${url}`));
  });
  let id = 0;
  const pending = new Map<number, { res: (v: any) => void; rej: (e: Error) => void }>();
  const listeners = new Map<string, ((p: any) => void)[]>();
  ws.onmessage = (ev) => {
    const msg = JSON.parse(String(ev.data));
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p?.rej(new Error(`chromium: ${msg.error.message}`));
      else p?.res(msg.result);
    } else for (const f of listeners.get(msg.method) ?? []) f(msg.params);
  };
  const cdp: Cdp = {
    send(method, params = {}) {
      const n = ++id;
      ws.send(JSON.stringify({ id: n, method, params }));
      return new Promise((res, rej) => pending.set(n, { res, rej }));
    },
    on(event, f) {
      listeners.set(event, [...(listeners.get(event) ?? []), f]);
    },
    once(event) {
      return new Promise((res) => {
        const f = (p: any) => {
          listeners.set(event, (listeners.get(event) ?? []).filter((g) => g !== f));
          res(p);
        };
        cdp.on(event, f);
      });
    },
    close() {
      ws.close();
    },
  };
  return cdp;
}
