// What the HTTP API serves, and what it needs from the daemon to serve it. The daemon hands over
// snapshots (plain data it already holds); counters are read straight from shared stats memory.
import type { DerivedFigures, SlotRef, StatsArena, VifStats } from "../stats/index.ts";
import type { Logger } from "../log.ts";
import type { BuildInfo } from "../build-info.ts";
import type { CaptureService } from "../capture/capture-service.ts";
import type { RateHistory } from "./rate-history.ts";
import type { VifSettings } from "../pool/types.ts";

export type XenstoreHealth = "connected" | "reconnecting" | "down";

export interface HealthSnapshot {
  xenstore: XenstoreHealth;
  uptimeSeconds: number;
  workers: { configured: number; running: number };
}

/** One device as the control plane knows it. */
export interface VifSnapshot {
  domid: number;
  devid: number;
  /** XenbusState numbers, as read from / written to xenstore. */
  backendState: number;
  frontendState: number;
  /** The worker serving the vif, or null before it is connected. */
  worker: number | null;
  mac: string | null;
  /** Negotiated features ("feature-sg": true, "multi-queue-num-queues": 1, ...). */
  features: Record<string, boolean | number>;
  /** Where the serving worker publishes the vif's counters (queue 0's), or null while it has none. */
  slot: SlotRef | null;
  /** Every queue's worker and counter slot, queue 0 first (absent: the one queue above). */
  queues?: { worker: number; slot: SlotRef }[];
  /** The host side of the vif: its TAP interface, switch port or null sink (null before realize). */
  hostSide?: HostSide | null;
  /** B/rate and F/request-multicast-control as the backend last read them (null while not connected). */
  settings?: VifSettings | null;
}

/** The vif's `rate` limit on guest tx as /vifs shows it (B/rate, "bytes,usecs"). */
export interface RateView {
  bytesPerInterval: number;
  intervalUsecs: number;
  bytesPerSecond: number;
  /** "20000 bytes per 20000 us (1 MB/s)". */
  text: string;
}

export interface HostSide {
  kind: "tap" | "switch" | "null";
  /** The TAP interface's name (what `ip link` shows), or the switch port's. */
  name: string;
}

export interface HttpDeps {
  health(): HealthSnapshot;
  vifs(): VifSnapshot[];
  stats: StatsArena;
  log?: Logger;
  /** The dashboard's live rates (GET /rates); absent: 503. */
  rates?: Pick<RateHistory, "view">;
  /** Packet capture (GET /vifs/:name/pcap); absent: 503. */
  captures?: Pick<CaptureService, "start">;
  /** What qnicd_build_info reports (default: this checkout's). */
  build?: BuildInfo;
}

export interface StateView {
  name: string;
  number: number;
}

export interface VifView {
  /** `vif<domid>.<devid>`, like Linux netback's interface names. */
  name: string;
  domid: number;
  devid: number;
  backendState: StateView;
  frontendState: StateView;
  worker: number | null;
  mac: string | null;
  features: Record<string, boolean | number>;
  hostSide: HostSide | null;
  /** Guest tx rate limit: null when unlimited (time held back by it: counters.tx_throttled_usecs). */
  rate: RateView | null;
  /** The guest asked for multicast filtering (request-multicast-control). */
  multicastControl: boolean;
  /**
   * The sum over its queues, null while no worker publishes counters for the vif. `carrier` is 1
   * only while every queue has its carrier (one stalled queue takes the vif's off, as in netback).
   */
  counters: VifStats | null;
  derived: DerivedFigures | null;
  /** Each queue's own counters (a single-queue vif has one, equal to the sum). */
  queues: QueueView[];
}

export interface QueueView {
  queue: number;
  worker: number;
  counters: VifStats | null;
}

export interface HealthView extends HealthSnapshot {
  /** "ok" when xenstore is connected and every worker runs; anything else is "degraded" (HTTP 503). */
  status: "ok" | "degraded";
}

export interface VifsView {
  /** How to read tx and rx in every counter (COUNTER_DIRECTION). */
  direction: string;
  vifs: VifView[];
  /** Sums over the listed vifs that have counters. */
  total: { counters: VifStats; derived: DerivedFigures };
}
