// The readers' side: consistent snapshots of one vif's counters, sums across vifs, and the figures
// derived from them. Never blocks a worker and never asks one anything.
import { COUNTER_COUNT } from "./arena-layout.ts";
import { VIF_COUNTER_NAMES, type VifStats } from "./counter-table.ts";
import { readSlot } from "./slot-seqlock.ts";
import type { SlotRef, StatsArena } from "./stats-arena.ts";

/** The vif's counters, or null when the ref is stale (its vif went away and the slot was freed or reused). */
export function readVifStats(arena: StatsArena, ref: SlotRef): VifStats | null {
  arena.checkIndex(ref.index);
  const values = new Array<number>(COUNTER_COUNT).fill(0);
  const snap = readSlot(arena.words, arena.slotBase(ref.index), values);
  if (!snap.inUse || snap.generation !== ref.generation) return null;
  return toStats(values);
}

export function zeroVifStats(): VifStats {
  return toStats(new Array<number>(COUNTER_COUNT).fill(0));
}

/** Element-wise sum: totals for counters, summed levels for gauges (e.g. vifs with carrier). */
export function sumVifStats(all: readonly VifStats[]): VifStats {
  const total = zeroVifStats();
  for (const s of all) for (const name of VIF_COUNTER_NAMES) total[name] += s[name];
  return total;
}

export interface DerivedFigures {
  /** How well the data path batches: the design aims for well under 1 (one call per batch). */
  ffi_calls_per_packet: number;
  syscalls_per_packet: number;
}

/** Per packet in either direction; 0 before the first packet (JSON has no NaN). */
export function derivedFigures(s: VifStats): DerivedFigures {
  const packets = s.tx_packets + s.rx_packets;
  return {
    ffi_calls_per_packet: packets === 0 ? 0 : s.ffi_calls / packets,
    syscalls_per_packet: packets === 0 ? 0 : s.syscalls / packets,
  };
}

function toStats(values: readonly number[]): VifStats {
  const s = {} as VifStats;
  for (let i = 0; i < COUNTER_COUNT; i++) s[VIF_COUNTER_NAMES[i]] = values[i];
  return s;
}
