// The per-slot seqlock. Writers (the worker flushing, or the main thread allocating) take it with a
// CAS from even to odd, write every word with Atomics.store, and release it at the next even value.
// Readers read seq, the words, seq again, and retry if seq moved or was odd. A worker flushing
// back to back can leave no gap long enough for a read, so a reader that keeps failing raises the
// slot's readers-waiting count and writers skip flushes until it is done: readers always finish, and
// writers never block (a skipped flush loses nothing, as every flush publishes running totals). Every access is an Atomics op: plain loads and stores may be reordered across the seq updates
// (BUN-FACTS: "Shared memory"), which is exactly the tearing this exists to prevent.
import { S_FIRST_COUNTER, S_GENERATION, S_IN_USE, S_READERS_WAITING, S_SEQ, TWO_32 } from "./arena-layout.ts";

/** Whether a reader is waiting for writers to stand back (checked by flushes, not by slot management). */
export function readerWaiting(words: Uint32Array, base: number): boolean {
  return Atomics.load(words, base + S_READERS_WAITING) !== 0;
}

/** Takes the slot's lock. Returns the seq to pass to unlockSlot, or -1 if another writer holds it. */
export function tryLockSlot(words: Uint32Array, base: number): number {
  const seq = Atomics.load(words, base + S_SEQ);
  if (seq & 1) return -1;
  return Atomics.compareExchange(words, base + S_SEQ, seq, (seq + 1) >>> 0) === seq ? seq : -1;
}

export function unlockSlot(words: Uint32Array, base: number, seq: number): void {
  Atomics.store(words, base + S_SEQ, (seq + 2) >>> 0);
}

/**
 * Takes the lock, spinning while another writer holds it. Only for the main thread's rare slot
 * management, where the other writer can only be a stale flush that finishes within a few stores.
 */
export function lockSlot(words: Uint32Array, base: number): number {
  for (let i = 0; i < SPIN_LIMIT; i++) {
    const seq = tryLockSlot(words, base);
    if (seq >= 0) return seq;
  }
  throw new StatsLockError(base);
}

/** Writes a non-negative integer below 2^53 as two words (only while holding the lock). */
export function storeCounter(words: Uint32Array, at: number, value: number): void {
  Atomics.store(words, at, value >>> 0);
  Atomics.store(words, at + 1, (value / TWO_32) >>> 0);
}

export interface SlotSnapshot {
  generation: number;
  inUse: boolean;
}

/**
 * Reads a consistent copy of a slot's counters into `out` (one number per counter). Retries while a
 * writer is mid-update; throws only if a writer seems to have died holding the lock.
 */
export function readSlot(words: Uint32Array, base: number, out: number[]): SlotSnapshot {
  const n = out.length;
  let announced = false;
  try {
    for (let attempt = 0; attempt < SPIN_LIMIT; attempt++) {
      if (attempt === READER_PATIENCE) {
        Atomics.add(words, base + S_READERS_WAITING, 1);
        announced = true;
      }
      const before = Atomics.load(words, base + S_SEQ);
      if (before & 1) continue;
      const generation = Atomics.load(words, base + S_GENERATION);
      const inUse = Atomics.load(words, base + S_IN_USE) === 1;
      for (let i = 0, at = base + S_FIRST_COUNTER; i < n; i++, at += 2) {
        out[i] = Atomics.load(words, at + 1) * TWO_32 + Atomics.load(words, at);
      }
      if (Atomics.load(words, base + S_SEQ) === before) return { generation, inUse };
    }
    throw new StatsLockError(base);
  } finally {
    if (announced) Atomics.sub(words, base + S_READERS_WAITING, 1);
  }
}

/** Attempts before a reader asks writers to stand back; usually the first attempt succeeds. */
const READER_PATIENCE = 64;

/**
 * How long to keep retrying a held lock. A flush holds it for ~40 stores, so reaching this means
 * the writer stopped mid-update (its worker was terminated): see StatsArena.resetWorker.
 */
const SPIN_LIMIT = 10_000_000;

export class StatsLockError extends Error {
  readonly code = "QNICD_STATS_LOCKED";
  constructor(base: number) {
    super(`stats slot at word ${base} stays locked: its writer stopped mid-update (reset its worker's slots)`);
    this.name = "StatsLockError";
  }
}
