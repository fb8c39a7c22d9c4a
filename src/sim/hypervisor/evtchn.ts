// Event-channel device of the simulated host, the sim's /dev/xen/evtchn. Shared by the backend
// (SimPlatform) and simulated guests: the port table lives in the hypervisor registry, the fd is a
// Unix datagram socket under simPaths(dir).evtchnDir that becomes readable when a port fires.
import { mkdirSync } from "node:fs";
import { PlatformError, type EventChannelDevice } from "../../xen/devices.ts";
import { simPaths } from "../paths.ts";
import { notInitialisedHint } from "./domains.ts";
import { cstr, errnoName, simxen, track, untrack } from "./native.ts";

/** Port-table states, as Xen's ECS_*. */
export const ECS_FREE = 0;
export const ECS_UNBOUND = 2;
export const ECS_INTERDOMAIN = 3;
/** Delivery bits of a port (simxen.h SX_EV_*). */
export const EV_PENDING = 1;
export const EV_MASKED = 2;
export const EV_FIRED = 4;

export interface SimPortState {
  state: number;
  remoteDomid: number;
  remotePort: number;
  ev: number;
}

export class SimEventChannelDevice implements EventChannelDevice {
  readonly fd: number;
  readonly domid: number;
  private handle: number;
  private readonly shmDir: string;
  private readonly dir: string;
  private readonly one = new Uint32Array(1);

  constructor(dir: string, domid: number) {
    const p = simPaths(dir);
    this.dir = dir;
    this.shmDir = p.shmDir;
    this.domid = domid;
    mkdirSync(p.evtchnDir, { recursive: true });
    const h = simxen().sx_edev_open(cstr(p.shmDir), cstr(p.evtchnDir), domid);
    if (h < 0) {
      const errno = -h;
      const hint =
        errno === 2 || errno === 71 ? notInitialisedHint(dir)
        : errno === 3 ? `dom${domid} does not exist: create it first`
        : errno === 36 ? `the socket path under ${p.evtchnDir} is too long: use a shorter run directory`
        : errno === 23 ? "too many open event-channel devices on this host: close unused ones"
        : errnoName(errno);
      throw new PlatformError(`evtchn: opening a device for dom${domid} in ${p.dir} failed (${errnoName(errno)}): ${hint}`, errnoName(errno), h);
    }
    this.handle = h;
    this.fd = simxen().sx_edev_fd(h);
    track(this.shmDir, this);
  }

  /** The device's handle in native/simxen.c's process-wide table (its close works from any thread). */
  get reclaimId(): number {
    return this.handle;
  }

  private live(op: string): number {
    if (this.handle < 0) throw new PlatformError(`evtchn: ${op} on a closed device (dom${this.domid}): open a new one`, "EBADF", -9);
    return this.handle;
  }

  bindInterdomain(remoteDomid: number, remotePort: number): number {
    const rc = simxen().sx_edev_bind_interdomain(this.live("bindInterdomain"), remoteDomid, remotePort);
    if (rc < 0) {
      const errno = -rc;
      const hint =
        errno === 3 ? `dom${remoteDomid} does not exist`
        : errno === 22 ? `dom${remoteDomid} port ${remotePort} is not an unbound port offered to dom${this.domid}: check the frontend's event-channel node`
        : errno === 28 ? `dom${this.domid} has no free port: unbind unused ports`
        : errnoName(errno);
      throw new PlatformError(`evtchn: binding dom${this.domid} to dom${remoteDomid} port ${remotePort} failed (${errnoName(errno)}): ${hint}`, errnoName(errno), rc);
    }
    return rc;
  }

  bindUnboundPort(remoteDomid: number): number {
    const rc = simxen().sx_edev_bind_unbound(this.live("bindUnboundPort"), remoteDomid);
    if (rc < 0) {
      const errno = -rc;
      const hint = errno === 28 ? `dom${this.domid} has no free port: unbind unused ports` : errno === 3 ? `dom${this.domid} was destroyed` : errnoName(errno);
      throw new PlatformError(`evtchn: allocating an unbound port on dom${this.domid} for dom${remoteDomid} failed (${errnoName(errno)}): ${hint}`, errnoName(errno), rc);
    }
    return rc;
  }

  unbind(port: number): void {
    const rc = simxen().sx_edev_unbind(this.live("unbind"), port);
    if (rc < 0)
      throw new PlatformError(`evtchn: unbinding dom${this.domid} port ${port} failed (${errnoName(-rc)}): the port is not bound through this device`, errnoName(-rc), rc);
  }

  notify(port: number): void {
    const rc = simxen().sx_edev_notify(this.live("notify"), port);
    if (rc < 0)
      throw new PlatformError(`evtchn: notify on dom${this.domid} port ${port} failed (${errnoName(-rc)}): the port is not bound through this device`, errnoName(-rc), rc);
  }

  readPending(out: Uint32Array): number {
    // `out` is an argument of the call that writes it (BUN-FACTS pitfall 1).
    const rc = simxen().sx_edev_read(this.live("readPending"), out, out.length);
    if (rc < 0) throw new PlatformError(`evtchn: read on dom${this.domid} failed (${errnoName(-rc)})`, errnoName(-rc), rc);
    return rc;
  }

  unmask(ports: Uint32Array, count: number): void {
    if (count > ports.length) throw new PlatformError(`evtchn: unmask of ${count} ports from an array of ${ports.length}`, "EINVAL", -22);
    if (count <= 0) return;
    simxen().sx_edev_unmask(this.live("unmask"), ports, count);
  }

  /** Convenience for tests and simple loops: unmask one port. */
  unmaskOne(port: number): void {
    this.one[0] = port;
    this.unmask(this.one, 1);
  }

  /** Diagnostic view of a port of this device's domain (tests). */
  portState(port: number): SimPortState {
    const out = new Uint32Array(4);
    const rc = simxen().sx_edev_port_state(this.live("portState"), port, out);
    if (rc < 0) throw new PlatformError(`evtchn: port ${port} state on dom${this.domid}: ${errnoName(-rc)}`, errnoName(-rc), rc);
    return { state: out[0], remoteDomid: out[1], remotePort: out[2], ev: out[3] };
  }

  /** Blocks until the fd is readable or `timeoutMs` passes; true if readable. */
  wait(timeoutMs: number): boolean {
    this.live("wait");
    return simxen().sx_poll(this.fd, timeoutMs) > 0;
  }

  close(): void {
    if (this.handle < 0) return;
    simxen().sx_edev_close(this.handle);
    this.handle = -1;
    untrack(this.shmDir, this);
  }

  toString(): string {
    return `SimEventChannelDevice(dom${this.domid}, ${this.dir})`;
  }
}
