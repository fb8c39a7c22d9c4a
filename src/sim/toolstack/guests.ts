// The guests' side of domain lifecycle on the simulated host. On real Xen the toolstack unpauses a
// kernel whose netfront then probes each vif; here each vif's "kernel driver" is a netfront process.
// Kept behind an interface so the Toolstack class stays testable without processes.
import { startNetfrontGuest, stopNetfrontGuests } from "../netfront/spawn.ts";

export interface GuestRunner {
  /**
   * Starts the guest driver for vif `devid` of `domid` (its netfront probes the device). `vcpus`:
   * the domain's vCPUs, which bound the queues its netfront asks for (as num_online_cpus does).
   */
  start(domid: number, devid: number, opts: { ip?: string; vcpus?: number }): void;
  /** Kills every guest driver of `domid`: a destroyed domain stops running at once, mid-anything. */
  kill(domid: number): Promise<void>;
}

export function netfrontGuests(dir: string): GuestRunner {
  return {
    start: (domid, devid, opts) => void startNetfrontGuest(dir, domid, devid, { ip: opts.ip, vcpus: opts.vcpus }),
    kill: async (domid) => void (await stopNetfrontGuests(dir, domid, { signal: "SIGKILL" })),
  };
}
