// Turns the control plane's snapshot of a vif, plus its counters from shared memory, into what /vifs
// serves. Pure apart from reading the arena.
import { xenbusStateName } from "../xen/xenbus-state.ts";
import { COUNTER_DIRECTION, derivedFigures, readVifStats, sumVifStats, type StatsArena, type VifStats } from "../stats/index.ts";
import type { StateView, VifSnapshot, VifView, VifsView } from "./views.ts";

export function vifName(domid: number, devid: number): string {
  return `vif${domid}.${devid}`;
}

function state(n: number): StateView {
  return { name: xenbusStateName(n), number: n };
}

export function toVifView(s: VifSnapshot, arena: StatsArena): VifView {
  const counters = s.slot ? readVifStats(arena, s.slot) : null;
  return {
    name: vifName(s.domid, s.devid),
    domid: s.domid,
    devid: s.devid,
    backendState: state(s.backendState),
    frontendState: state(s.frontendState),
    worker: s.worker,
    mac: s.mac,
    features: s.features,
    hostSide: s.hostSide ?? null,
    counters,
    derived: counters ? derivedFigures(counters) : null,
  };
}

export function toVifsView(snapshots: readonly VifSnapshot[], arena: StatsArena): VifsView {
  const vifs = snapshots.map((s) => toVifView(s, arena));
  const counters = sumVifStats(vifs.flatMap((v) => (v.counters ? [v.counters as VifStats] : [])));
  return { direction: COUNTER_DIRECTION, vifs, total: { counters, derived: derivedFigures(counters) } };
}
