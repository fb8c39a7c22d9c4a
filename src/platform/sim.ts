// The platform seam on the simulated host: grant device and event channels backed by the simulated
// hypervisor (src/sim/hypervisor). Opened from the serializable config, so each Bun Worker opens
// its own: openPlatform({ kind: "sim", dir, domid: 0 }). A backend in another domain (a driver
// domain, xl's vif `backend=` key) reaches xenstore through that domain's own xenstored socket,
// with that domain's permissions, as a real driver domain does through /dev/xen/xenbus.
import { simPaths } from "../sim/paths.ts";
import { domainExists, hypervisorInitialised } from "../sim/hypervisor/domains.ts";
import { SimEventChannelDevice } from "../sim/hypervisor/evtchn.ts";
import { SimGrantDevice } from "../sim/hypervisor/gntdev.ts";
import { simxen } from "../sim/hypervisor/native.ts";
import { PlatformError, type EventChannelDevice, type GrantDevice, type OrphanedDevices, type Platform, type PlatformConfig } from "./types.ts";

/**
 * Releases a dead thread's sim devices through native/simxen.c's process-wide handle table:
 * closing the grant device unmaps every mapping it made; closing the event-channel device unbinds
 * every port (the frontends' ports return to unbound) and closes its sockets.
 */
export function releaseSimOrphans(d: OrphanedDevices): string[] {
  const released: string[] = [];
  if (d.grantDevice >= 0 && simxen().sx_gdev_close(d.grantDevice) === 0) released.push(`grant device (${d.mappings.length} mappings)`);
  if (d.eventChannelDevice >= 0 && simxen().sx_edev_close(d.eventChannelDevice) === 0) released.push("event-channel device");
  return released;
}

export class SimPlatform implements Platform {
  readonly kind = "sim" as const;
  readonly domid: number;
  readonly xenstorePath: string;
  readonly config: PlatformConfig;
  private readonly dir: string;
  private readonly devices = new Set<{ close(): void }>();
  private closed = false;

  constructor(config: Extract<PlatformConfig, { kind: "sim" }>) {
    this.config = { kind: "sim", dir: config.dir, domid: config.domid };
    this.dir = config.dir;
    this.domid = config.domid;
    const paths = simPaths(config.dir);
    this.xenstorePath = config.domid === 0 ? paths.xenstoredSocket : paths.domainSocket(config.domid);
    if (!hypervisorInitialised(config.dir))
      throw new PlatformError(
        `sim platform: no simulated hypervisor in ${simPaths(config.dir).shmDir} for run directory ${config.dir}: start the simulated host (initHypervisor) first`,
        "ENOENT",
        -2,
      );
    if (!domainExists(config.dir, config.domid))
      throw new PlatformError(`sim platform: dom${config.domid} does not exist on the simulated host in ${config.dir}: use 0 (dom0), or create the driver domain first (sim xl create NAME)`, "ESRCH", -3);
  }

  private check(op: string): void {
    if (this.closed) throw new PlatformError(`sim platform: ${op} after close(): open a new platform`, "EBADF", -9);
  }

  openGrantDevice(): GrantDevice {
    this.check("openGrantDevice");
    const dev = new SimGrantDevice(this.dir, this.domid);
    this.devices.add(dev);
    return dev;
  }

  openEventChannelDevice(): EventChannelDevice {
    this.check("openEventChannelDevice");
    const dev = new SimEventChannelDevice(this.dir, this.domid);
    this.devices.add(dev);
    return dev;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.devices) d.close();
    this.devices.clear();
  }
}
