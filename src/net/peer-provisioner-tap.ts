// TAP peers: one TAP per vif (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), named like Linux netback's
// interfaces so libxl's vif-bridge script finds it. The virtio_net_hdr on every frame is what lets
// a guest's GSO packets and partial checksums reach the kernel as they are (native/tap.c). The
// daemon's TAPs are persistent: a restarted qnicd re-opens each by name, still on the bridge the
// hotplug script put it on, so the guest's host side never goes away; destroy() and close() end
// them, detach() (a restart) leaves them. Needs /dev/net/tun and CAP_NET_ADMIN.
import { dlopen, FFIType } from "bun:ffi";
import { accessSync, constants, existsSync, readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";
import { constants as os } from "node:os";
import { nativeLibraryPath } from "../native/lib.ts";
import type { PeerHandle } from "./peer.ts";
import { PeerError, type PeerProvisioner, type PeerSettings } from "./peer-provisioner.ts";
import type { SteeringConfig } from "./steering-program.ts";
import { SteeringError, TapSteering } from "./tap-steering.ts";

const TUN_DEVICE = "/dev/net/tun";

type TapLib = ReturnType<typeof openLib>;
function openLib() {
  return dlopen(nativeLibraryPath("tap"), {
    qnicd_tap_open: { args: [FFIType.cstring, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    qnicd_tap_unpersist: { args: [FFIType.i32], returns: FFIType.i32 },
    qnicd_tap_queue_open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    qnicd_fd_close: { args: [FFIType.i32], returns: FFIType.i32 },
    qnicd_link_up: { args: [FFIType.cstring], returns: FFIType.i32 },
    qnicd_bridge_add: { args: [FFIType.cstring, FFIType.cstring], returns: FFIType.i32 },
    qnicd_if_exists: { args: [FFIType.cstring], returns: FFIType.i32 },
    qnicd_link_mtu: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}
let lib: TapLib | undefined;

const errnoNames = Object.fromEntries(Object.entries(os.errno).map(([k, v]) => [v, k])) as Record<number, string>;
const errnoName = (n: number) => errnoNames[n] ?? `errno ${n}`;
const cstr = (s: string) => Buffer.from(`${s}\0`);

export interface TapOptions {
  /**
   * --bridge: qnicd puts each TAP on a bridge itself, the one its vif's config names (B/bridge:
   * libxl's bridge=, which libxl writes as xenbr0 when the config names none), else this one (a
   * toolstack that writes no B/bridge). null leaves bridges to the hotplug script (libxl's
   * vif-bridge, which reads the same B/bridge).
   */
  bridge: string | null;
  /** The clone device (tests point it elsewhere); /dev/net/tun. */
  device?: string;
  /**
   * Open TAPs with a virtio_net_hdr per frame (default true: what lets the backend offer SG and
   * GSO). False only for tools that write raw frames on the fd themselves (bench's C writers).
   */
  vnetHdr?: boolean;
  /** TAPs outlive the process until destroyed (default true); false: each ends with its fd. */
  persistent?: boolean;
}

export class TapProvisioner implements PeerProvisioner {
  readonly kind = "tap" as const;
  private readonly lib: TapLib;
  private readonly held = new Map<string, number>();
  /** Extra queue fds (openQueue), closed by their vif's disconnect or with the daemon. */
  private readonly queues = new Set<number>();
  /** Per TAP name: its steering map, once a frontend configured a hash (tap-steering.ts). */
  private readonly steering = new Map<string, TapSteering>();

  /** Throws PeerError (one line) when this host cannot create TAPs at all. */
  constructor(private readonly opts: TapOptions) {
    const device = opts.device ?? TUN_DEVICE;
    try {
      accessSync(device, constants.R_OK | constants.W_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "EACCES";
      throw new PeerError(
        `qnicd: --peer tap: cannot use ${device} (${code}): run qnicd as root (or with CAP_NET_ADMIN and the tun module loaded), or choose --peer switch or --peer null`,
        os.errno[code as keyof typeof os.errno] ?? 13,
      );
    }
    this.lib = lib ??= openLib();
    // Checked at start: a daemon that would fail every vif at connect must not start at all.
    if (opts.bridge !== null && bridgeMissing(opts.bridge)) {
      throw new PeerError(`qnicd: --bridge ${opts.bridge}: no such bridge: create it (ip link add ${opts.bridge} type bridge) or drop --bridge`, os.errno.ENODEV);
    }
  }

  get joinsBridges(): boolean {
    return this.opts.bridge !== null;
  }

  create(name: string, settings: PeerSettings = {}): PeerHandle {
    // The vif's own bridge= wins over --bridge, as vif-bridge would honour it under netback.
    // Checked before the TAP exists (the bridge may have gone since the start), so a missing one
    // leaves nothing behind and the vif does not connect.
    const bridge = this.opts.bridge === null ? null : (settings.bridge ?? this.opts.bridge);
    if (bridge !== null && bridgeMissing(bridge)) {
      throw new PeerError(
        settings.bridge !== undefined
          ? `joining bridge ${bridge}, which the vif's config names (bridge=, B/bridge): no such bridge: create it (ip link add ${bridge} type bridge), or give the vif an existing bridge= (libxl writes xenbr0 when its config names none)`
          : `joining bridge ${bridge}: no such bridge: create it again, or restart qnicd without --bridge`,
        os.errno.ENODEV,
      );
    }
    if (this.held.has(name)) throw new PeerError(`${name}: this daemon already has a TAP by that name`, os.errno.EEXIST);
    const fd = this.lib.qnicd_tap_open(cstr(name), this.opts.vnetHdr === false ? 0 : 1, this.opts.persistent === false ? 0 : 1);
    if (fd < 0) {
      const why = -fd === os.errno.EBUSY ? " (another process holds a TAP with that name)" : -fd === os.errno.EINVAL ? " (a non-TAP interface has that name)" : "";
      throw new PeerError(`creating TAP ${name}: ${errnoName(-fd)}${why}`, -fd);
    }
    try {
      // Up, as vif-bridge would bring it; a failure here is not fatal (the script retries it).
      this.lib.qnicd_link_up(cstr(name));
      // As vif-bridge: the vif's mtu if the toolstack gave one, else the bridge's (a port with a
      // smaller MTU than its bridge would drop the bridge's large frames).
      const mtu = settings.mtu ?? (bridge !== null ? bridgeMtu(bridge) : undefined);
      if (mtu !== undefined) {
        const rc = this.lib.qnicd_link_mtu(cstr(name), mtu);
        if (rc < 0) throw new PeerError(`setting MTU ${mtu} on TAP ${name}: ${errnoName(-rc)}`, -rc);
      }
      // A TAP re-opened after a restart is still a port of its bridge: adding it again is EBUSY.
      if (bridge !== null && bridgeOf(name) !== bridge) {
        const rc = this.lib.qnicd_bridge_add(cstr(bridge), cstr(name));
        if (rc < 0) throw new PeerError(`adding TAP ${name} to bridge ${bridge}: ${errnoName(-rc)}`, -rc);
      }
    } catch (e) {
      this.lib.qnicd_tap_unpersist(fd);
      throw e;
    }
    this.held.set(name, fd);
    return { kind: "tap", name, fd };
  }

  openQueue(peer: PeerHandle, queue: number): PeerHandle {
    if (this.held.get(peer.name) !== peer.fd) throw new PeerError(`${peer.name}: opening queue ${queue}: this daemon does not hold that TAP`, os.errno.ENODEV);
    const fd = this.lib.qnicd_tap_queue_open(cstr(peer.name), this.opts.vnetHdr === false ? 0 : 1);
    if (fd < 0) {
      const why = -fd === os.errno.EINVAL ? " (the TAP was made single-queue by an older qnicd: detach and re-attach the vif to recreate it)" : "";
      throw new PeerError(`opening queue ${queue} of TAP ${peer.name}: ${errnoName(-fd)}${why}`, -fd);
    }
    this.queues.add(fd);
    return { kind: "tap", name: peer.name, fd };
  }

  closeQueue(queue: PeerHandle): void {
    if (!this.queues.delete(queue.fd)) return;
    this.lib.qnicd_fd_close(queue.fd);
  }

  /**
   * The queue fds are numbered by tun in the order they were attached: qnicd_tap_open's first,
   * then openQueue's in queue order (the backend opens them so, and closes them all together), so
   * the program's answer is the vif's queue number. A null config also clears a program an earlier
   * qnicd left on a persistent TAP.
   */
  steer(peer: PeerHandle, config: SteeringConfig | null): void {
    if (this.held.get(peer.name) !== peer.fd) return;
    // Kept while a configuration is on (its map takes the next one); null detaches and lets go.
    const s = this.steering.get(peer.name) ?? new TapSteering(peer.fd);
    if (config === null) this.steering.delete(peer.name);
    else this.steering.set(peer.name, s);
    try {
      s.apply(config);
    } catch (e) {
      if (!(e instanceof SteeringError)) throw e;
      throw new PeerError(`steering TAP ${peer.name}'s guest-rx queues by the frontend's hash: ${e.message}`, os.errno.EIO);
    }
  }

  destroy(peer: PeerHandle): void {
    const fd = this.held.get(peer.name);
    if (fd === undefined || fd !== peer.fd) return;
    this.dropSteering(peer.name);
    this.held.delete(peer.name);
    this.lib.qnicd_tap_unpersist(fd);
  }

  close(): void {
    this.closeQueues();
    for (const [name, fd] of this.held) {
      this.dropSteering(name);
      this.held.delete(name);
      this.lib.qnicd_tap_unpersist(fd);
    }
  }

  detach(): void {
    this.closeQueues();
    for (const [name, fd] of this.held) {
      // The program stays on the persistent TAP: the successor's connect replaces or clears it.
      this.dropSteering(name);
      this.held.delete(name);
      this.lib.qnicd_fd_close(fd);
    }
  }

  private dropSteering(name: string): void {
    this.steering.get(name)?.close();
    this.steering.delete(name);
  }

  private closeQueues(): void {
    for (const fd of this.queues) this.lib.qnicd_fd_close(fd);
    this.queues.clear();
  }

  removeLeftover(name: string): void {
    if (this.held.has(name) || !interfaceExists(name)) return;
    // Attaching by name to a persistent TAP nobody holds, then unpersisting it, ends it; a name
    // that is not a TAP fails to attach (EINVAL) and is left alone.
    const fd = this.lib.qnicd_tap_open(cstr(name), this.opts.vnetHdr === false ? 0 : 1, 0);
    if (fd >= 0) this.lib.qnicd_tap_unpersist(fd);
  }
}

/** True unless `name` is an existing Linux bridge (sysfs: a bridge has /sys/class/net/<name>/bridge). */
function bridgeMissing(name: string): boolean {
  return !existsSync(`/sys/class/net/${name}/bridge`);
}

function bridgeMtu(name: string): number | undefined {
  try {
    const n = Number(readFileSync(`/sys/class/net/${name}/mtu`, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The bridge an interface is a port of, or null (sysfs: /sys/class/net/<name>/master). */
function bridgeOf(name: string): string | null {
  try {
    return basename(readlinkSync(`/sys/class/net/${name}/master`));
  } catch {
    return null;
  }
}

/** Whether a network interface with this name exists (tests check TAPs come and go). */
export function interfaceExists(name: string): boolean {
  return (lib ??= openLib()).qnicd_if_exists(cstr(name)) === 1;
}
