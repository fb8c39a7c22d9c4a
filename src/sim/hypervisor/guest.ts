// Guest-side API of the simulated host: what a simulated netfront (a separate process) needs from
// "its kernel": pages of its RAM, grant-table entries (grant / end access, like Linux's
// gnttab_grant_foreign_access_ref and gnttab_end_foreign_access_ref), and an event-channel device.
import { toArrayBuffer } from "bun:ffi";
import { simPaths } from "../paths.ts";
import { SimHypervisorError, notInitialisedHint } from "./domains.ts";
import { SimEventChannelDevice } from "./evtchn.ts";
import { SIM_NR_RESERVED_GREFS, SIM_PAGE_SIZE, cstr, errnoName, simxen, track, untrack } from "./native.ts";

export interface GrantEntry {
  flags: number;
  domid: number;
  frame: number;
}

export interface GuestDomain {
  readonly dir: string;
  readonly domid: number;
  /** Pages of RAM (frames are 0..pages-1). */
  readonly pages: number;
  /** Allocates a free page of this domain's RAM; returns its frame. */
  allocPage(): number;
  freePage(frame: number): void;
  /** A view of one page of the shared RAM (the backend sees writes through its mappings/copies). */
  pageView(frame: number): Uint8Array;
  /** Native address of a page in this process. */
  pageAddress(frame: number): number;
  /** Grants `remoteDomid` access to `frame`; returns the gref (0..7 are reserved, as on Linux). */
  grantAccess(remoteDomid: number, frame: number, readonly: boolean): number;
  /** Revokes a grant; false while a backend still has it mapped (GTF_reading/GTF_writing set). */
  endAccess(gref: number): boolean;
  /** The grant_entry_v1 as the hypervisor sees it (tests, diagnostics). */
  grantEntry(gref: number): GrantEntry;
  /** This domain's event-channel device (opened with the domain). */
  readonly evtchn: SimEventChannelDevice;
  close(): void;
}

class SimGuestDomain implements GuestDomain {
  readonly dir: string;
  readonly domid: number;
  readonly pages: number;
  readonly evtchn: SimEventChannelDevice;
  private handle: number;
  private readonly shmDir: string;
  private readonly ramAddr: number;
  private readonly ram: ArrayBuffer;
  private readonly gnt: Uint32Array;

  constructor(dir: string, domid: number) {
    const p = simPaths(dir);
    this.dir = dir;
    this.shmDir = p.shmDir;
    this.domid = domid;
    const lib = simxen();
    const h = openGuestHandle(dir, domid, "guest", ": createDomain() first");
    this.handle = h;
    this.pages = lib.sx_guest_pages(h);
    this.ramAddr = Number(lib.sx_guest_ram(h));
    this.ram = toArrayBuffer(this.ramAddr, 0, this.pages * SIM_PAGE_SIZE);
    const gntAddr = Number(lib.sx_guest_gnttab(h));
    const entries = lib.sx_layout(1);
    this.gnt = new Uint32Array(toArrayBuffer(gntAddr, 0, entries * 8));
    try {
      this.evtchn = new SimEventChannelDevice(dir, domid);
    } catch (e) {
      lib.sx_guest_close(h);
      throw e;
    }
    track(this.shmDir, this);
  }

  private live(op: string): number {
    if (this.handle < 0) throw new SimHypervisorError(`guest dom${this.domid}: ${op} after close()`, 9);
    return this.handle;
  }

  private checkFrame(frame: number, op: string): void {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.pages)
      throw new SimHypervisorError(`guest dom${this.domid}: ${op}: frame ${frame} is outside RAM (0..${this.pages - 1})`, 22);
  }

  allocPage(): number {
    const rc = simxen().sx_guest_alloc_page(this.live("allocPage"));
    if (rc < 0) throw new SimHypervisorError(`guest dom${this.domid}: out of memory (${this.pages} pages): free pages or create the domain with more memoryPages`, -rc);
    return rc;
  }

  freePage(frame: number): void {
    this.checkFrame(frame, "freePage");
    const rc = simxen().sx_guest_free_page(this.live("freePage"), frame);
    if (rc < 0) throw new SimHypervisorError(`guest dom${this.domid}: freePage(${frame}): the page is not allocated`, -rc);
  }

  pageView(frame: number): Uint8Array {
    this.live("pageView");
    this.checkFrame(frame, "pageView");
    return new Uint8Array(this.ram, frame * SIM_PAGE_SIZE, SIM_PAGE_SIZE);
  }

  pageAddress(frame: number): number {
    this.live("pageAddress");
    this.checkFrame(frame, "pageAddress");
    return this.ramAddr + frame * SIM_PAGE_SIZE;
  }

  grantAccess(remoteDomid: number, frame: number, readonly: boolean): number {
    this.checkFrame(frame, "grantAccess");
    const rc = simxen().sx_guest_grant(this.live("grantAccess"), remoteDomid, frame, readonly ? 1 : 0);
    if (rc < 0)
      throw new SimHypervisorError(
        rc === -28 ? `guest dom${this.domid}: grant table full: end access to unused grants` : `guest dom${this.domid}: grantAccess(dom${remoteDomid}, frame ${frame}) failed (${errnoName(-rc)})`,
        -rc,
      );
    return rc;
  }

  endAccess(gref: number): boolean {
    const rc = simxen().sx_guest_end(this.live("endAccess"), gref);
    if (rc < 0) throw new SimHypervisorError(`guest dom${this.domid}: endAccess(${gref}): not a gref this domain granted (reserved are 0..${SIM_NR_RESERVED_GREFS - 1})`, -rc);
    return rc === 1;
  }

  grantEntry(gref: number): GrantEntry {
    this.live("grantEntry");
    const w = Atomics.load(this.gnt, gref * 2);
    return { flags: w & 0xffff, domid: w >>> 16, frame: Atomics.load(this.gnt, gref * 2 + 1) };
  }

  close(): void {
    if (this.handle < 0) return;
    this.evtchn.close();
    simxen().sx_guest_close(this.handle);
    this.handle = -1;
    untrack(this.shmDir, this);
  }
}

/** Opens the guest view of `domid` (its RAM, grant table and a fresh event-channel device). */
export function openGuestDomain(dir: string, domid: number): GuestDomain {
  return new SimGuestDomain(dir, domid);
}

/**
 * A native handle on dom<domid>'s RAM and grant table (sx_guest_open), for a guest or for any
 * process that reads its shared state (the grant audit). `what` starts the error line; `missing`
 * ends the hint for a domain that does not exist.
 */
export function openGuestHandle(dir: string, domid: number, what: string, missing = ""): number {
  const p = simPaths(dir);
  const h = simxen().sx_guest_open(cstr(p.shmDir), domid);
  if (h >= 0) return h;
  const errno = -h;
  const hint = errno === 2 || errno === 71 ? notInitialisedHint(dir) : errno === 3 ? `dom${domid} does not exist${missing}` : errnoName(errno);
  throw new SimHypervisorError(`${what}: opening dom${domid} in ${p.dir} failed (${errnoName(errno)}): ${hint}`, errno);
}
