// One client connection: request framing in, replies and watch events out, with bounded memory.
//
// Requests are handled strictly in order; a handler may be asynchronous (INTRODUCE waits for the
// guest socket to listen) and later requests wait for it. Output goes to the socket while the
// socket's own buffer is small, otherwise into a queue here. A client that stops reading cannot make
// the daemon grow: above `outputBytes` queued, its watch events are dropped (as xenstored drops
// events beyond a domain's memory quota) and its requests are no longer read (as xenstored stops
// reading a domain with too many outstanding replies) until it drains. Other clients are unaffected.
//
// What is handed to the socket in one turn (the replies to a chunk of requests, the events of a
// transaction's commit) leaves in one socket write at the end of that turn: a write per message cost
// a system call and a wake-up of the reader each, half of this xenstored's time with 1000 vifs
// connecting (bench/vif-cost.ts). The order on the wire is unchanged.
import type { Socket } from "node:net";
import { XsOp, XENSTORE_PAYLOAD_MAX, XS_HEADER_SIZE } from "../../xen/xs-wire.ts";
import type { Caller } from "./perms.ts";
import type { Quotas } from "./quotas.ts";
import type { Transaction } from "./transaction.ts";
import { WatchList, type WatchSubscriber } from "./watches.ts";
import { encodeFrame, FrameReader, OversizedFrameError, type Frame } from "./wire.ts";

/** Stop handing data to the socket once this much sits in its user-space buffer. */
const SOCKET_HIGH_WATER = 64 * 1024;

interface Pending {
  buf: Buffer;
  /** Set for watch events: identical pending events are coalesced, like xenstored. */
  eventKey?: string;
}

export type FrameHandler = (conn: Connection, frame: Frame) => void | Promise<void>;

let nextConnectionId = 1;

export class Connection implements WatchSubscriber {
  readonly id = nextConnectionId++;
  readonly watches = new WatchList();
  readonly transactions = new Map<number, Transaction>();
  nextTransactionId = 1;
  droppedEvents = 0;
  closed = false;

  private readonly reader = new FrameReader();
  private readonly queue: Pending[] = [];
  private queuedBytes = 0;
  private queuedEvents = 0;
  private readonly pendingEventKeys = new Set<string>();
  private busy = false;
  private paused = false;
  /** Frames handed over this turn, written together by writeBatch(). */
  private batch: Buffer[] = [];
  private batchBytes = 0;

  constructor(
    private readonly socket: Socket,
    readonly caller: Caller,
    private readonly quotas: Quotas,
    private readonly handler: FrameHandler,
    private readonly log: (line: string) => void,
    private readonly onClose: (conn: Connection) => void,
  ) {
    socket.on("data", (chunk: Buffer) => {
      this.reader.push(chunk);
      this.pump();
    });
    socket.on("drain", () => this.flush());
    socket.on("error", (err) => this.log(`conn ${this.id} (dom${caller.domid}): socket error: ${err.message}`));
    socket.on("close", () => this.teardown());
  }

  get label(): string {
    return `conn ${this.id} (dom${this.caller.domid})`;
  }

  /** Bytes waiting in this connection's own queue (not yet given to the socket). */
  get pendingOutputBytes(): number {
    return this.queuedBytes;
  }

  sendReply(type: number, reqId: number, txId: number, payload: Uint8Array): void {
    if (this.closed) return;
    this.enqueue({ buf: encodeFrame(type, reqId, txId, payload) });
  }

  sendEvent(path: string, token: string): void {
    if (this.closed) return;
    const body = `${path}\0${token}\0`;
    if (body.length > XENSTORE_PAYLOAD_MAX) return; // xenstored never sends over-long events
    const key = path.startsWith("@") ? undefined : body;
    if (key !== undefined && this.pendingEventKeys.has(key)) return;
    if (
      this.queuedEvents >= this.quotas.pendingWatchEvents ||
      this.queuedBytes + XS_HEADER_SIZE + body.length > this.quotas.outputBytes
    ) {
      if (this.droppedEvents++ % 1000 === 0) this.log(`${this.label}: not reading, dropping watch events (${this.droppedEvents})`);
      return;
    }
    this.enqueue({ buf: encodeFrame(XsOp.WATCH_EVENT, 0, 0, Buffer.from(body, "latin1")), eventKey: key ?? "" });
  }

  close(): void {
    if (this.closed) return;
    this.writeBatch(); // what was answered before the close still goes out, as before batching
    this.socket.destroy();
    this.teardown();
  }

  private enqueue(p: Pending): void {
    this.queue.push(p);
    this.queuedBytes += p.buf.length;
    if (p.eventKey !== undefined) {
      this.queuedEvents++;
      if (p.eventKey) this.pendingEventKeys.add(p.eventKey);
    }
    this.flush();
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed && this.socket.writableLength + this.batchBytes < SOCKET_HIGH_WATER) {
      const p = this.queue.shift()!;
      this.queuedBytes -= p.buf.length;
      if (p.eventKey !== undefined) {
        this.queuedEvents--;
        if (p.eventKey) this.pendingEventKeys.delete(p.eventKey);
      }
      if (this.batch.length === 0) queueMicrotask(() => this.writeBatch());
      this.batch.push(p.buf);
      this.batchBytes += p.buf.length;
    }
    if (this.paused && this.queuedBytes <= this.quotas.outputBytes) {
      this.paused = false;
      this.socket.resume();
      this.pump();
    }
  }

  private writeBatch(): void {
    const parts = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    if (this.closed || parts.length === 0) return;
    this.socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    // A batch stops at the high-water mark: more may be waiting for a socket that took it all
    // (then no "drain" comes to carry on).
    if (this.queue.length > 0) this.flush();
  }

  /** Handle buffered requests in order until one is asynchronous or output is over its bound. */
  private pump(): void {
    while (!this.closed && !this.busy) {
      if (this.queuedBytes > this.quotas.outputBytes) {
        if (!this.paused) {
          this.paused = true;
          this.socket.pause();
          this.log(`${this.label}: output queue full, not reading requests until it drains`);
        }
        return;
      }
      let frame: Frame | undefined;
      try {
        frame = this.reader.next();
      } catch (e) {
        if (e instanceof OversizedFrameError) {
          // xenstored drops a client that exceeds XENSTORE_PAYLOAD_MAX; nothing after it can be parsed.
          this.log(`${this.label}: ${e.message}, closing connection`);
          this.close();
          return;
        }
        throw e;
      }
      if (!frame) return;
      const r = this.handler(this, frame);
      if (r instanceof Promise) {
        this.busy = true;
        r.finally(() => {
          this.busy = false;
          this.pump();
        });
        return;
      }
    }
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.pendingEventKeys.clear();
    this.watches.clear();
    this.transactions.clear();
    this.onClose(this);
  }
}
