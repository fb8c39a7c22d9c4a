// The worker's side of its capture ring (src/capture/capture-ring.ts). Per wake-up one Atomics load
// tells whether the set of captures changed; per batch of a captured vif, record headers are written
// here and the frames' bytes copied in ONE native call (qw_gather), then the new head is published.
// Never waits: what does not fit is dropped and counted for the main thread to report.
import { ptr, type Pointer } from "bun:ffi";
import {
  CAPTURE_HEADER_BYTES,
  CAPTURE_SLOTS,
  E_DROPPED,
  E_ID,
  E_SLOT_GENERATION,
  E_SLOT_INDEX,
  E_SNAPLEN,
  entryBase,
  H_HEAD,
  H_TAIL,
  H_VERSION,
  RECORD_HEADER_BYTES,
  R_CAP_LEN,
  R_DIR,
  R_ID,
  R_LEN,
  R_ORIG_LEN,
  R_TS_HI,
  R_TS_LO,
  WRAP,
} from "../src/capture/capture-ring.ts";
import { workerNative } from "../src/pool/worker-native.ts";
import type { SlotRef } from "../src/stats/index.ts";

/** Most frames one write() records: a tx batch (<= 256) or an rx receive batch. */
const MAX_BATCH = 256;
const TWO32 = 0x1_0000_0000;

export class CaptureWriter {
  /** Whether any capture is running on this worker (checked per vif per batch). */
  active = false;
  private readonly words: Uint32Array;
  private readonly data: Uint32Array;
  /** Kept for the worker's life: native code writes through its address (BUN-FACTS pitfall 2). */
  private readonly bytes: Uint8Array;
  private readonly addr: number;
  private readonly size: number;
  private readonly mask: number;
  private version = -1;
  private head: number;
  // The entries as last read (refresh), so a batch looks them up without Atomics.
  private readonly ids = new Uint32Array(CAPTURE_SLOTS);
  private readonly slotIndex = new Int32Array(CAPTURE_SLOTS).fill(-1);
  private readonly slotGeneration = new Uint32Array(CAPTURE_SLOTS);
  private readonly snaplen = new Uint32Array(CAPTURE_SLOTS);
  private readonly dropped = new Uint32Array(CAPTURE_SLOTS);
  // qw_gather's arguments, reused.
  private readonly dstOff = new Uint32Array(MAX_BATCH);
  private readonly srcIdx = new Uint32Array(MAX_BATCH);
  private readonly capLen = new Uint32Array(MAX_BATCH);

  constructor(buffer: SharedArrayBuffer) {
    this.words = new Uint32Array(buffer);
    this.size = buffer.byteLength - CAPTURE_HEADER_BYTES;
    this.mask = this.size - 1;
    this.data = new Uint32Array(buffer, CAPTURE_HEADER_BYTES);
    this.bytes = new Uint8Array(buffer, CAPTURE_HEADER_BYTES);
    this.addr = ptr(this.bytes);
    this.head = Atomics.load(this.words, H_HEAD);
  }

  /** Once per wake-up: re-reads the entries if the main thread changed them. */
  refresh(): void {
    const v = Atomics.load(this.words, H_VERSION);
    if (v === this.version) return;
    this.version = v;
    let any = false;
    for (let e = 0; e < CAPTURE_SLOTS; e++) {
      const b = entryBase(e);
      const id = Atomics.load(this.words, b + E_ID);
      if (id !== this.ids[e]) this.dropped[e] = 0; // a new capture in this entry
      this.ids[e] = id;
      if (id === 0) {
        this.slotIndex[e] = -1;
        continue;
      }
      any = true;
      this.slotIndex[e] = Atomics.load(this.words, b + E_SLOT_INDEX);
      this.slotGeneration[e] = Atomics.load(this.words, b + E_SLOT_GENERATION);
      this.snaplen[e] = Atomics.load(this.words, b + E_SNAPLEN);
    }
    this.active = any;
  }

  /** The entry capturing the vif whose counters are in `ref`, or -1. */
  entryFor(ref: SlotRef): number {
    for (let e = 0; e < CAPTURE_SLOTS; e++) if (this.slotIndex[e] === ref.index && this.slotGeneration[e] === ref.generation) return e;
    return -1;
  }

  /**
   * Records frames 0..n-1 of a batch (frame i at base + i * stride, lens[i] bytes) for `entry`:
   * each cut to the capture's snaplen and to the stride (a frame never reads past its own slot).
   */
  write(entry: number, dir: number, base: number, stride: number, lens: Uint32Array, n: number): void {
    if (n <= 0) return;
    if (n > MAX_BATCH) n = MAX_BATCH;
    const id = this.ids[entry];
    if (id === 0) return;
    const snap = this.snaplen[entry];
    const size = this.size;
    const mask = this.mask;
    const d = this.data;
    const tail = Atomics.load(this.words, H_TAIL);
    const now = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    const tsHi = Math.floor(now / TWO32);
    const tsLo = now >>> 0;
    let head = this.head;
    let m = 0;
    let lost = 0;
    for (let i = 0; i < n; i++) {
      const orig = lens[i];
      let cap = orig < snap ? orig : snap;
      if (cap > stride) cap = stride;
      const rec = (RECORD_HEADER_BYTES + cap + 3) & ~3;
      let pos = head & mask;
      const free = size - ((head - tail) >>> 0);
      const wrap = pos + rec > size ? size - pos : 0;
      if (rec + wrap > free) {
        lost++;
        continue;
      }
      if (wrap) {
        d[pos >> 2] = WRAP;
        head = (head + wrap) >>> 0;
        pos = 0;
      }
      const at = pos >> 2;
      d[at + R_LEN] = rec;
      d[at + R_ID] = id;
      d[at + R_DIR] = dir;
      d[at + R_ORIG_LEN] = orig;
      d[at + R_CAP_LEN] = cap;
      d[at + R_TS_HI] = tsHi;
      d[at + R_TS_LO] = tsLo;
      this.dstOff[m] = pos + RECORD_HEADER_BYTES;
      this.srcIdx[m] = i;
      this.capLen[m++] = cap;
      head = (head + rec) >>> 0;
    }
    if (m > 0) workerNative().qw_gather(this.addr as Pointer, this.dstOff, base as Pointer, stride, this.srcIdx, this.capLen, m);
    this.head = head;
    // Published after the bytes are in: the reader's Atomics.load of head sees all of them.
    Atomics.store(this.words, H_HEAD, head);
    if (lost > 0) {
      this.dropped[entry] += lost;
      Atomics.store(this.words, entryBase(entry) + E_DROPPED, this.dropped[entry]);
    }
  }
}
