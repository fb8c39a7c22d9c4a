// Linux's Xen devices as the data path uses them (/dev/xen/gntdev, /dev/xen/evtchn; linux uapi
// xen/gntdev.h and xen/evtchn.h), and the error they fail with. Declared here, below both of their
// implementations: src/platform/xen.ts over the real devices, src/sim/hypervisor over the simulated
// host. The platform seam (src/platform/types.ts) hands them out.

/** A contiguous mapping of one or more granted pages (IOCTL_GNTDEV_MAP_GRANT_REF + mmap). */
export interface GrantMapping {
  /** Native address of the first page; stable until unmap(). */
  readonly addr: number;
  /** A view of the mapped pages (toArrayBuffer of addr), `pages * 4096` bytes long. */
  readonly buffer: ArrayBuffer;
  readonly pages: number;
  /** munmap + IOCTL_GNTDEV_UNMAP_GRANT_REF. Idempotent. */
  unmap(): void;
}

export interface GrantDevice {
  /**
   * Maps `refs` granted by `domid` to us, as one contiguous range. Throws PlatformError carrying the
   * GNTST status Xen returns: bad_domain (no such domain), bad_gntref (ref beyond the table),
   * general_error (entry not GTF_permit_access, granted to another domain, or a writable map of a
   * GTF_readonly grant: Xen's _set_status_v1), bad_page (frame outside the granter's memory).
   */
  map(domid: number, refs: readonly number[], writable: boolean): GrantMapping;
  /**
   * Performs the first `count` segments of `batch` in ONE native call (IOCTL_GNTDEV_GRANT_COPY).
   * Each segment's status is written back into the batch; returns how many segments failed.
   * A failed segment never throws: the caller answers only that segment's request.
   * Statuses are Xen's (gnttab_copy): bad_domain, bad_gntref, general_error (not granted to us, or
   * dest is GTF_readonly), bad_copy_arg (a foreign side's offset + len > 4096, or no foreign side).
   * Linux's gntdev fails the WHOLE ioctl with EINVAL for the last two, so the xen platform checks
   * them itself before the ioctl and writes bad_copy_arg, keeping per-segment answers on both.
   */
  copy(batch: GrantCopyBatchMemory, count: number): number;
  /** Unmaps everything still mapped through this device and closes it. */
  close(): void;
  /**
   * What the platform's releaseOrphanedDevices needs to release this device should the thread that
   * opened it die (the process lives on, so nothing else would): a plain number another thread can
   * read from shared memory. -1 once closed.
   */
  readonly reclaimId: number;
}

/**
 * Native memory holding `capacity` struct gntdev_grant_copy_segment (24 bytes each). It is allocated
 * natively (not a JS-owned buffer), so native code writing statuses can never race the JIT or the GC
 * (BUN-FACTS pitfalls 1 and 2). See src/platform/grant-copy-batch.ts for the writer.
 */
export interface GrantCopyBatchMemory {
  readonly addr: number;
  readonly capacity: number;
  readonly buffer: ArrayBuffer;
}

export interface EventChannelDevice {
  /** Pollable (POLLIN) when at least one bound port has fired. */
  readonly fd: number;
  /** IOCTL_EVTCHN_BIND_INTERDOMAIN: returns the local port. Throws PlatformError on failure. */
  bindInterdomain(remoteDomid: number, remotePort: number): number;
  /** IOCTL_EVTCHN_BIND_UNBOUND_PORT: allocates a local port that `remoteDomid` may bind to. */
  bindUnboundPort(remoteDomid: number): number;
  /** IOCTL_EVTCHN_UNBIND. The remote end returns to unbound. */
  unbind(port: number): void;
  /** IOCTL_EVTCHN_NOTIFY. */
  notify(port: number): void;
  /**
   * Non-blocking read(): fills `out` with ports that fired and returns how many (0 when none).
   * A port that fired stays masked until written back with unmask().
   */
  readPending(out: Uint32Array): number;
  /** write() of `count` ports from `ports`: unmasks them; a port pending meanwhile fires again. */
  unmask(ports: Uint32Array, count: number): void;
  /** Unbinds every port bound through this device and closes it. */
  close(): void;
  /** As GrantDevice.reclaimId. */
  readonly reclaimId: number;
}

/** A failure at the platform seam, with the Xen status (GNTST_*) or errno that caused it. */
export class PlatformError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "PlatformError";
  }

  /**
   * The positive errno an error node reports this failure with (Linux's xenbus_dev_fatal writes
   * "<errno> <message>"): ENOENT for a grant that would not map, as __xenbus_map_ring
   * (drivers/xen/xenbus/xenbus_client.c) returns whatever the GNTST status; otherwise the errno
   * the device call failed with (EIO if it named none).
   */
  get errno(): number {
    if (this.code.startsWith("GNTST_")) return ENOENT;
    return Math.abs(this.status) || EIO;
  }
}

const ENOENT = 2;
const EIO = 5;
