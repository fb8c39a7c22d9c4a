// Turns the control plane's snapshot of a vif, plus its counters from shared memory, into what /vifs
// serves. Pure apart from reading the arena.
import { xenbusStateName } from "../xen/xenbus-state.ts";
import { COUNTER_DIRECTION, derivedFigures, readVifStats, sumVifStats, type StatsArena, type VifStats } from "../stats/index.ts";
import type { RateView, StateView, VifSnapshot, VifView, VifsView } from "./views.ts";
import { describeRate } from "../backend/vif-settings.ts";

export function vifName(domid: number, devid: number): string {
  return `vif${domid}.${devid}`;
}

function state(n: number): StateView {
  return { name: xenbusStateName(n), number: n };
}

function rateView(s: VifSnapshot): RateView | null {
  const r = s.settings?.rate;
  if (!r) return null;
  return { bytesPerInterval: r.bytes, intervalUsecs: r.usecs, bytesPerSecond: Math.round((r.bytes * 1e6) / r.usecs), text: describeRate(r) };
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
    rate: rateView(s),
    multicastControl: s.settings?.multicastControl === true,
    counters,
    derived: counters ? derivedFigures(counters) : null,
  };
}

export function toVifsView(snapshots: readonly VifSnapshot[], arena: StatsArena): VifsView {
  const vifs = snapshots.map((s) => toVifView(s, arena));
  const counters = sumVifStats(vifs.flatMap((v) => (v.counters ? [v.counters as VifStats] : [])));
  return { direction: COUNTER_DIRECTION, vifs, total: { counters, derived: derivedFigures(counters) } };
}
