// The xenstore client the daemon and the sim toolstack use: node operations, watches dispatched
// by token, domain operations, transactions, and a connection that survives a xenstored restart.
//
//   const xs = await XenstoreClient.connect({ path: process.env.XENSTORED_PATH! });
//   const w = await xs.watch("backend/vif", (path) => ...);   // fires once right away
//   await xs.transaction(async (tx) => { await tx.write(a, "1"); await tx.write(b, "5"); });
//   xs.on("reconnected", () => rescan());                     // watches are already back
import { EventEmitter } from "node:events";
import { checkPath, nulTerminated, replyString } from "./codec.ts";
import { Connection, type ReconnectOptions } from "./connection.ts";
import { XenstoreConnectionError, XenstoreError } from "./errors.ts";
import { XsNodeOps, type XsTrace } from "./ops.ts";
import { runTransaction, type Transaction, type TransactionOptions } from "./transaction.ts";
import { unixSocketTransport, type TransportFactory } from "./transport.ts";
import { isCharacterDevice, xenbusDeviceTransport } from "./xenbus-device.ts";

export type WatchCallback = (path: string, token: string) => void;

export interface Watch {
  readonly path: string;
  readonly token: string;
  /** Same as client.unwatch(this). */
  unwatch(): Promise<void>;
}

export interface XenstoreClientOptions {
  /** xenstored's Unix socket, or a xenbus character device (/dev/xen/xenbus). */
  path?: string;
  /** Any other transport (e.g. /dev/xen/xenbus); `path` is ignored when this is given. */
  transport?: { factory: TransportFactory; endpoint: string };
  reconnect?: ReconnectOptions;
  trace?: XsTrace;
  /** Where errors that have no caller go (a watch callback that threw, a failed re-registration). */
  onError?: (err: Error) => void;
}

interface WatchEntry {
  path: string;
  token: string;
  callback: WatchCallback;
}

let tokenSerial = 0;

/**
 * Events: "disconnected" (err), "reconnected" (watches already re-registered: re-read the tree),
 * "closed" (err?).
 */
export class XenstoreClient extends XsNodeOps {
  private readonly watches = new Map<string, WatchEntry>();
  private readonly events = new EventEmitter();
  private readonly tokenPrefix = `qnicd-${process.pid}-${++tokenSerial}-`;
  private nextToken = 1;

  private constructor(
    conn: Connection,
    trace: XsTrace | undefined,
    private readonly reportError: (err: Error) => void,
  ) {
    super(conn, 0, trace);
    conn.onError = reportError;
    conn.onWatchEvent = (path, token) => {
      const w = this.watches.get(token);
      if (w) w.callback(path, token);
    };
    conn.onReconnect = () => this.reregisterWatches();
    conn.onDisconnected = (err) => this.events.emit("disconnected", err);
    conn.onReconnected = () => this.events.emit("reconnected");
    conn.onClosed = (err) => this.events.emit("closed", err);
  }

  static async connect(opts: XenstoreClientOptions): Promise<XenstoreClient> {
    let factory: TransportFactory;
    let endpoint: string;
    if (opts.transport) ({ factory, endpoint } = opts.transport);
    else if (opts.path) {
      factory = isCharacterDevice(opts.path) ? xenbusDeviceTransport(opts.path) : unixSocketTransport(opts.path);
      endpoint = opts.path;
    } else throw new XenstoreError("EINVAL", "XenstoreClient.connect: give a socket path or a transport");
    const conn = await Connection.open(factory, endpoint, opts.reconnect);
    return new XenstoreClient(conn, opts.trace, opts.onError ?? ((e) => console.error(`xenstore: ${e.message}`)));
  }

  on(event: "disconnected", fn: (err: Error) => void): this;
  on(event: "reconnected", fn: () => void): this;
  on(event: "closed", fn: (err?: Error) => void): this;
  on(event: string, fn: (...args: any[]) => void): this {
    this.events.on(event, fn);
    return this;
  }
  off(event: string, fn: (...args: any[]) => void): this {
    this.events.off(event, fn);
    return this;
  }

  get connected(): boolean {
    return this.conn.isOpen;
  }

  /**
   * Registers a watch on `path` (and everything below it). xenstored fires it once right after
   * registration, then on every change. If the connection drops, the watch is re-registered after
   * reconnecting (and fires once again then).
   */
  async watch(path: string, callback: WatchCallback): Promise<Watch> {
    checkPath(path);
    const token = `${this.tokenPrefix}${this.nextToken++}`;
    const entry: WatchEntry = { path, token, callback };
    this.watches.set(token, entry);
    try {
      await this.call("WATCH", [path, token], nulTerminated(path, token));
    } catch (e) {
      // Lost with the connection: reregisterWatches() sends it once xenstored is back.
      if (e instanceof XenstoreConnectionError && !this.conn.isClosed && this.watches.has(token)) {
        await this.conn.whenReconnected();
      } else {
        this.watches.delete(token);
        throw e;
      }
    }
    return { path, token, unwatch: () => this.unwatch({ path, token }) };
  }

  /** Stops a watch. Its callback is never called again, even for events already on the wire. */
  async unwatch(w: { path: string; token: string }): Promise<void> {
    if (!this.watches.delete(w.token)) return;
    if (!this.conn.isOpen) return; // nothing registered on the server side right now
    await this.call("UNWATCH", [w.path, w.token], nulTerminated(w.path, w.token));
  }

  /** Drops every watch of this connection in xenstored (and locally). */
  async resetWatches(): Promise<void> {
    this.watches.clear();
    await this.call("RESET_WATCHES", [], nulTerminated(""));
  }

  async getDomainPath(domid: number): Promise<string> {
    return replyString(await this.call("GET_DOMAIN_PATH", [String(domid)], nulTerminated(String(domid)), true));
  }

  /** INTRODUCE: tells xenstored about a domain's store ring; fires @introduceDomain. */
  async introduce(domid: number, mfn: number | bigint, port: number): Promise<void> {
    const args = [String(domid), String(mfn), String(port)];
    await this.call("INTRODUCE", args, nulTerminated(...args));
  }

  /** RELEASE: xenstored forgets the domain; fires @releaseDomain. */
  async release(domid: number): Promise<void> {
    await this.call("RELEASE", [String(domid)], nulTerminated(String(domid)));
  }

  async isDomainIntroduced(domid: number): Promise<boolean> {
    const r = replyString(await this.call("IS_DOMAIN_INTRODUCED", [String(domid)], nulTerminated(String(domid)), true));
    return r === "T";
  }

  /**
   * Runs `fn` inside a transaction and commits. On EAGAIN the whole of `fn` runs again (so it must
   * not have side effects outside the transaction); gives up with XenstoreTransactionConflictError
   * after `maxAttempts`. If `fn` throws, the transaction is aborted and the error rethrown.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>, opts?: TransactionOptions): Promise<T> {
    return runTransaction(this.conn, fn, opts, this.trace);
  }

  close(): void {
    this.watches.clear();
    this.conn.close();
  }

  private async reregisterWatches(): Promise<void> {
    await Promise.all(
      [...this.watches.values()].map(async (w) => {
        try {
          await this.call("WATCH", [w.path, w.token], nulTerminated(w.path, w.token));
        } catch (e) {
          this.reportError(new XenstoreError((e as XenstoreError).code ?? "EIO", `re-registering the watch on ${w.path} failed: ${(e as Error).message}`));
        }
      }),
    );
  }
}

