// The stats room's public face.
export { COUNTER_DIRECTION, VIF_COUNTERS, VIF_COUNTER_NAMES, type CounterKind, type VifCounterName, type VifStats } from "./counter-table.ts";
export { StatsArena, StatsError, type SlotRef, type StatsArenaShape } from "./stats-arena.ts";
export { LAYOUT_ID } from "./arena-layout.ts";
export { StatsLockError } from "./slot-seqlock.ts";
export { VifCounters } from "./vif-counters.ts";
export { readVifStats, sumVifStats, zeroVifStats, derivedFigures, type DerivedFigures } from "./read-vif-stats.ts";
