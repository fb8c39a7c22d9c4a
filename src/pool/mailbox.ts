// One worker's control mailbox: a SharedArrayBuffer shared by the main thread and that worker.
//
//   words 0..15    ring indices and the reply doorbell
//   words 16..31   the worker's device registry (what the main thread must release if it dies)
//   words 32..     the registry's mapping table (4 words per grant mapping)
//   bytes ...      main -> worker ring, then worker -> main ring (ByteRing, JSON records)
//
// Main -> worker: write a record, then signal the worker's eventfd (it sleeps in poll()).
// Worker -> main: write a record, then Atomics.add + Atomics.notify on REPLY_DOORBELL, which the
// main thread awaits with Atomics.waitAsync (22 us, no busy polling: BUN-FACTS "Waking a worker").
// Control messages are rare (connect, disconnect, exit), so JSON bodies cost nothing that matters
// and carry the spec's strings without a fixed-size field that some key would overflow.
import { ByteRing } from "./byte-ring.ts";
import type { ToMain, ToWorker } from "./messages.ts";

const W_TO_WORKER_HEAD = 0;
const W_TO_WORKER_TAIL = 1;
const W_TO_MAIN_HEAD = 2;
const W_TO_MAIN_TAIL = 3;
/** Bumped by the worker after each record it writes; the main thread waits on it. */
export const W_REPLY_DOORBELL = 4;
/** Set by the worker when its replies did not fit: the main thread wakes it after draining. */
export const W_WORKER_BLOCKED = 5;

export const REGISTRY_WORD = 16;
export const MAP_TABLE_WORD = 32;

const RING_BYTES = 64 * 1024;

export function mailboxBytes(maxMappings: number): number {
  const words = MAP_TABLE_WORD + 4 * maxMappings;
  const header = Math.ceil((words * 4) / 64) * 64;
  return header + 2 * RING_BYTES;
}

function ringOffset(buffer: SharedArrayBuffer): number {
  return buffer.byteLength - 2 * RING_BYTES;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The main thread's end. */
export class MainMailbox {
  readonly words: Int32Array;
  private readonly out: ByteRing;
  private readonly in: ByteRing;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
    const off = ringOffset(buffer);
    this.out = new ByteRing(buffer, W_TO_WORKER_HEAD, W_TO_WORKER_TAIL, off, RING_BYTES);
    this.in = new ByteRing(buffer, W_TO_MAIN_HEAD, W_TO_MAIN_TAIL, off + RING_BYTES, RING_BYTES);
  }

  static create(maxMappings: number): MainMailbox {
    return new MainMailbox(new SharedArrayBuffer(mailboxBytes(maxMappings)));
  }

  /** False when the ring is full: the caller keeps the message and retries after a reply. */
  send(msg: ToWorker): boolean {
    return this.out.write(enc.encode(JSON.stringify(msg)));
  }

  receive(): ToMain | null {
    const r = this.in.read();
    return r ? (JSON.parse(dec.decode(r)) as ToMain) : null;
  }

  doorbell(): number {
    return Atomics.load(this.words, W_REPLY_DOORBELL);
  }
}

/** The worker's end. */
export class WorkerMailbox {
  readonly words: Int32Array;
  private readonly in: ByteRing;
  private readonly out: ByteRing;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
    const off = ringOffset(buffer);
    this.in = new ByteRing(buffer, W_TO_WORKER_HEAD, W_TO_WORKER_TAIL, off, RING_BYTES);
    this.out = new ByteRing(buffer, W_TO_MAIN_HEAD, W_TO_MAIN_TAIL, off + RING_BYTES, RING_BYTES);
  }

  receive(): ToWorker | null {
    const r = this.in.read();
    return r ? (JSON.parse(dec.decode(r)) as ToWorker) : null;
  }

  /** False when the main thread has not drained its ring yet (W_WORKER_BLOCKED is then set). */
  send(msg: ToMain): boolean {
    if (!this.out.write(enc.encode(JSON.stringify(msg)))) {
      Atomics.store(this.words, W_WORKER_BLOCKED, 1);
      return false;
    }
    Atomics.add(this.words, W_REPLY_DOORBELL, 1);
    Atomics.notify(this.words, W_REPLY_DOORBELL);
    return true;
  }
}
