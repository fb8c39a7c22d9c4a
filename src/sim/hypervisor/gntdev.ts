// Grant device of the simulated host, the sim's /dev/xen/gntdev (backend side): map granted pages
// and batched grant copies, both checked like Xen's grant_table.c. The native side caches each
// domain's RAM and grant table mappings, so a copy is checks + memcpy, one FFI call per batch.
// As with Linux's gntdev, a process's mappings do not outlive it: the grants a killed backend had
// mapped are released by the next device opened or the guest's end-access (native/simxen.c,
// "Pins by owner"), so the guest can take its ring pages back.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { PlatformError, type GrantCopyBatchMemory, type GrantDevice, type GrantMapping } from "../../xen/devices.ts";
import { gntstName } from "../../xen/grant-table.ts";
import { simPaths } from "../paths.ts";
import { notInitialisedHint } from "./domains.ts";
import { SIM_PAGE_SIZE, SX_ERRNO_BASE, cstr, errnoName, simxen, track, untrack } from "./native.ts";

const MAX_MAP_PAGES = 4096;

class SimGrantMapping implements GrantMapping {
  readonly addr: number;
  readonly buffer: ArrayBuffer;
  readonly pages: number;
  /** @internal native mapping id; 0 once unmapped. */
  _id: number;

  constructor(private readonly dev: SimGrantDevice, addr: number, pages: number, id: number) {
    this.addr = addr;
    this.pages = pages;
    this._id = id;
    this.buffer = toArrayBuffer(addr, 0, pages * SIM_PAGE_SIZE);
  }

  unmap(): void {
    if (this._id === 0) return;
    this.dev._unmap(this);
    this._id = 0;
  }
}

export class SimGrantDevice implements GrantDevice {
  readonly domid: number;
  private handle: number;
  private readonly shmDir: string;
  private readonly mappings = new Set<SimGrantMapping>();

  constructor(dir: string, domid: number) {
    const p = simPaths(dir);
    this.shmDir = p.shmDir;
    this.domid = domid;
    const h = simxen().sx_gdev_open(cstr(p.shmDir), domid);
    if (h < 0) {
      const errno = -h;
      const hint = errno === 2 || errno === 71 ? notInitialisedHint(dir) : errno === 3 ? `dom${domid} does not exist` : errno === 23 ? "every grant-device slot of the host is in use (1024): close unused devices" : errnoName(errno);
      throw new PlatformError(`gntdev: opening the grant device for dom${domid} in ${p.dir} failed (${errnoName(errno)}): ${hint}`, errnoName(errno), h);
    }
    this.handle = h;
    track(this.shmDir, this);
  }

  /** The device's handle in native/simxen.c's process-wide table (its close works from any thread). */
  get reclaimId(): number {
    return this.handle;
  }

  private live(op: string): number {
    if (this.handle < 0) throw new PlatformError(`gntdev: ${op} on a closed grant device (dom${this.domid}): open a new one`, "EBADF", -9);
    return this.handle;
  }

  map(domid: number, refs: readonly number[], writable: boolean): GrantMapping {
    const h = this.live("map");
    if (refs.length === 0 || refs.length > MAX_MAP_PAGES)
      throw new PlatformError(`gntdev: map of ${refs.length} refs from dom${domid}: map between 1 and ${MAX_MAP_PAGES} refs at once`, "EINVAL", -22);
    const refArr = Uint32Array.from(refs);
    const out = new BigUint64Array(3);
    // refArr and out are arguments of this call (pitfalls 1 and 2: alive and not cached).
    const st = simxen().sx_gdev_map(h, domid, refArr, refArr.length, writable ? 1 : 0, out);
    if (st !== 0) {
      if (st <= SX_ERRNO_BASE) {
        const errno = SX_ERRNO_BASE - st;
        throw new PlatformError(`gntdev: mapping ${refs.length} refs from dom${domid} failed (${errnoName(errno)}): out of address space or memory`, errnoName(errno), -errno);
      }
      const ref = refs[Number(out[2])];
      const why =
        st === -2 ? `dom${domid} does not exist`
        : st === -3 ? `ref ${ref} is beyond dom${domid}'s grant table`
        : st === -9 ? `ref ${ref} names a frame outside dom${domid}'s memory`
        : `ref ${ref} is not granted to dom${this.domid}${writable ? " for writing" : ""} (not GTF_permit_access, another domid${writable ? ", or GTF_readonly" : ""})`;
      throw new PlatformError(`gntdev: map of dom${domid} ref ${ref} failed with GNTST_${gntstName(st)}: ${why}; the frontend gave a bad grant`, `GNTST_${gntstName(st)}`, st);
    }
    const m = new SimGrantMapping(this, Number(out[0]), refs.length, Number(out[1]));
    this.mappings.add(m);
    return m;
  }

  /** @internal called by a mapping's unmap(). */
  _unmap(m: SimGrantMapping): void {
    this.mappings.delete(m);
    if (this.handle >= 0) simxen().sx_gdev_unmap(this.handle, m._id);
  }

  copy(batch: GrantCopyBatchMemory, count: number): number {
    const h = this.live("copy");
    if (!Number.isInteger(count) || count < 0 || count > batch.capacity)
      throw new PlatformError(`gntdev: copy of ${count} segments from a batch of ${batch.capacity}: count must be 0..capacity`, "EINVAL", -22);
    if (count === 0) return 0;
    // The batch is native memory: statuses are read back through its toArrayBuffer view.
    return simxen().sx_gdev_copy(h, batch.addr as Pointer, count);
  }

  close(): void {
    if (this.handle < 0) return;
    for (const m of [...this.mappings]) m.unmap();
    simxen().sx_gdev_close(this.handle);
    this.handle = -1;
    untrack(this.shmDir, this);
  }
}
