// The shared memory all per-vif counters live in. The main thread creates it, hands `buffer` to each
// worker (postMessage / workerData), and manages slots; workers only flush into slots they were given
// (VifCounters); readers (the HTTP server) only read (readVifStats). Layout: arena-layout.ts.
import {
  ARENA_HEADER_WORDS,
  ARENA_MAGIC,
  COUNTER_COUNT,
  H_COUNTERS,
  H_LAYOUT_ID,
  H_MAGIC,
  H_SLOTS_PER_WORKER,
  H_SLOT_WORDS,
  H_WORKERS,
  LAYOUT_ID,
  SLOT_WORDS,
  S_FIRST_COUNTER,
  S_GENERATION,
  S_IN_USE,
  S_SEQ,
} from "./arena-layout.ts";
import { lockSlot, readSlot, storeCounter, unlockSlot, type SlotSnapshot } from "./slot-seqlock.ts";

/**
 * Names one vif's slot for one tenancy. Plain data, so it crosses postMessage. A reused slot gets a
 * new generation, so a ref kept by a reader after its vif went away reads as "gone", never as the
 * next vif's counters.
 */
export interface SlotRef {
  readonly index: number;
  readonly generation: number;
}

export interface StatsArenaShape {
  workers: number;
  /** How many vifs one worker can serve; fixed because a SharedArrayBuffer cannot grow in place. */
  slotsPerWorker: number;
}

export class StatsError extends Error {
  readonly code = "QNICD_STATS";
  constructor(message: string) {
    super(message);
    this.name = "StatsError";
  }
}

export class StatsArena {
  readonly words: Uint32Array;
  readonly workers: number;
  readonly slotsPerWorker: number;

  private constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Uint32Array(buffer);
    this.workers = this.words[H_WORKERS];
    this.slotsPerWorker = this.words[H_SLOTS_PER_WORKER];
  }

  /** Main thread: a zeroed arena with every slot free. */
  static create(shape: StatsArenaShape): StatsArena {
    const { workers, slotsPerWorker } = shape;
    if (!(Number.isInteger(workers) && workers >= 1 && Number.isInteger(slotsPerWorker) && slotsPerWorker >= 1)) {
      throw new StatsError(`stats arena: workers and slotsPerWorker must be positive integers (got ${workers}, ${slotsPerWorker})`);
    }
    const buffer = new SharedArrayBuffer((ARENA_HEADER_WORDS + workers * slotsPerWorker * SLOT_WORDS) * 4);
    const w = new Uint32Array(buffer);
    w[H_MAGIC] = ARENA_MAGIC;
    w[H_LAYOUT_ID] = LAYOUT_ID;
    w[H_WORKERS] = workers;
    w[H_SLOTS_PER_WORKER] = slotsPerWorker;
    w[H_COUNTERS] = COUNTER_COUNT;
    w[H_SLOT_WORDS] = SLOT_WORDS;
    return new StatsArena(buffer);
  }

  /** Any thread: views an arena created elsewhere, checking it was built from the same counter table. */
  static attach(buffer: SharedArrayBuffer): StatsArena {
    const w = new Uint32Array(buffer, 0, Math.min(ARENA_HEADER_WORDS, buffer.byteLength >> 2));
    if (w.length < ARENA_HEADER_WORDS || w[H_MAGIC] !== ARENA_MAGIC) {
      throw new StatsError("stats arena: buffer is not a stats arena");
    }
    if (w[H_LAYOUT_ID] !== LAYOUT_ID || w[H_COUNTERS] !== COUNTER_COUNT || w[H_SLOT_WORDS] !== SLOT_WORDS) {
      throw new StatsError("stats arena: built from a different counter table (main thread and worker run different code)");
    }
    return new StatsArena(buffer);
  }

  get slotCount(): number {
    return this.workers * this.slotsPerWorker;
  }

  /** First word of slot `index`. */
  slotBase(index: number): number {
    return ARENA_HEADER_WORDS + index * SLOT_WORDS;
  }

  workerOf(ref: SlotRef): number {
    return Math.floor(ref.index / this.slotsPerWorker);
  }

  /**
   * Main thread: takes a free slot of `worker`, zeroed, under a new generation. Throws when the
   * worker already serves slotsPerWorker vifs.
   */
  allocate(worker: number): SlotRef {
    if (!(Number.isInteger(worker) && worker >= 0 && worker < this.workers)) {
      throw new StatsError(`stats arena: no worker ${worker} (arena has ${this.workers})`);
    }
    const first = worker * this.slotsPerWorker;
    for (let index = first; index < first + this.slotsPerWorker; index++) {
      const base = this.slotBase(index);
      if (Atomics.load(this.words, base + S_IN_USE) === 1) continue;
      const seq = lockSlot(this.words, base);
      for (let i = 0; i < COUNTER_COUNT; i++) storeCounter(this.words, base + S_FIRST_COUNTER + 2 * i, 0);
      const generation = (Atomics.load(this.words, base + S_GENERATION) + 1) >>> 0;
      Atomics.store(this.words, base + S_GENERATION, generation);
      Atomics.store(this.words, base + S_IN_USE, 1);
      unlockSlot(this.words, base, seq);
      return { index, generation };
    }
    throw new StatsError(`stats arena: worker ${worker} has no free slot (all ${this.slotsPerWorker} in use)`);
  }

  /**
   * Main thread: frees the slot once its worker has stopped flushing it (after the worker confirms
   * the vif's disconnect). Releasing a ref that is already stale does nothing.
   */
  release(ref: SlotRef): void {
    this.checkIndex(ref.index);
    const base = this.slotBase(ref.index);
    const seq = lockSlot(this.words, base);
    if (Atomics.load(this.words, base + S_GENERATION) === ref.generation) {
      Atomics.store(this.words, base + S_GENERATION, (ref.generation + 1) >>> 0);
      Atomics.store(this.words, base + S_IN_USE, 0);
    }
    unlockSlot(this.words, base, seq);
  }

  /**
   * Main thread, after a worker died: frees all its slots, including one it may have left locked
   * mid-flush (a terminated thread never releases its seqlock).
   */
  resetWorker(worker: number): void {
    const first = worker * this.slotsPerWorker;
    for (let index = first; index < first + this.slotsPerWorker; index++) {
      const base = this.slotBase(index);
      const seq = Atomics.load(this.words, base + S_SEQ);
      Atomics.store(this.words, base + S_SEQ, (seq | 1) >>> 0);
      Atomics.store(this.words, base + S_GENERATION, (Atomics.load(this.words, base + S_GENERATION) + 1) >>> 0);
      Atomics.store(this.words, base + S_IN_USE, 0);
      Atomics.store(this.words, base + S_SEQ, ((seq | 1) + 1) >>> 0);
    }
  }

  /** Refs of every slot in use right now (for aggregate reads). */
  slotsInUse(): SlotRef[] {
    const refs: SlotRef[] = [];
    for (let index = 0; index < this.slotCount; index++) {
      const base = this.slotBase(index);
      if (Atomics.load(this.words, base + S_IN_USE) === 1) {
        refs.push({ index, generation: Atomics.load(this.words, base + S_GENERATION) });
      }
    }
    return refs;
  }

  /**
   * Slot `index`'s write version: it moves with every flush, allocation and release and with
   * nothing else, so a reader that saw the same version before knows the counters did not change
   * and need not read them (an idle vif costs one load). Odd while a writer is mid-update.
   */
  version(index: number): number {
    return Atomics.load(this.words, this.slotBase(index) + S_SEQ);
  }

  /** A consistent copy of slot `index`'s counters into `out` (one number per counter, table order). */
  readInto(index: number, out: number[]): SlotSnapshot {
    this.checkIndex(index);
    return readSlot(this.words, this.slotBase(index), out);
  }

  checkIndex(index: number): void {
    if (!(Number.isInteger(index) && index >= 0 && index < this.slotCount)) {
      throw new StatsError(`stats arena: no slot ${index} (arena has ${this.slotCount})`);
    }
  }
}
