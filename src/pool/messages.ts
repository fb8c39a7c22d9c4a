// The control messages between the pool and its workers (vhost-user's set: connect, disconnect,
// exit), plus what workers report back. Plain data: they cross the mailbox as JSON.
import type { HashConfig, VifConnectSpec, VifSettings } from "./types.ts";
import type { PlatformConfig } from "../platform/types.ts";
import type { SlotRef } from "../stats/index.ts";
import type { VifStats } from "../stats/index.ts";

export type ToWorker =
  | {
      op: "connect";
      seq: number;
      spec: VifConnectSpec;
      slot: SlotRef;
      /** Totals the vif had before (on a worker that died, or before its frontend reconnected), so its counters never go backwards. */
      carry?: Partial<VifStats>;
      /** SwitchFabric.address, when the vif's peer is a switch port (the pool creates the fabric). */
      switchAddress?: number;
    }
  | { op: "disconnect"; seq: number; key: string }
  /** B/rate or F/request-multicast-control changed (the backend watches both). */
  | { op: "settings"; seq: number; key: string; settings: VifSettings }
  | { op: "exit"; seq: number };

export type ToMain =
  | { op: "ready" }
  /** `replayed`: responses an earlier owner had journaled but not published, published at attach. */
  | { op: "connected"; seq: number; key: string; localTxPort: number; localRxPort: number; replayed?: { tx: number; rx: number } }
  | { op: "disconnected"; seq: number; key: string }
  | { op: "updated"; seq: number; key: string }
  /** `errno`: positive, what the vif's error node reports (ENOENT for a ring that would not map, ...). */
  | { op: "failed"; seq: number; errno: number; error: string }
  | { op: "fault"; key: string; errno: number; message: string }
  /** The vif's carrier changed (rx stalled for rxStallMs, or the frontend posts rx buffers again). */
  | { op: "carrier"; key: string; on: boolean; message: string }
  /** The vif's control ring changed its hash configuration (the backend hands it to the vif's other queues). */
  | { op: "hash"; key: string; config: HashConfig }
  /** A multi-queue vif's queue took MCAST_ADD / MCAST_DEL extras (the backend keeps the vif's one list). */
  | { op: "mcast"; key: string; changes: { add: boolean; group: string }[] }
  /** Startup failed (the platform would not open): the worker exits after sending this. */
  | { op: "fatal"; errno: number; error: string }
  | { op: "exiting"; seq: number };

/** What the main thread hands a new worker (its one postMessage). */
export interface WorkerInit {
  index: number;
  platform: PlatformConfig;
  stats: SharedArrayBuffer;
  mailbox: SharedArrayBuffer;
  /** The control eventfd, owned (created and closed) by the main thread. */
  eventfd: number;
  /** The eventfd every switch port of this worker wakes; owned by the main thread too. */
  switchWakeFd: number;
  /** Most tx packets served per vif per wake-up, so one busy guest cannot starve the others. */
  budget: number;
  maxMappings: number;
  /** Bytes of frames a vif may hold while its frontend posts no rx buffers (Linux: 512 KiB). */
  rxQueueBytes: number;
  /** Frames waiting this long with no rx buffer posted turn the vif's carrier off (Linux: 60 s). */
  rxStallMs: number;
  /** TAP I/O mode for TAP peers (default auto). */
  tapIo?: "auto" | "uring" | "plain";
  /** Which data path serves the vifs (default batched; seed is the per-packet baseline). */
  datapath?: "batched" | "seed";
  /** Vifs may negotiate feature-sg: the tx scratch holds 64 KiB frames (default false: 4 KiB). */
  scatterGather?: boolean;
  /** This worker's capture ring (src/capture/capture-ring.ts), shared with the main thread. */
  capture?: SharedArrayBuffer;
}

/** A worker's "failed" or "fatal" reply as the main thread throws it: its one line and its errno. */
export class WorkerFailure extends Error {
  override name = "WorkerFailure";
  constructor(
    message: string,
    /** Positive errno; the backend writes it in the vif's error node. */
    readonly errno: number,
  ) {
    super(message);
  }
}
