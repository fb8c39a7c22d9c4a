// The backend room's public face: discovery + per-device state machines for vifs.
import type { Logger } from "../log.ts";
import type { PeerProvisioner } from "../net/peer-provisioner.ts";
import type { WorkerPool } from "../pool/types.ts";
import type { XenstoreClient } from "../xenstore/index.ts";
import type { StatsArena } from "../stats/index.ts";
import type { XenDevice } from "./device.ts";
import { backendFeatures } from "./features.ts";
import { VifHooks, type VifInfo } from "./vif.ts";
import { XenBus } from "./xenbus.ts";

export interface BackendOptions {
  xs: XenstoreClient;
  pool: WorkerPool;
  peers: PeerProvisioner;
  log: Logger;
  backendDomid: number;
  type: "vif" | "qnic";
  vifnamePrefix: string;
  /** See VifHooksOptions.connectTimeoutMs. */
  connectTimeoutMs?: number;
  /** See VifHooksOptions.journalDir (absent: vifs left Connected by an earlier qnicd are closed). */
  journalDir?: string;
  stats?: StatsArena;
  /** Offer guest-tx SG/GSO: features.ts peerTakesGso() of the daemon's peer and data path (default false). */
  txOffloads?: boolean;
  /** multi-queue-max-queues (default 1). */
  maxQueues?: number;
  /** Offer the control ring: features.ts offersCtrlRing() of the daemon's data path (default false). */
  ctrlRing?: boolean;
  /** Offer multicast control: features.ts multicastControlOffered() of the daemon's data path (default false). */
  multicastControl?: boolean;
}

export interface Backend {
  readonly bus: XenBus;
  /** Devices with what the vif layer holds for them (for /vifs). */
  devices(): { dev: XenDevice; vif: VifInfo | undefined }[];
  idle(): Promise<void>;
  /** Every vif closed (the guests see Closed) and its host side released. */
  stop(): Promise<void>;
  /** For a restart: nothing written, host sides and journals left for the next qnicd. */
  detach(): Promise<void>;
  /** Saves the connected vifs' counters into their journals (a successor carries them on). */
  saveCounters(): void;
}

export async function startBackend(opts: BackendOptions): Promise<Backend> {
  const hooks = new VifHooks({
    xs: opts.xs,
    pool: opts.pool,
    peers: opts.peers,
    log: opts.log,
    vifnamePrefix: opts.vifnamePrefix,
    connectTimeoutMs: opts.connectTimeoutMs,
    features: backendFeatures(opts.txOffloads === true, { maxQueues: opts.maxQueues ?? 1, ctrlRing: opts.ctrlRing === true, multicastControl: opts.multicastControl === true }),
    journalDir: opts.journalDir,
    stats: opts.stats,
  });
  const bus = new XenBus({ xs: opts.xs, backendDomid: opts.backendDomid, type: opts.type, hooks, log: opts.log });
  hooks.attach(bus);
  await bus.start();
  // After the first scan: every device still in xenstore is known, so what the journals name
  // beyond them was removed while no qnicd ran.
  hooks.removeLeftovers(bus.list());
  return {
    bus,
    devices: () => bus.list().map((dev) => ({ dev, vif: hooks.vif(dev) })),
    idle: () => bus.idle(),
    stop: () => bus.stop(),
    detach: async () => {
      await bus.detach();
      hooks.saveCounters();
    },
    saveCounters: () => hooks.saveCounters(),
  };
}

export { XenBus, type DeviceHooks } from "./xenbus.ts";
export { XenDevice } from "./device.ts";
export { VifFatalError } from "./errors.ts";
export { BACKEND_FEATURES, backendFeatures, FRONTEND_FEATURES, multicastControlOffered, offersCtrlRing, peerTakesGso } from "./features.ts";
export { pathTo, nextStep, type BackendState, type TargetState } from "./backend-state.ts";
export { readFrontendConfig, type FrontendConfig } from "./frontend-nodes.ts";
