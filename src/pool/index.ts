// The pool's public face: createWorkerPool() and the seam types the backend codes against.
import { Pool, type WorkerPoolOptions } from "./worker-pool.ts";
import type { WorkerPool } from "./types.ts";

export type { ConnectedVif, VifConnectSpec, VifFault, WorkerPool } from "./types.ts";
export type { PeerHandle } from "../net/peer.ts";
export type { VifCarrierEvent, WorkerPoolOptions } from "./worker-pool.ts";

/**
 * Starts `workers` worker threads on `platform` and resolves once each is serving (rejects, with
 * nothing left running, if one cannot open the platform). `stats` must have room for them.
 */
export function createWorkerPool(opts: WorkerPoolOptions): Promise<WorkerPool> {
  return Pool.create(opts);
}

/** The concrete pool, for tests that need its killWorker() hook. */
export { Pool };
