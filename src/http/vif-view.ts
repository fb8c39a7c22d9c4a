// Turns the control plane's snapshot of a vif, plus its counters from shared memory, into what /vifs
// serves. Pure apart from reading the arena.
import { xenbusStateName } from "../xen/xenbus-state.ts";
import { COUNTER_DIRECTION, derivedFigures, readVifStats, sumVifStats, type StatsArena, type VifStats } from "../stats/index.ts";
import type { QueueView, RateView, StateView, VifSnapshot, VifView, VifsView } from "./views.ts";
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
  const slots = s.queues ?? (s.slot && s.worker !== null ? [{ worker: s.worker, slot: s.slot }] : []);
  const queues: QueueView[] = slots.map((q, i) => ({ queue: i, worker: q.worker, counters: readVifStats(arena, q.slot) }));
  const counters = vifCounters(queues);
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
    queues,
  };
}

/** The vif's counters: its queues' summed, the carrier on only when every queue's is; null until all publish. */
function vifCounters(queues: readonly QueueView[]): VifStats | null {
  if (queues.length === 0 || queues.some((q) => q.counters === null)) return null;
  if (queues.length === 1) return queues[0].counters;
  const all = queues.map((q) => q.counters as VifStats);
  const sum = sumVifStats(all);
  sum.carrier = all.every((c) => c.carrier > 0) ? 1 : 0;
  return sum;
}

export function toVifsView(snapshots: readonly VifSnapshot[], arena: StatsArena): VifsView {
  const vifs = snapshots.map((s) => toVifView(s, arena));
  const counters = sumVifStats(vifs.flatMap((v) => (v.counters ? [v.counters as VifStats] : [])));
  return { direction: COUNTER_DIRECTION, vifs, total: { counters, derived: derivedFigures(counters) } };
}
