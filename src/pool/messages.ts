// The control messages between the pool and its workers (vhost-user's set: connect, disconnect,
// exit), plus what workers report back. Plain data: they cross the mailbox as JSON.
import type { VifConnectSpec } from "./types.ts";
import type { PlatformConfig } from "../platform/types.ts";
import type { SlotRef } from "../stats/index.ts";
import type { VifStats } from "../stats/index.ts";

export type ToWorker =
  | {
      op: "connect";
      seq: number;
      spec: VifConnectSpec;
      slot: SlotRef;
      /** Totals a vif had on a worker that died, so its counters never go backwards. */
      carry?: Partial<VifStats>;
    }
  | { op: "disconnect"; seq: number; key: string }
  | { op: "exit"; seq: number };

export type ToMain =
  | { op: "ready" }
  | { op: "connected"; seq: number; key: string; localTxPort: number; localRxPort: number }
  | { op: "disconnected"; seq: number; key: string }
  | { op: "failed"; seq: number; error: string }
  | { op: "fault"; key: string; errno: number; message: string }
  /** Startup failed (the platform would not open): the worker exits after sending this. */
  | { op: "fatal"; error: string }
  | { op: "exiting"; seq: number };

/** What the main thread hands a new worker (its one postMessage). */
export interface WorkerInit {
  index: number;
  platform: PlatformConfig;
  stats: SharedArrayBuffer;
  mailbox: SharedArrayBuffer;
  /** The control eventfd, owned (created and closed) by the main thread. */
  eventfd: number;
  /** Most tx packets served per vif per wake-up, so one busy guest cannot starve the others. */
  budget: number;
  maxMappings: number;
}
