// Frames waiting for the guest to post rx buffers, bounded in BYTES (XSA-392: a guest that stops
// consuming must not make the backend hold memory without limit). Linux netback bounds its rx queue
// at half the ring in pages (128 x 4096 = 512 KiB) and drops past it; so do we, by default.
//
// Frames are packed into one native buffer (a byte ring), so a queued frame is grant-copied into
// the guest straight from here, by address, in the same batched copy call as fresh frames. Each
// frame is charged at least MIN_CHARGE bytes, so the bookkeeping per frame is bounded too.
// Removal is two-step: take(n) the frames a copy will use (they stop counting against the limit at
// once), commit() once the copy is done: frames appended meanwhile never overwrite memory the pending
// copy reads.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { peerio } from "../src/net/peerio-lib.ts";

/** Linux's default: XEN_NETIF_RX_RING_SIZE / 2 pages. */
export const DEFAULT_RX_QUEUE_BYTES = 128 * 4096;
/** Smallest charge per frame: a 14-byte frame still costs an entry and a wrap's slack. */
export const MIN_CHARGE = 64;
/** Largest frame the queue holds by default (a page less NET_IP_ALIGN); a GSO vif's queue takes 64 KiB ones. */
const MAX_FRAME = 4094;

export class RxQueue {
  readonly limit: number;
  /** Charged bytes of the frames held (the counter `rx_queue_bytes`). */
  bytes = 0;
  private readonly addr: number;
  /** The queue's memory (frames at addrOf(i) - base), read by the rx path to hash a queued frame. */
  readonly mem: Uint8Array;
  private readonly size: number;
  private readonly entOff: Uint32Array;
  private readonly entLen: Uint32Array;
  private readonly entMeta: Uint32Array;
  /** performance.now() when each frame was queued (for the drain timeout). */
  private readonly entTime: Float64Array;
  private readonly entCap: number;
  readonly maxFrame: number;
  /** Entries: [head, tail) in a ring of entCap; byte ring: data in [rhead, rtail) with wrap. */
  private head = 0;
  /** Entries held in memory, including `inflight` ones taken for a copy not yet committed. */
  private count = 0;
  private inflight = 0;
  private rtail = 0;
  private freed = false;

  constructor(limit = DEFAULT_RX_QUEUE_BYTES, maxFrame = MAX_FRAME) {
    if (!Number.isInteger(limit) || limit < MIN_CHARGE) throw new RangeError(`rx queue: limit must be an integer >= ${MIN_CHARGE} bytes, got ${limit}`);
    this.limit = limit;
    this.maxFrame = maxFrame;
    // Room for `limit` bytes of frames plus one frame of slack left unused at a wrap.
    this.size = limit + maxFrame + 64;
    this.entCap = Math.floor(limit / MIN_CHARGE) + 1;
    // One native block: the frames, the entry tables, then the enqueue times (every part 64-byte
    // aligned). pio_alloc's pages cost memory only once written, and the queue fills each from its
    // start after every time it drains, so a vif pays for its deepest backlog, and an idle one (most
    // of them) for nothing: not limit bytes up front. Its start is `base`, what pio_free releases.
    const framesBytes = Math.ceil(this.size / 64) * 64;
    const entBytes = Math.ceil((this.entCap * 4) / 64) * 64;
    const total = framesBytes + 3 * entBytes + this.entCap * 8;
    const a = peerio().pio_alloc(total) as number | null;
    if (!a) throw new Error(`rx queue: allocating ${total} bytes of native memory failed: lower rxQueueBytes`);
    this.addr = a;
    const all = toArrayBuffer(a, 0, total);
    this.mem = new Uint8Array(all, 0, this.size);
    this.entOff = new Uint32Array(all, framesBytes, this.entCap);
    this.entLen = new Uint32Array(all, framesBytes + entBytes, this.entCap);
    this.entMeta = new Uint32Array(all, framesBytes + 2 * entBytes, this.entCap);
    this.entTime = new Float64Array(all, framesBytes + 3 * entBytes, this.entCap);
  }

  /** Frames waiting (not counting those taken for a copy in flight). */
  get length(): number {
    return this.count - this.inflight;
  }

  /**
   * Makes room for a `len`-byte frame and records it: returns its offset in the queue's memory,
   * where the caller copies it (natively, batched: see RxPath), or -1 (nothing kept) past the limit.
   */
  reserve(len: number, meta = 0): number {
    const charge = len < MIN_CHARGE ? MIN_CHARGE : len;
    if (len > this.maxFrame || this.bytes + charge > this.limit || this.count === this.entCap) return -1;
    let at = this.rtail;
    if (this.count > 0) {
      const h = this.entOff[this.head];
      // Data lives in [h, rtail) when rtail > h, else in [h, size) + [0, rtail).
      if (at >= h) {
        if (at + len > this.size) {
          if (len >= h) return -1; // no contiguous room before the oldest frame (equal would read as empty)
          at = 0;
        }
      } else if (at + len >= h) return -1;
    } else at = 0;
    const e = (this.head + this.count) % this.entCap;
    this.entOff[e] = at;
    this.entLen[e] = len;
    this.entMeta[e] = meta;
    this.entTime[e] = 0; // stamped by stamp() when someone next reads the clock (it costs ~200 ns here)
    this.count++;
    this.rtail = at + len;
    this.bytes += charge;
    return at;
  }

  /** Native address of the queue's memory (reserve() offsets are relative to it; what pio_free releases). */
  get base(): number {
    return this.addr;
  }

  /** Copies `len` bytes of `src` at `from` into the queue (tests, tools); false past the limit. */
  push(src: Uint8Array, from: number, len: number): boolean {
    const at = this.reserve(len);
    if (at < 0) return false;
    this.mem.set(src.subarray(from, from + len), at);
    return true;
  }

  /** Native address of the i-th waiting frame (0 = oldest). */
  addrOf(i: number): number {
    return this.addr + this.entOff[(this.head + this.inflight + i) % this.entCap];
  }

  lenOf(i: number): number {
    return this.entLen[(this.head + this.inflight + i) % this.entCap];
  }

  metaOf(i: number): number {
    return this.entMeta[(this.head + this.inflight + i) % this.entCap];
  }

  /**
   * Drops the waiting frames queued at or before `deadline` (oldest first: they were queued in
   * order), as netback's xenvif_rx_queue_drop_expired; returns how many. Only with no copy in flight.
   */
  expireBefore(deadline: number): number {
    if (this.inflight !== 0) return 0;
    let n = 0;
    while (n < this.count && this.entTime[(this.head + n) % this.entCap] <= deadline) n++;
    if (n > 0) {
      this.take(n);
      this.commit();
    }
    return n;
  }

  /**
   * Gives the frames queued since the last call the time `now` (they were queued at or before it):
   * the data path never reads the clock per frame or per round, only when frames are left waiting.
   * A frame's drain timeout may so start up to one pass late.
   */
  stamp(now: number): void {
    for (let i = this.count - 1; i >= 0; i--) {
      const e = (this.head + i) % this.entCap;
      if (this.entTime[e] !== 0) return;
      this.entTime[e] = now;
    }
  }

  /** When the oldest waiting frame was queued (the queue must not be empty). */
  oldestTime(): number {
    return this.entTime[(this.head + this.inflight) % this.entCap];
  }

  /** The `n` oldest waiting frames go to a copy: no longer waiting or charged; memory kept until commit(). */
  take(n: number): void {
    for (let i = 0; i < n && this.inflight < this.count; i++) {
      const len = this.lenOf(0);
      this.bytes -= len < MIN_CHARGE ? MIN_CHARGE : len;
      this.inflight++;
    }
  }

  /** Releases the frames taken (after the copy that used them). */
  commit(): void {
    this.head = (this.head + this.inflight) % this.entCap;
    this.count -= this.inflight;
    this.inflight = 0;
    if (this.count === 0) {
      this.head = 0;
      this.rtail = 0;
      this.bytes = 0;
    }
  }

  /** Drops every waiting frame; returns how many that was. */
  purge(): number {
    const n = this.length;
    this.take(n);
    this.commit();
    return n;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    peerio().pio_free(this.addr as Pointer);
  }
}
