// The platform seam on real Xen: /dev/xen/gntdev and /dev/xen/evtchn of a Linux dom0 (or driver
// domain), through native/xendev.c, one FFI call per operation or per copy batch. Same behaviour
// as SimPlatform: PlatformError with a GNTST status for a bad grant, per-segment copy statuses
// (including bad_copy_arg, which Linux would turn into a whole-ioctl EINVAL), readPending/unmask.
import { dlopen, FFIType, ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { nativeLibraryPath } from "../native/lib.ts";
import { GNTST_general_error, GNTST_okay, gntstName } from "../xen/grant-table.ts";
import { GrantCopyBatch } from "./grant-copy-batch.ts";
import {
  PlatformError,
  type EventChannelDevice,
  type GrantCopyBatchMemory,
  type GrantDevice,
  type GrantMapping,
  type OrphanedDevices,
  type Platform,
  type PlatformConfig,
} from "./types.ts";

export const XEN_GNTDEV_PATH = "/dev/xen/gntdev";
export const XEN_EVTCHN_PATH = "/dev/xen/evtchn";
export const XEN_GNTALLOC_PATH = "/dev/xen/gntalloc";
export const XENSTORED_SOCKET_PATH = "/var/run/xenstored/socket";
export const XENBUS_DEVICE_PATH = "/dev/xen/xenbus";
const PAGE = 4096;
const MAX_MAP_PAGES = 4096;

const symbols = {
  xd_open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
  xd_close: { args: [FFIType.i32], returns: FFIType.i32 },
  xd_munmap: { args: [FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  xd_gnt_map: { args: [FFIType.i32, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  xd_gnt_unmap: { args: [FFIType.i32, FFIType.u64, FFIType.u32, FFIType.u64], returns: FFIType.i32 },
  xd_gnt_copy: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  xd_evtchn_bind_interdomain: { args: [FFIType.i32, FFIType.u32, FFIType.u32], returns: FFIType.i32 },
  xd_evtchn_bind_unbound: { args: [FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  xd_evtchn_unbind: { args: [FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  xd_evtchn_notify: { args: [FFIType.i32, FFIType.u32], returns: FFIType.i32 },
  xd_evtchn_read: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  xd_evtchn_unmask: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  xd_gntalloc_alloc: { args: [FFIType.i32, FFIType.u32, FFIType.u32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  xd_gntalloc_free: { args: [FFIType.i32, FFIType.u64, FFIType.u32, FFIType.u64], returns: FFIType.i32 },
  xd_sizeof_copy_seg: { args: [], returns: FFIType.i32 },
} as const;

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
let lib: Lib | undefined;
/** native/xendev.c, loaded (and built) on first use. */
export function xendev(): Lib {
  lib ??= dlopen(nativeLibraryPath("xendev"), symbols).symbols;
  return lib;
}

const errnoNames: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 9: "EBADF", 11: "EAGAIN",
  12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 22: "EINVAL", 24: "EMFILE",
  27: "EFBIG", 28: "ENOSPC", 38: "ENOSYS", 95: "EOPNOTSUPP",
};
export function errnoName(errno: number): string {
  return errnoNames[errno] ?? `errno ${errno}`;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

function openDevice(path: string, nonblock: boolean, what: string, module: string): number {
  const fd = xendev().xd_open(cstr(path), nonblock ? 1 : 0);
  if (fd >= 0) return fd;
  const errno = -fd;
  const hint =
    errno === 2 || errno === 6 || errno === 19
      ? existsSync("/proc/xen") || existsSync("/sys/hypervisor/type")
        ? `load the driver: modprobe ${module}`
        : "this machine does not run under Xen: use the simulated host (kind \"sim\")"
      : errno === 13 || errno === 1
        ? "run as root (the backend needs dom0 privileges)"
        : errnoName(errno);
  throw new PlatformError(`xen platform: opening ${what} ${path} failed (${errnoName(errno)}): ${hint}`, errnoName(errno), fd);
}

class XenGrantMapping implements GrantMapping {
  readonly buffer: ArrayBuffer;
  private live = true;

  constructor(
    private readonly dev: XenGrantDevice,
    readonly addr: number,
    readonly pages: number,
    /** @internal gntdev's index (mmap offset) for the unmap ioctl. */
    readonly _index: number,
  ) {
    this.buffer = toArrayBuffer(addr as Pointer, 0, pages * PAGE);
  }

  unmap(): void {
    if (!this.live) return;
    this.live = false;
    this.dev._unmap(this);
  }
}

export class XenGrantDevice implements GrantDevice {
  private fd: number;
  private readonly mappings = new Set<XenGrantMapping>();
  /** Probe memory for explaining a failed map (kept referenced: the kernel writes into it). */
  private probeBatch: GrantCopyBatch | undefined;
  private readonly probeDest = new Uint8Array(64);

  constructor(readonly domid: number) {
    this.fd = openDevice(XEN_GNTDEV_PATH, false, "the grant device", "xen-gntdev");
  }

  private liveFd(op: string): number {
    if (this.fd < 0) throw new PlatformError(`gntdev: ${op} on a closed grant device: open a new one`, "EBADF", -9);
    return this.fd;
  }

  /** The /dev/xen/gntdev fd (-1 once closed), for a supervisor that must release a dead worker's devices. */
  get deviceFd(): number {
    return this.fd;
  }

  /** The device fd: closing it after munmap()ing each mapping drops every grant map (releaseXenOrphans). */
  get reclaimId(): number {
    return this.fd;
  }

  map(domid: number, refs: readonly number[], writable: boolean): GrantMapping {
    const fd = this.liveFd("map");
    if (refs.length === 0 || refs.length > MAX_MAP_PAGES)
      throw new PlatformError(`gntdev: map of ${refs.length} refs from dom${domid}: map between 1 and ${MAX_MAP_PAGES} refs at once`, "EINVAL", -22);
    const refArr = Uint32Array.from(refs);
    const out = new BigUint64Array(2);
    // refArr and out are arguments of this call (BUN-FACTS pitfalls 1 and 2).
    const rc = xendev().xd_gnt_map(fd, domid, refArr, refArr.length, writable ? 1 : 0, out);
    if (rc < 0) this.explainMapFailure(domid, refs, writable, -rc);
    const m = new XenGrantMapping(this, Number(out[0]), refs.length, Number(out[1]));
    this.mappings.add(m);
    return m;
  }

  /**
   * gntdev reports a failed grant map only as an errno (EINVAL/EFAULT from mmap); the seam promises
   * the GNTST status. A one-byte grant copy from each ref asks Xen for it: the first ref whose read
   * fails gives its status; if every ref reads (a writable map of a read-only grant), it is
   * general_error, as Xen's map path says.
   */
  private explainMapFailure(domid: number, refs: readonly number[], writable: boolean, errno: number): never {
    if (errno === 12 || errno === 7 || errno === 28)
      throw new PlatformError(`gntdev: mapping ${refs.length} refs from dom${domid} failed (${errnoName(errno)}): out of address space or gntdev's limit`, errnoName(errno), -errno);
    this.probeBatch ??= new GrantCopyBatch(1);
    const b = this.probeBatch;
    for (const ref of refs) {
      // The kernel writes one byte into probeDest (a field: kept alive), which nobody reads.
      b.setGrantToLocal(0, domid, ref, 0, ptr(this.probeDest), 1);
      const rc = xendev().xd_gnt_copy(this.fd, b.addr as Pointer, 1);
      const st = rc < 0 ? GNTST_general_error : b.status(0);
      if (st !== GNTST_okay) {
        const why =
          st === -2 ? `dom${domid} does not exist`
          : st === -3 ? `ref ${ref} is beyond dom${domid}'s grant table`
          : st === -9 ? `ref ${ref} names a frame outside dom${domid}'s memory`
          : `ref ${ref} is not granted to dom${this.domid} (not GTF_permit_access, or another domid)`;
        throw new PlatformError(`gntdev: map of dom${domid} ref ${ref} failed with GNTST_${gntstName(st)}: ${why}; the frontend gave a bad grant`, `GNTST_${gntstName(st)}`, st);
      }
    }
    const ref = refs[0];
    throw new PlatformError(
      `gntdev: map of dom${domid} refs [${refs.join(",")}] failed with GNTST_general_error (${errnoName(errno)} from gntdev)${writable ? `: a ref is granted read-only (GTF_readonly) but was mapped writable` : ""}; the frontend gave a bad grant (first ref ${ref})`,
      "GNTST_general_error",
      GNTST_general_error,
    );
  }

  /** @internal called by a mapping's unmap(). */
  _unmap(m: XenGrantMapping): void {
    this.mappings.delete(m);
    if (this.fd >= 0) xendev().xd_gnt_unmap(this.fd, m.addr, m.pages, m._index);
  }

  copy(batch: GrantCopyBatchMemory, count: number): number {
    const fd = this.liveFd("copy");
    if (!Number.isInteger(count) || count < 0 || count > batch.capacity)
      throw new PlatformError(`gntdev: copy of ${count} segments from a batch of ${batch.capacity}: count must be 0..capacity`, "EINVAL", -22);
    if (count === 0) return 0;
    // The batch is native memory: statuses are read back through its toArrayBuffer view.
    const rc = xendev().xd_gnt_copy(fd, batch.addr as Pointer, count);
    if (rc < 0)
      throw new PlatformError(
        `gntdev: grant copy of ${count} segments failed (${errnoName(-rc)}): ${-rc === 14 ? "a local address in the batch is not mapped in this process" : "the kernel rejected the batch"}`,
        errnoName(-rc),
        rc,
      );
    return rc;
  }

  close(): void {
    if (this.fd < 0) return;
    for (const m of [...this.mappings]) m.unmap();
    xendev().xd_close(this.fd);
    this.fd = -1;
    this.probeBatch?.free();
    this.probeBatch = undefined;
  }
}

export class XenEventChannelDevice implements EventChannelDevice {
  private fdValue: number;
  private readonly bound = new Set<number>();

  constructor(readonly domid: number) {
    this.fdValue = openDevice(XEN_EVTCHN_PATH, true, "the event-channel device", "xen-evtchn");
  }

  get fd(): number {
    return this.fdValue;
  }

  /** The device fd: closing it unbinds every port bound through it. */
  get reclaimId(): number {
    return this.fdValue;
  }

  private live(op: string): number {
    if (this.fdValue < 0) throw new PlatformError(`evtchn: ${op} on a closed device: open a new one`, "EBADF", -9);
    return this.fdValue;
  }

  bindInterdomain(remoteDomid: number, remotePort: number): number {
    const rc = xendev().xd_evtchn_bind_interdomain(this.live("bindInterdomain"), remoteDomid, remotePort);
    if (rc < 0) {
      const errno = -rc;
      const hint =
        errno === 22 ? `dom${remoteDomid} port ${remotePort} is not an unbound port offered to dom${this.domid}`
        : errno === 3 ? `dom${remoteDomid} does not exist`
        : errno === 1 ? `dom${remoteDomid} port ${remotePort} was offered to another domain`
        : errnoName(errno);
      throw new PlatformError(`evtchn: binding to dom${remoteDomid} port ${remotePort} failed (${errnoName(errno)}): ${hint}`, errnoName(errno), rc);
    }
    this.bound.add(rc);
    return rc;
  }

  bindUnboundPort(remoteDomid: number): number {
    const rc = xendev().xd_evtchn_bind_unbound(this.live("bindUnboundPort"), remoteDomid);
    if (rc < 0)
      throw new PlatformError(`evtchn: allocating an unbound port for dom${remoteDomid} failed (${errnoName(-rc)})`, errnoName(-rc), rc);
    this.bound.add(rc);
    return rc;
  }

  unbind(port: number): void {
    const rc = xendev().xd_evtchn_unbind(this.live("unbind"), port);
    this.bound.delete(port);
    if (rc < 0)
      throw new PlatformError(`evtchn: unbinding port ${port} failed (${errnoName(-rc)}): the port is not bound through this device`, errnoName(-rc), rc);
  }

  notify(port: number): void {
    const rc = xendev().xd_evtchn_notify(this.live("notify"), port);
    if (rc < 0)
      throw new PlatformError(`evtchn: notify on port ${port} failed (${errnoName(-rc)}): the port is not bound through this device`, errnoName(-rc), rc);
  }

  readPending(out: Uint32Array): number {
    const fd = this.live("readPending");
    // `out` is an argument of the call that writes it (BUN-FACTS pitfall 1).
    const rc = xendev().xd_evtchn_read(fd, out, out.length);
    if (rc >= 0) return rc;
    if (rc === -27) {
      // EFBIG: the kernel's queue overflowed and was reset; events were lost, so report every
      // bound port as fired (a spurious wakeup is harmless, a lost one stalls a ring).
      let n = 0;
      for (const p of this.bound) {
        if (n >= out.length) break;
        out[n++] = p;
      }
      return n;
    }
    throw new PlatformError(`evtchn: read failed (${errnoName(-rc)})`, errnoName(-rc), rc);
  }

  unmask(ports: Uint32Array, count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > ports.length)
      throw new PlatformError(`evtchn: unmask of ${count} ports from an array of ${ports.length}`, "EINVAL", -22);
    if (count === 0) return;
    const rc = xendev().xd_evtchn_unmask(this.live("unmask"), ports, count);
    if (rc < 0) throw new PlatformError(`evtchn: unmask failed (${errnoName(-rc)})`, errnoName(-rc), rc);
  }

  close(): void {
    if (this.fdValue < 0) return;
    // Closing the fd unbinds every port bound through it (the kernel's release does so).
    xendev().xd_close(this.fdValue);
    this.fdValue = -1;
    this.bound.clear();
  }
}

/**
 * Releases a dead thread's /dev/xen devices: each mapping munmap()ed first (a gntdev mmap outlives
 * its fd), then the fds closed; the kernel then unbinds every port and drops every grant map, as
 * when a process exits.
 */
export function releaseXenOrphans(d: OrphanedDevices): string[] {
  const released: string[] = [];
  for (const m of d.mappings) if (xendev().xd_munmap(m.addr, m.pages * PAGE) === 0) released.push(`mapping of ${m.pages} pages`);
  if (d.grantDevice >= 0 && xendev().xd_close(d.grantDevice) === 0) released.push("grant device fd");
  if (d.eventChannelDevice >= 0 && xendev().xd_close(d.eventChannelDevice) === 0) released.push("event-channel device fd");
  return released;
}

export class XenPlatform implements Platform {
  readonly kind = "xen" as const;
  readonly domid: number;
  readonly xenstorePath: string;
  readonly config: PlatformConfig;
  private readonly devices = new Set<{ close(): void }>();
  private closed = false;

  constructor(config: Extract<PlatformConfig, { kind: "xen" }>) {
    this.config = { kind: "xen", domid: config.domid };
    this.domid = config.domid;
    if (!Number.isInteger(config.domid) || config.domid < 0 || config.domid >= 0x7ff0)
      throw new PlatformError(`xen platform: domid ${config.domid} is not a domain id: use 0 for dom0`, "EINVAL", -22);
    this.xenstorePath = existsSync(XENSTORED_SOCKET_PATH) ? XENSTORED_SOCKET_PATH : XENBUS_DEVICE_PATH;
    if (!existsSync(XEN_GNTDEV_PATH) && !existsSync("/proc/xen/capabilities") && !existsSync("/sys/hypervisor/type"))
      throw new PlatformError(
        `xen platform: ${XEN_GNTDEV_PATH} is missing and this machine does not run under Xen: use the simulated host (kind "sim")`,
        "ENODEV",
        -19,
      );
  }

  private check(op: string): void {
    if (this.closed) throw new PlatformError(`xen platform: ${op} after close(): open a new platform`, "EBADF", -9);
  }

  openGrantDevice(): GrantDevice {
    this.check("openGrantDevice");
    const dev = new XenGrantDevice(this.domid);
    this.devices.add(dev);
    return dev;
  }

  openEventChannelDevice(): EventChannelDevice {
    this.check("openEventChannelDevice");
    const dev = new XenEventChannelDevice(this.domid);
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

/**
 * /dev/xen/gntalloc: pages this domain grants to `domid` (the harness uses it to be both granter
 * and grantee in dom0). Not part of the backend's seam.
 */
export class XenGrantAlloc {
  private fd: number;
  constructor() {
    this.fd = openDevice(XEN_GNTALLOC_PATH, false, "the grant allocator", "xen-gntalloc");
  }

  alloc(domid: number, count: number, readonly = false): { refs: number[]; addr: number; buffer: ArrayBuffer; free(): void } {
    const refs = new Uint32Array(count);
    const out = new BigUint64Array(2);
    const rc = xendev().xd_gntalloc_alloc(this.fd, domid, count, readonly ? 1 : 0, refs, out);
    if (rc < 0) throw new PlatformError(`gntalloc: granting ${count} pages to dom${domid} failed (${errnoName(-rc)})`, errnoName(-rc), rc);
    const addr = Number(out[0]);
    const index = Number(out[1]);
    let live = true;
    const fd = this.fd;
    return {
      refs: [...refs],
      addr,
      buffer: toArrayBuffer(addr as Pointer, 0, count * PAGE),
      free: () => {
        if (!live) return;
        live = false;
        xendev().xd_gntalloc_free(fd, addr, count, index);
      },
    };
  }

  close(): void {
    if (this.fd < 0) return;
    xendev().xd_close(this.fd);
    this.fd = -1;
  }
}
