// Where things sit in the stats SharedArrayBuffer, in 32-bit words.
//
//   arena header (16 words)   magic, layout id, workers, slots per worker, counters, slot words
//   slot 0 of worker 0        seq, generation, in use, readers waiting, counter 0 lo, hi, counter 1 lo, hi, ...
//   slot 1 of worker 0
//   ...
//   slot 0 of worker 1        (each worker's slots are contiguous, so its flushes touch its own lines)
//
// Why pairs of Uint32 under a per-slot seqlock: byte counters pass 2^32 within seconds, so 32-bit
// wrapping counters would need readers to sample faster than that; Float64/BigUint64 values cannot
// be read or written atomically by JS (Atomics refuses Float64Array, and BigInt64 atomics cost a
// BigInt per access). A seqlock gives torn-free 53-bit values AND a consistent snapshot across all
// of a slot's counters (tx_bytes matches tx_packets), for one CAS and one store per flush.
import { VIF_COUNTERS } from "./counter-table.ts";

export const ARENA_MAGIC = 0x71737461; // "qsta"
export const ARENA_HEADER_WORDS = 16;
// Arena header words. Plain constants (not enums) so they inline in the per-batch flush.
export const H_MAGIC = 0;
export const H_LAYOUT_ID = 1;
export const H_WORKERS = 2;
export const H_SLOTS_PER_WORKER = 3;
export const H_COUNTERS = 4;
export const H_SLOT_WORDS = 5;

// Slot words, relative to the slot's first word.
/** Even: stable. Odd: a writer is mid-update. Bumped by 2 per update. */
export const S_SEQ = 0;
/** Bumped on every allocation and release, so a stale SlotRef never matches. */
export const S_GENERATION = 1;
export const S_IN_USE = 2;
/**
 * How many readers gave up waiting for a gap between flushes. While non-zero, writers skip their
 * flushes (losing nothing: the next flush carries the same totals), so a reader always finishes.
 */
export const S_READERS_WAITING = 3;
export const S_FIRST_COUNTER = 4;

export const COUNTER_COUNT = VIF_COUNTERS.length;
/** Rounded up to a 64-byte cache line so two workers' slots never share a line. */
export const SLOT_WORDS = Math.ceil((S_FIRST_COUNTER + 2 * COUNTER_COUNT) / 16) * 16;

/**
 * Identifies the counter table's shape (names in order). A worker attaching to an arena built by a
 * main thread running a different table would misread every counter; this turns that into an error.
 */
export const LAYOUT_ID = fnv1a(VIF_COUNTERS.map((c) => `${c.name}:${c.kind}`).join(","));

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export const TWO_32 = 0x1_0000_0000;
