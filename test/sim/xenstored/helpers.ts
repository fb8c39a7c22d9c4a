// A raw xenstore wire client for precise protocol tests, and a per-test simulated xenstored in its
// own temporary run directory.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simPaths } from "../../../src/sim/paths.ts";
import { startXenstored, type Quotas, type Xenstored } from "../../../src/sim/xenstored/server.ts";
import { XsOp } from "../../../src/xen/xs-wire.ts";

export { XsOp };

export interface Msg {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

export const text = (m: Msg) => m.payload.toString("latin1");
/** NUL-terminated strings of a payload (trailing bytes without NUL ignored). */
export const strings = (m: Msg) => {
  const s = text(m);
  const parts = s.split("\0");
  parts.pop();
  return parts;
};

export function frame(type: number, payload: string | Buffer, reqId = 0, txId = 0): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "latin1") : payload;
  const h = Buffer.alloc(16);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(reqId, 4);
  h.writeUInt32LE(txId, 8);
  h.writeUInt32LE(body.length, 12);
  return Buffer.concat([h, body]);
}

export class XsError extends Error {
  constructor(readonly errno: string, op: number) {
    super(`op ${op} failed: ${errno}`);
  }
}

export class RawClient {
  /** Watch events received and not yet taken by waitEvent. */
  readonly events: Msg[] = [];
  /** Every message in arrival order (for ordering assertions). */
  readonly log: Msg[] = [];
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private nextReq = 1;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 16) {
        const len = this.buf.readUInt32LE(12);
        if (this.buf.length < 16 + len) break;
        const m: Msg = {
          type: this.buf.readUInt32LE(0),
          reqId: this.buf.readUInt32LE(4),
          txId: this.buf.readUInt32LE(8),
          payload: Buffer.from(this.buf.subarray(16, 16 + len)),
        };
        this.buf = this.buf.subarray(16 + len);
        this.log.push(m);
        if (m.type === XsOp.WATCH_EVENT) this.events.push(m);
        else this.replies.push(m);
      }
      this.wake();
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  private readonly replies: Msg[] = [];

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once("error", reject);
      s.once("connect", () => {
        s.off("error", reject);
        resolve(new RawClient(s));
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Wait until `cond` holds (re-checked on every arrival), or fail after `ms`. */
  async until<T>(cond: () => T | undefined, ms = 3000, what = "condition"): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = cond();
      if (v !== undefined && v !== false) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  writeRaw(b: Buffer): void {
    this.socket.write(b);
  }

  send(type: number, payload: string | Buffer, txId = 0, reqId?: number): number {
    const id = reqId ?? this.nextReq++;
    this.writeRaw(frame(type, payload, id, txId));
    return id;
  }

  /** The reply (any non-event message) with this req_id. */
  reply(reqId: number, ms = 3000): Promise<Msg> {
    return this.until(() => {
      const i = this.replies.findIndex((m) => m.reqId === reqId);
      return i >= 0 ? this.replies.splice(i, 1)[0] : undefined;
    }, ms, `reply to req ${reqId}`);
  }

  /** Send and wait for the reply message, whatever its type. */
  async request(type: number, payload: string | Buffer, txId = 0): Promise<Msg> {
    return this.reply(this.send(type, payload, txId));
  }

  /** Send and return the successful reply payload; throws XsError carrying the error name. */
  async call(type: number, payload: string | Buffer, txId = 0): Promise<Msg> {
    const m = await this.request(type, payload, txId);
    if (m.type === XsOp.ERROR) throw new XsError(text(m).replace(/\0$/, ""), type);
    if (m.type !== type) throw new Error(`reply type ${m.type} to op ${type}`);
    return m;
  }

  /** The error name of a request expected to fail ("" if it succeeded). */
  async err(type: number, payload: string | Buffer, txId = 0): Promise<string> {
    const m = await this.request(type, payload, txId);
    return m.type === XsOp.ERROR ? text(m).replace(/\0$/, "") : "";
  }

  read = async (path: string, tx = 0) => text(await this.call(XsOp.READ, `${path}\0`, tx));
  write = async (path: string, value: string | Buffer, tx = 0) => {
    const v = typeof value === "string" ? Buffer.from(value, "latin1") : value;
    await this.call(XsOp.WRITE, Buffer.concat([Buffer.from(`${path}\0`, "latin1"), v]), tx);
  };
  mkdir = async (path: string, tx = 0) => void (await this.call(XsOp.MKDIR, `${path}\0`, tx));
  rm = async (path: string, tx = 0) => void (await this.call(XsOp.RM, `${path}\0`, tx));
  ls = async (path: string, tx = 0) => strings(await this.call(XsOp.DIRECTORY, `${path}\0`, tx));
  getPerms = async (path: string, tx = 0) => strings(await this.call(XsOp.GET_PERMS, `${path}\0`, tx));
  setPerms = async (path: string, perms: string[], tx = 0) =>
    void (await this.call(XsOp.SET_PERMS, `${path}\0${perms.map((p) => p + "\0").join("")}`, tx));
  watch = async (path: string, token: string) => void (await this.call(XsOp.WATCH, `${path}\0${token}\0`));
  unwatch = async (path: string, token: string) => void (await this.call(XsOp.UNWATCH, `${path}\0${token}\0`));
  txStart = async () => Number(text(await this.call(XsOp.TRANSACTION_START, "\0")).replace(/\0$/, ""));
  txEnd = async (tx: number, commit = true) => void (await this.call(XsOp.TRANSACTION_END, commit ? "T\0" : "F\0", tx));

  /** Events as [path, token] pairs, removing them from the pending list. */
  takeEvents(): [string, string][] {
    return this.events.splice(0).map((m) => strings(m) as [string, string]);
  }

  /** Wait for a watch event matching path (and token), remove and return it. */
  async waitEvent(path: string, token?: string, ms = 3000): Promise<[string, string]> {
    return this.until(
      () => {
        const i = this.events.findIndex((m) => {
          const [p, t] = strings(m);
          return p === path && (token === undefined || t === token);
        });
        return i >= 0 ? (strings(this.events.splice(i, 1)[0]!) as [string, string]) : undefined;
      },
      ms,
      `watch event ${path}`,
    );
  }

  /** Give the daemon time to send anything still in flight, with a round trip as the barrier. */
  async settle(): Promise<void> {
    await this.call(XsOp.GET_DOMAIN_PATH, "0\0");
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface TestHost {
  dir: string;
  xs: Xenstored;
  /** The daemon's log lines. */
  logs: string[];
  dom0(): Promise<RawClient>;
  /** INTRODUCE `domid` from dom0 (if not yet) and connect on its socket. */
  guest(domid: number): Promise<RawClient>;
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startTestHost(quotas?: Partial<Quotas>, dir?: string): Promise<TestHost> {
  const runDir = dir ?? mkdtempSync(join(tmpdir(), "qnicd-xs-"));
  const clients: RawClient[] = [];
  const lines: string[] = [];
  const opts = { dir: runDir, quotas, log: (l: string) => lines.push(l) };
  let admin: RawClient | undefined;
  const host: TestHost = {
    dir: runDir,
    logs: lines,
    xs: await startXenstored(opts),
    async dom0() {
      const c = await RawClient.connect(host.xs.socketPath);
      clients.push(c);
      return c;
    },
    async guest(domid: number) {
      admin ??= await host.dom0();
      const m = await admin.request(XsOp.IS_DOMAIN_INTRODUCED, `${domid}\0`);
      if (text(m) !== "T\0") await admin.call(XsOp.INTRODUCE, `${domid}\0${1000 + domid}\0${10 + domid}\0`);
      const c = await RawClient.connect(simPaths(runDir).domainSocket(domid));
      clients.push(c);
      return c;
    },
    async restart() {
      for (const c of clients) c.close();
      clients.length = 0;
      admin = undefined;
      await host.xs.close();
      host.xs = await startXenstored(opts);
    },
    async cleanup() {
      for (const c of clients) c.close();
      await host.xs.close();
      rmSync(runDir, { recursive: true, force: true });
      // A handler bug answers EIO instead of crashing; tests must still notice it.
      const bugs = lines.filter((l) => l.includes("internal error"));
      if (bugs.length) throw new Error(`xenstored internal errors:\n${bugs.join("\n")}`);
    },
  };
  return host;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** All watch events that arrive until a round trip on `cl` completes. */
export async function drain(cl: RawClient): Promise<[string, string][]> {
  await sleep(10);
  await cl.settle();
  return cl.takeEvents();
}
