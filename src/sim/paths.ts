// Layout of a simulated Xen host's run directory. Every sim component (xenstored, hypervisor,
// toolstack, guests, the daemon's sim platform) finds the others through these paths only.
import { createHash } from "node:crypto";
import { resolve, join } from "node:path";

export interface SimPaths {
  dir: string;
  /** dom0's privileged xenstored socket (what XENSTORED_PATH points at). */
  xenstoredSocket: string;
  /** Per-guest xenstored socket, created on INTRODUCE and removed on RELEASE. */
  domainSocket(domid: number): string;
  xenstoredPidFile: string;
  xenstoredLog: string;
  /** Tree dump used to survive a xenstored restart (like live update). */
  xenstoredState: string;
  /** Hypervisor control files (domain registry and per-domain tables) live in shared memory. */
  shmDir: string;
  /** Per-process event channel endpoints (sockets) live here. */
  evtchnDir: string;
  /** Guest processes started by the toolstack: pid files and logs. */
  guestsDir: string;
}

export function simPaths(dir: string): SimPaths {
  const abs = resolve(dir);
  const tag = createHash("sha256").update(abs).digest("hex").slice(0, 12);
  return {
    dir: abs,
    xenstoredSocket: join(abs, "xenstored", "socket"),
    domainSocket: (domid: number) => join(abs, "xenstored", `domain-${domid}.sock`),
    xenstoredPidFile: join(abs, "xenstored", "pid"),
    xenstoredLog: join(abs, "xenstored", "log"),
    xenstoredState: join(abs, "xenstored", "tree.json"),
    // /dev/shm keeps guest "RAM" off disk: a MAP_SHARED file on a real filesystem would be written back.
    shmDir: join("/dev/shm", `qnicd-sim-${tag}`),
    evtchnDir: join(abs, "evtchn"),
    guestsDir: join(abs, "guests"),
  };
}
