// One connection to xenstored: sends requests with incrementing req_ids (many in flight), matches
// replies by req_id, hands WATCH_EVENTs to the owner, and reconnects with backoff when xenstored
// goes away.
//
// Reconnect policy (the owner can rely on this):
// - Requests marked `retryable` (plain reads outside a transaction: READ, DIRECTORY, GET_PERMS,
//   GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED) that were in flight, or that are made while
//   reconnecting, are sent again once the connection is back. They are idempotent, so a reply lost
//   with the old connection changes nothing.
// - Everything else in flight fails with XenstoreConnectionError: a WRITE/RM/... may or may not
//   have been applied, and a transaction id dies with its connection, so only the caller can decide.
// - After reconnecting, `onReconnected` runs (the client re-registers its watches there) before the
//   owner hears about it; each re-registered watch fires once, as on first registration.
import { XsOp } from "../xen/xs-wire.ts";
import { encodeMessage, FrameDecoder, splitNul, replyString, type XsMessage } from "./codec.ts";
import { XenstoreConnectionError, XenstoreError } from "./errors.ts";
import type { Transport, TransportFactory } from "./transport.ts";

export interface ReconnectOptions {
  /** Reconnect when xenstored goes away (default true). When false, a lost connection closes it. */
  enabled?: boolean;
  /** First retry delay; doubles up to maxDelayMs (defaults 25 ms and 1000 ms). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up (and close) after this long without a connection (default: never). */
  giveUpAfterMs?: number;
}

interface Request {
  type: number;
  txId: number;
  payload: Uint8Array;
  retryable: boolean;
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
}

type State = "open" | "reconnecting" | "closed";

const opNames = Object.fromEntries(Object.entries(XsOp).map(([k, v]) => [v, k])) as Record<number, string>;
export const xsOpName = (type: number) => opNames[type] ?? `op${type}`;

export class Connection {
  private state: State = "open";
  private transport: Transport | undefined;
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Request>();
  /** Retryable requests waiting for the connection to come back. */
  private waiting: Request[] = [];
  private nextReqId = 1;
  private reconnectWaiters: { resolve(): void; reject(e: Error): void }[] = [];

  /** WATCH_EVENT (path, token). Exceptions thrown by it are caught and passed to onError. */
  onWatchEvent: (path: string, token: string) => void = () => {};
  /** Runs after a reconnect, before `onReconnected` waiters are released (re-register watches). */
  onReconnect: () => Promise<void> = async () => {};
  onDisconnected: (err: Error) => void = () => {};
  onReconnected: () => void = () => {};
  /** The connection closed for good (close(), or reconnecting disabled/given up). */
  onClosed: (err?: Error) => void = () => {};
  onError: (err: Error) => void = (e) => console.error(`xenstore: ${e.message}`);

  private constructor(
    private readonly factory: TransportFactory,
    private readonly endpoint: string,
    private readonly reconnect: Required<ReconnectOptions>,
  ) {}

  static async open(factory: TransportFactory, endpoint: string, reconnect: ReconnectOptions = {}): Promise<Connection> {
    const c = new Connection(factory, endpoint, {
      enabled: reconnect.enabled ?? true,
      initialDelayMs: reconnect.initialDelayMs ?? 25,
      maxDelayMs: reconnect.maxDelayMs ?? 1000,
      giveUpAfterMs: reconnect.giveUpAfterMs ?? Number.POSITIVE_INFINITY,
    });
    try {
      c.transport = await factory(c.handlers());
    } catch (e) {
      throw new XenstoreConnectionError(`cannot connect to xenstored at ${endpoint}: ${(e as Error).message}`, { cause: e });
    }
    return c;
  }

  get isOpen(): boolean {
    return this.state === "open";
  }
  get isClosed(): boolean {
    return this.state === "closed";
  }

  request(type: number, payload: Uint8Array, txId = 0, retryable = false): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const req: Request = { type, txId, payload, retryable: retryable && txId === 0, resolve, reject };
      if (this.state === "open") this.send(req);
      else if (this.state === "reconnecting" && req.retryable) this.waiting.push(req);
      else reject(this.lostError(req, this.state === "closed" ? "the client is closed" : "xenstored is unreachable (reconnecting)"));
    });
  }

  /** Resolves once the next reconnect (including the owner's re-registration) has completed. */
  whenReconnected(): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "closed") return Promise.reject(new XenstoreConnectionError("xenstore client is closed"));
    return new Promise((resolve, reject) => this.reconnectWaiters.push({ resolve, reject }));
  }

  close(): void {
    if (this.state === "closed") return;
    this.shutdown(undefined, "the client was closed");
  }

  private send(req: Request): void {
    // Encode first: an oversized payload throws here, before a req_id is used or anything is sent.
    let id = this.nextReqId;
    this.nextReqId = this.nextReqId >= 0xffffffff ? 1 : this.nextReqId + 1;
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage({ type: req.type, reqId: id, txId: req.txId, payload: req.payload });
    } catch (e) {
      req.reject(e as Error);
      return;
    }
    this.pending.set(id, req);
    try {
      this.transport!.write(bytes);
    } catch (e) {
      // The transport refused the message before sending it (too big for /dev/xen/xenbus).
      this.pending.delete(id);
      req.reject(e as Error);
    }
  }

  private handlers() {
    return {
      data: (chunk: Uint8Array) => {
        let msgs: XsMessage[];
        try {
          msgs = this.decoder.push(chunk);
        } catch (e) {
          this.onError(e as Error);
          this.transport?.close();
          return;
        }
        for (const m of msgs) this.dispatch(m);
      },
      closed: (err?: Error) => this.lost(err),
    };
  }

  private dispatch(m: XsMessage): void {
    if (m.type === XsOp.WATCH_EVENT) {
      const [path, token] = splitNul(m.payload);
      if (path === undefined || token === undefined) {
        this.onError(new XenstoreError("EIO", "malformed WATCH_EVENT from xenstored"));
        return;
      }
      try {
        this.onWatchEvent(path, token);
      } catch (e) {
        this.onError(e as Error);
      }
      return;
    }
    const req = this.pending.get(m.reqId);
    if (!req) return; // a reply to a request of a previous connection, or junk: nothing waits for it
    this.pending.delete(m.reqId);
    if (m.type === XsOp.ERROR) {
      const code = replyString(m.payload);
      req.reject(new XenstoreError(code, `xenstored answered ${code} to ${xsOpName(req.type)} ${describe(req)}`));
    } else if (m.type !== req.type) {
      req.reject(new XenstoreError("EIO", `xenstored answered ${xsOpName(m.type)} to ${xsOpName(req.type)}`));
    } else req.resolve(m.payload);
  }

  private lostError(req: Request, why: string): XenstoreConnectionError {
    const retry = req.txId !== 0 ? "its transaction died with the connection" : "not retried: it may or may not have been applied";
    return new XenstoreConnectionError(
      `xenstore ${xsOpName(req.type)} ${describe(req)} failed: ${why} (${this.endpoint}); ${req.retryable ? "gave up" : retry}`,
    );
  }

  private lost(err?: Error): void {
    if (this.state !== "open") return;
    this.transport = undefined;
    this.decoder.reset();
    const inflight = [...this.pending.values()];
    this.pending.clear();
    if (!this.reconnect.enabled) {
      for (const r of inflight) this.waiting.push(r);
      this.shutdown(err, "the connection to xenstored was lost");
      return;
    }
    this.state = "reconnecting";
    for (const r of inflight) {
      if (r.retryable) this.waiting.push(r);
      else r.reject(this.lostError(r, "the connection to xenstored was lost"));
    }
    const e = new XenstoreConnectionError(`lost the connection to xenstored at ${this.endpoint}${err ? `: ${err.message}` : ""}`);
    this.onDisconnected(e);
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    const started = Date.now();
    let delay = this.reconnect.initialDelayMs;
    while (this.state === "reconnecting") {
      await Bun.sleep(delay);
      if (this.state !== "reconnecting") return;
      try {
        this.transport = await this.factory(this.handlers());
      } catch {
        if (Date.now() - started >= this.reconnect.giveUpAfterMs) {
          this.shutdown(undefined, `xenstored stayed unreachable for ${this.reconnect.giveUpAfterMs} ms`);
          return;
        }
        delay = Math.min(delay * 2, this.reconnect.maxDelayMs);
        continue;
      }
      if (this.state !== "reconnecting") {
        this.transport.close();
        return;
      }
      this.state = "open";
      const queued = this.waiting;
      this.waiting = [];
      try {
        await this.onReconnect();
      } catch (e) {
        this.onError(e as Error);
      }
      if (this.state !== "open") {
        // Lost again while re-registering: lost() started a new loop, which takes these over.
        if (this.state === "reconnecting") this.waiting.unshift(...queued);
        else for (const r of queued) r.reject(this.lostError(r, "the client is closed"));
        return;
      }
      for (const r of queued) this.send(r);
      const waiters = this.reconnectWaiters;
      this.reconnectWaiters = [];
      for (const w of waiters) w.resolve();
      this.onReconnected();
      return;
    }
  }

  private shutdown(err: Error | undefined, why: string): void {
    this.state = "closed";
    const t = this.transport;
    this.transport = undefined;
    t?.close();
    const all = [...this.pending.values(), ...this.waiting];
    this.pending.clear();
    this.waiting = [];
    for (const r of all) r.reject(this.lostError(r, why));
    const waiters = this.reconnectWaiters;
    this.reconnectWaiters = [];
    for (const w of waiters) w.reject(new XenstoreConnectionError(`xenstore client closed: ${why}`));
    this.onClosed(err);
  }
}

/** A short human description of a request for error messages: its first argument (usually the path). */
function describe(req: Request): string {
  const first = splitNul(req.payload)[0];
  return first ? `"${first.length > 120 ? `${first.slice(0, 120)}...` : first}"` : "";
}
