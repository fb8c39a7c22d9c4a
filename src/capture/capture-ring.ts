// Each worker's capture ring: shared memory through which a worker hands the frames of captured vifs
// to the main thread (DESIGN: workers and the main thread meet only in shared memory and the
// mailbox). One producer (the worker, once per batch), one consumer (the main thread's CaptureService).
//
//   header (64 words)   head, tail, version, then CAPTURE_SLOTS entries: id, stats slot index and
//                       generation of the vif, snaplen, records dropped
//   data                records, each 4-byte aligned: byte length, capture id, direction, original
//                       length, captured length, timestamp (microseconds since the epoch, high and
//                       low word), then the captured bytes; a length of WRAP means "continue at 0"
//
// head and tail count bytes (mod 2^32); the data area is a power of two, so a position is
// `count & mask`. The worker never waits for the main thread: a record that does not fit is dropped
// and counted in its entry, so a capture nobody reads costs the data path one compare per batch.
// Only bytes the worker already holds are recorded: a tx frame as grant-copied from each slot's
// (offset, size), never the rest of a granted page (XSA-403), and an rx frame as the host side gave it.

export const CAPTURE_HEADER_WORDS = 64;
export const CAPTURE_HEADER_BYTES = CAPTURE_HEADER_WORDS * 4;
export const H_HEAD = 0;
export const H_TAIL = 1;
/** Bumped by the main thread whenever an entry is added or removed. */
export const H_VERSION = 2;
export const H_FIRST_ENTRY = 8;
export const ENTRY_WORDS = 8;
/** Concurrent captures per worker. */
export const CAPTURE_SLOTS = 6;
export const E_ID = 0;
export const E_SLOT_INDEX = 1;
export const E_SLOT_GENERATION = 2;
export const E_SNAPLEN = 3;
export const E_DROPPED = 4;

export const RECORD_HEADER_BYTES = 28;
export const R_LEN = 0;
export const R_ID = 1;
export const R_DIR = 2;
export const R_ORIG_LEN = 3;
export const R_CAP_LEN = 4;
export const R_TS_HI = 5;
export const R_TS_LO = 6;
export const WRAP = 0xffffffff;

/** Direction of a record, from the guest's side like every counter: tx = sent by the guest. */
export const DIR_GUEST_TX = 0;
export const DIR_GUEST_RX = 1;

/** Per worker: 4 MiB of data. Untouched pages of a SharedArrayBuffer cost no memory until a capture writes them. */
export const DEFAULT_CAPTURE_DATA_BYTES = 1 << 22;

export function createCaptureRing(dataBytes = DEFAULT_CAPTURE_DATA_BYTES): SharedArrayBuffer {
  if (!(Number.isInteger(Math.log2(dataBytes)) && dataBytes >= 4096)) throw new RangeError(`capture ring: data size must be a power of two >= 4096, got ${dataBytes}`);
  return new SharedArrayBuffer(CAPTURE_HEADER_BYTES + dataBytes);
}

export function entryBase(slot: number): number {
  return H_FIRST_ENTRY + slot * ENTRY_WORDS;
}

export interface CaptureRecord {
  id: number;
  dir: number;
  origLen: number;
  /** Microseconds since the epoch. */
  tsMicros: number;
  /** A view into the ring: valid only during the callback. */
  bytes: Uint8Array;
}

/** The main thread's side of one worker's ring: entries in, records out. */
export class CaptureRingReader {
  readonly words: Uint32Array;
  private readonly data: Uint8Array;
  private readonly dataWords: Uint32Array;
  private readonly size: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Uint32Array(buffer);
    this.size = buffer.byteLength - CAPTURE_HEADER_BYTES;
    this.data = new Uint8Array(buffer, CAPTURE_HEADER_BYTES);
    this.dataWords = new Uint32Array(buffer, CAPTURE_HEADER_BYTES);
  }

  /** Starts capturing the vif whose counters live in stats slot (index, generation); returns the entry, or -1 when all are taken. */
  add(id: number, slotIndex: number, generation: number, snaplen: number): number {
    const w = this.words;
    for (let e = 0; e < CAPTURE_SLOTS; e++) {
      const b = entryBase(e);
      if (Atomics.load(w, b + E_ID) !== 0) continue;
      Atomics.store(w, b + E_SLOT_INDEX, slotIndex);
      Atomics.store(w, b + E_SLOT_GENERATION, generation);
      Atomics.store(w, b + E_SNAPLEN, snaplen);
      Atomics.store(w, b + E_DROPPED, 0);
      Atomics.store(w, b + E_ID, id); // last: the worker matches on a non-zero id
      Atomics.add(w, H_VERSION, 1);
      return e;
    }
    return -1;
  }

  /** Records the worker dropped for this entry because the ring was full. */
  dropped(entry: number): number {
    return Atomics.load(this.words, entryBase(entry) + E_DROPPED);
  }

  remove(entry: number): void {
    Atomics.store(this.words, entryBase(entry) + E_ID, 0);
    Atomics.add(this.words, H_VERSION, 1);
  }

  /** Hands every record written so far to `onRecord`, then frees their room. */
  drain(onRecord: (r: CaptureRecord) => void): number {
    const w = this.words;
    const head = Atomics.load(w, H_HEAD);
    let tail = Atomics.load(w, H_TAIL);
    const mask = this.size - 1;
    const dw = this.dataWords;
    let n = 0;
    const rec: CaptureRecord = { id: 0, dir: 0, origLen: 0, tsMicros: 0, bytes: this.data.subarray(0, 0) };
    while (tail !== head) {
      const pos = tail & mask;
      const at = pos >> 2;
      const len = dw[at];
      if (len === WRAP) {
        tail = (tail + (this.size - pos)) >>> 0;
        continue;
      }
      rec.id = dw[at + R_ID];
      rec.dir = dw[at + R_DIR];
      rec.origLen = dw[at + R_ORIG_LEN];
      rec.tsMicros = dw[at + R_TS_HI] * 0x1_0000_0000 + dw[at + R_TS_LO];
      const cap = dw[at + R_CAP_LEN];
      rec.bytes = this.data.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + cap);
      onRecord(rec);
      n++;
      tail = (tail + len) >>> 0;
    }
    Atomics.store(w, H_TAIL, tail);
    return n;
  }
}
