// The worker's side: one VifCounters per vif it serves. The data path increments plain number fields
// (`c.tx_packets++`, ~1.5 ns) and calls flush() once per batch to publish them (BUN-FACTS "Stats
// counters"): per-packet Atomics, or counters shared between workers, would cost several times that.
import { COUNTER_COUNT, S_FIRST_COUNTER, S_GENERATION, S_IN_USE } from "./arena-layout.ts";
import { VIF_COUNTER_NAMES, type VifCounterName } from "./counter-table.ts";
import { readSlot, readerWaiting, storeCounter, tryLockSlot, unlockSlot } from "./slot-seqlock.ts";
import { StatsError, type SlotRef, type StatsArena } from "./stats-arena.ts";

type CounterFields = { [K in VifCounterName]: number };

// Declaration merging gives the class one typed field per row of the counter table.
export interface VifCounters extends CounterFields {}

export class VifCounters {
  readonly #words: Uint32Array;
  readonly #base: number;
  readonly #generation: number;
  /** What the last flush stored, per counter: a flush writes only the counters that moved since. */
  readonly #published = new Float64Array(COUNTER_COUNT);
  #detached = false;

  /**
   * Starts from the slot's published values: zero for a fresh slot, the previous totals when a vif
   * moves between workers, so counters never go backwards.
   */
  constructor(arena: StatsArena, readonly ref: SlotRef) {
    arena.checkIndex(ref.index);
    this.#words = arena.words;
    this.#base = arena.slotBase(ref.index);
    this.#generation = ref.generation;
    const now = new Array<number>(COUNTER_COUNT).fill(0);
    const snap = readSlot(this.#words, this.#base, now);
    if (!snap.inUse || snap.generation !== ref.generation) {
      throw new StatsError(`stats slot ${ref.index} generation ${ref.generation} is not allocated`);
    }
    // Every field is created here, in table order, so all instances share one object shape.
    for (let i = 0; i < COUNTER_COUNT; i++) (this as CounterFields)[VIF_COUNTER_NAMES[i]] = this.#published[i] = now[i];
  }

  /** False once the slot was released or reused under us: this object's flushes go nowhere. */
  get attached(): boolean {
    return !this.#detached;
  }

  /**
   * Publishes every field to shared memory as one consistent snapshot. Returns false when nothing
   * was written: a reader or the main thread is using the slot right now (the next flush carries
   * the same totals, so nothing is lost), or the slot no longer belongs to this vif.
   */
  flush(): boolean {
    if (this.#detached) return false;
    const words = this.#words;
    const base = this.#base;
    if (readerWaiting(words, base)) return false;
    const seq = tryLockSlot(words, base);
    if (seq < 0) return false;
    // Checked under the lock: the main thread changes generation only while holding it.
    if (Atomics.load(words, base + S_GENERATION) !== this.#generation || Atomics.load(words, base + S_IN_USE) !== 1) {
      this.#detached = true;
      unlockSlot(words, base, seq);
      return false;
    }
    // Most of the table (the by-reason rows) stays still batch after batch: comparing is a plain
    // load, storing is two Atomics stores, so only what moved is stored. Readers read every word
    // under the seqlock either way; unchanged words already hold these values.
    const self = this as CounterFields;
    const published = this.#published;
    for (let i = 0, at = base + S_FIRST_COUNTER; i < COUNTER_COUNT; i++, at += 2) {
      const v = self[VIF_COUNTER_NAMES[i]];
      if (v === published[i]) continue;
      storeCounter(words, at, v);
      published[i] = v;
    }
    unlockSlot(words, base, seq);
    return true;
  }
}
