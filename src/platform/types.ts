// The platform seam: what the daemon's workers need from Xen, shaped on Linux's /dev/xen/gntdev
// and /dev/xen/evtchn so the real implementation is a thin layer over ioctls. Everything above this
// file runs unchanged on real Xen and on the simulated host.

/** Serializable, so a worker thread can open its own platform from what the main thread chose. */
export type PlatformConfig =
  | { kind: "sim"; dir: string; domid: number }
  | { kind: "xen"; domid: number };

export interface Platform {
  readonly kind: "xen" | "sim";
  /** The domain this process runs in (the backend domain). */
  readonly domid: number;
  /** The xenstore endpoint: a Unix socket path, or /dev/xen/xenbus on real Xen. */
  readonly xenstorePath: string;
  readonly config: PlatformConfig;
  openGrantDevice(): GrantDevice;
  openEventChannelDevice(): EventChannelDevice;
  close(): void;
}

// The devices' interfaces live with the rest of Linux's Xen device ABI (src/xen/devices.ts), so the
// simulated host implements them without importing the platform that opens it.
export { PlatformError } from "../xen/devices.ts";
export type { EventChannelDevice, GrantCopyBatchMemory, GrantDevice, GrantMapping } from "../xen/devices.ts";
import type { EventChannelDevice, GrantDevice } from "../xen/devices.ts";

/**
 * A worker thread's devices, as it recorded them in shared memory while it opened and mapped
 * (each device's reclaimId, each mapping's address and size): what another thread of the same
 * process needs to release them once that thread died (releaseOrphanedDevices).
 */
export interface OrphanedDevices {
  /** GrantDevice.reclaimId, or -1 when none was opened. */
  readonly grantDevice: number;
  /** EventChannelDevice.reclaimId, or -1. */
  readonly eventChannelDevice: number;
  /** Mappings made through the grant device and not yet unmapped. */
  readonly mappings: readonly { addr: number; pages: number }[];
}
