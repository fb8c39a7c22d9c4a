// Grant-access audit of the simulated host (a test facility; real Xen has none): while enabled for
// a domain, every grant copy segment and every map/unmap a backend performs against that domain's
// grants is logged in the domain's shared memory (native/simxen.h, struct sx_audit), whichever
// process performs it. Tests use it to pin which grants a backend touched: nothing outside a
// consumed request (XSA-403), nothing still mapped when a response goes out (XSA-396).
import { simPaths } from "../paths.ts";
import { SimHypervisorError } from "./domains.ts";
import { openGuestHandle } from "./guest.ts";
import { simxen, track, untrack } from "./native.ts";

/** What the backend did with the grant (simxen.h SX_AUDIT_*). */
export const AuditOp = {
  /** grant copy with the granted page as source: the backend read it */
  copyFrom: 1,
  /** grant copy with the granted page as destination: the backend wrote it */
  copyTo: 2,
  mapReadonly: 3,
  mapWritable: 4,
  unmapReadonly: 5,
  unmapWritable: 6,
} as const;
export type AuditOpCode = (typeof AuditOp)[keyof typeof AuditOp];

const opNames: Record<number, string> = { 1: "copy-from", 2: "copy-to", 3: "map-ro", 4: "map-rw", 5: "unmap-ro", 6: "unmap-rw" };
export function auditOpName(op: number): string {
  return opNames[op] ?? `op ${op}`;
}

export interface GrantAccessRecord {
  ref: number;
  op: AuditOpCode;
  /** GNTST_* of the copy segment, or of this ref's pin for a map (0 = okay). */
  status: number;
  /** Copies: offset in the granted page and bytes; 0 for map/unmap. */
  offset: number;
  len: number;
  /** The process that performed it (the backend's worker process). */
  pid: number;
  /** The domain whose grant device performed it (the backend domain). */
  callerDomid: number;
}

export interface GrantAuditWindow {
  records: GrantAccessRecord[];
  /** Accesses since the window began (enable() or reset()), logged or not. */
  total: number;
  /** Accesses overwritten before they were read (the log keeps the newest `capacity`): not in records. */
  dropped: number;
  /** Records still being written when read (a backend mid-copy): not in records; take() leaves them for the next window. */
  inFlight: number;
}

const REC_BYTES = 24;

/**
 * The audit log of one domain, from any process on the host. Each process opens its own:
 * openGrantAudit(dir, domid).enable() in the test, then read() after the backend worked.
 */
export class GrantAudit {
  readonly domid: number;
  /** How many records the log holds; older ones are overwritten (and counted as dropped). */
  readonly capacity: number;
  private handle: number;
  private readonly shmDir: string;
  private readonly buf: Uint8Array;
  private readonly view: DataView;
  private readonly counts = new BigUint64Array(4);

  constructor(dir: string, domid: number) {
    const p = simPaths(dir);
    this.shmDir = p.shmDir;
    this.domid = domid;
    const lib = simxen();
    this.handle = openGuestHandle(dir, domid, "grant audit");
    this.capacity = lib.sx_layout(5);
    if (lib.sx_layout(6) !== REC_BYTES) throw new SimHypervisorError(`grant audit: native record is ${lib.sx_layout(6)} bytes, expected ${REC_BYTES}: rebuild native/`, 71);
    this.buf = new Uint8Array(this.capacity * REC_BYTES);
    this.view = new DataView(this.buf.buffer);
    track(this.shmDir, this);
  }

  private live(op: string): number {
    if (this.handle < 0) throw new SimHypervisorError(`grant audit dom${this.domid}: ${op} after close()`, 9);
    return this.handle;
  }

  /** Starts logging (a fresh, empty window). Stays on after this object closes, until disable(). */
  enable(): void {
    simxen().sx_guest_audit_enable(this.live("enable"), 1);
  }

  disable(): void {
    simxen().sx_guest_audit_enable(this.live("disable"), 0);
  }

  /** Empties the window (records logged afterwards start at index 0). */
  reset(): void {
    simxen().sx_guest_audit_reset(this.live("reset"));
  }

  /** Whether some process enabled auditing for this domain. */
  get enabled(): boolean {
    this.read(0);
    return this.counts[3] !== 0n;
  }

  /** The current window's records, oldest first (at most `max`); the window stays. */
  read(max = this.capacity): GrantAuditWindow {
    return this.collect(max, 0);
  }

  /**
   * The current window's records, and the next window begins right after the last one returned:
   * an access racing with take() (even one still being written) is in this window or the next.
   */
  take(): GrantAuditWindow {
    return this.collect(this.capacity, 1);
  }

  private collect(max: number, consume: 0 | 1): GrantAuditWindow {
    const n = simxen().sx_guest_audit_read(this.live("read"), this.buf, Math.min(max, this.capacity), this.counts, consume);
    const records: GrantAccessRecord[] = new Array(n);
    const v = this.view;
    for (let i = 0; i < n; i++) {
      const o = i * REC_BYTES;
      records[i] = {
        ref: v.getUint32(o + 4, true),
        pid: v.getUint32(o + 8, true),
        offset: v.getUint16(o + 12, true),
        len: v.getUint16(o + 14, true),
        op: v.getUint16(o + 16, true) as AuditOpCode,
        status: v.getInt16(o + 18, true),
        callerDomid: v.getUint32(o + 20, true),
      };
    }
    return { records, total: Number(this.counts[0]), dropped: Number(this.counts[1]), inFlight: Number(this.counts[2]) };
  }

  close(): void {
    if (this.handle < 0) return;
    simxen().sx_guest_close(this.handle);
    this.handle = -1;
    untrack(this.shmDir, this);
  }
}

/** Opens the grant-access audit of `domid` (any process; the domain must exist). */
export function openGrantAudit(dir: string, domid: number): GrantAudit {
  return new GrantAudit(dir, domid);
}
