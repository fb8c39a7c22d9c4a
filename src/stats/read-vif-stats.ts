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

/**
 * What the data path spends, per packet (tx + rx) and per MiB (tx + rx bytes) since the vif
 * connected: system calls and FFI calls (the design aims for well under 1 per packet: one per
 * batch), notifications sent to the frontend and event-channel wake-ups received from it.
 */
export interface DerivedFigures {
  ffi_calls_per_packet: number;
  syscalls_per_packet: number;
  notifies_sent_per_packet: number;
  events_received_per_packet: number;
  ffi_calls_per_mb: number;
  syscalls_per_mb: number;
  notifies_sent_per_mb: number;
  events_received_per_mb: number;
}

/** 0 before the first packet (JSON has no NaN). */
export function derivedFigures(s: VifStats): DerivedFigures {
  const packets = s.tx_packets + s.rx_packets;
  const mb = (s.tx_bytes + s.rx_bytes) / 1048576;
  const per = (n: number, d: number) => (d === 0 ? 0 : n / d);
  return {
    ffi_calls_per_packet: per(s.ffi_calls, packets),
    syscalls_per_packet: per(s.syscalls, packets),
    notifies_sent_per_packet: per(s.notifies_sent, packets),
    events_received_per_packet: per(s.events_received, packets),
    ffi_calls_per_mb: per(s.ffi_calls, mb),
    syscalls_per_mb: per(s.syscalls, mb),
    notifies_sent_per_mb: per(s.notifies_sent, mb),
    events_received_per_mb: per(s.events_received, mb),
  };
}

function toStats(values: readonly number[]): VifStats {
  const s = {} as VifStats;
  for (let i = 0; i < COUNTER_COUNT; i++) s[VIF_COUNTER_NAMES[i]] = values[i];
  return s;
}
