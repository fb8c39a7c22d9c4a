// Opens the platform a config names. Workers call this with the config the main thread chose.
import { releaseSimOrphans, SimPlatform } from "./sim.ts";
import { releaseXenOrphans, XenPlatform } from "./xen.ts";
import { PlatformError, type OrphanedDevices, type Platform, type PlatformConfig } from "./types.ts";

export function openPlatform(config: PlatformConfig): Platform {
  switch (config.kind) {
    case "sim":
      return new SimPlatform(config);
    case "xen":
      return new XenPlatform(config);
    default:
      throw new PlatformError(`platform: unknown kind ${JSON.stringify((config as { kind: unknown }).kind)}: use "sim" or "xen"`, "EINVAL", -22);
  }
}

/**
 * Releases what a worker thread that died held open on the platform `config` names (the one it was
 * started on), from another thread of the same process; only once that thread has stopped, so
 * nothing races. Returns what was released, for the log line.
 */
export function releaseOrphanedDevices(config: PlatformConfig, devices: OrphanedDevices): string[] {
  return config.kind === "sim" ? releaseSimOrphans(devices) : releaseXenOrphans(devices);
}

export { SimPlatform } from "./sim.ts";
export { XenPlatform } from "./xen.ts";
export { GrantCopyBatch, GRANT_COPY_MAX_LEN } from "./grant-copy-batch.ts";
export * from "./types.ts";
