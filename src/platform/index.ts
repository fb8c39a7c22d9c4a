// Opens the platform a config names. Workers call this with the config the main thread chose.
import { SimPlatform } from "./sim.ts";
import { XenPlatform } from "./xen.ts";
import { PlatformError, type Platform, type PlatformConfig } from "./types.ts";

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

export { SimPlatform } from "./sim.ts";
export { XenPlatform } from "./xen.ts";
export { GrantCopyBatch, GRANT_COPY_MAX_LEN } from "./grant-copy-batch.ts";
export * from "./types.ts";
