// `--platform auto`: choose real Xen only when its devices are really there. Pure (the filesystem is
// a probe) so every combination is testable without a Xen host.
import { ConfigError } from "./config-error.ts";
import type { Config } from "./load-config.ts";

export interface PathProbe {
  exists(path: string): boolean;
}

/** Event channels come from this device on every Xen dom0 and driver domain. */
export const XEN_EVTCHN_DEVICE = "/dev/xen/evtchn";
/** xenstore is reached through xenstored's socket when it runs locally, else through the kernel. */
export const XENSTORED_SOCKET = "/var/run/xenstored/socket";
export const XENBUS_DEVICE = "/dev/xen/xenbus";

export function resolvePlatform(cfg: Pick<Config, "platform">, probe: PathProbe): "xen" | "sim" {
  if (cfg.platform !== "auto") return cfg.platform;
  if (probe.exists(XEN_EVTCHN_DEVICE) && (probe.exists(XENSTORED_SOCKET) || probe.exists(XENBUS_DEVICE))) return "xen";
  throw new ConfigError(
    `qnicd: --platform auto: this is not a Xen host (no ${XEN_EVTCHN_DEVICE} with ${XENSTORED_SOCKET} or ${XENBUS_DEVICE}); ` +
      "to run on the simulated host from a checkout: npm run sim -- up, then npm run qnicd -- --platform sim",
    "platform",
  );
}
