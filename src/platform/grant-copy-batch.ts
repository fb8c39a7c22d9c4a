// Native memory for batches of struct gntdev_grant_copy_segment, and a writer for them. Used with
// GrantDevice.copy() on both platforms (the real one hands `addr` to IOCTL_GNTDEV_GRANT_COPY).
//
// The memory comes from libc (not a JS buffer), so the address native code holds can never be
// moved or reused by the GC (BUN-FACTS pitfall 2), and statuses written by native code are read
// through a toArrayBuffer view of that memory (pitfall 1). Keep the GrantCopyBatch referenced for
// as long as copies may use it; call free() when done (or let it live for the worker's lifetime).
import { dlopen, FFIType, toArrayBuffer } from "bun:ffi";
import { GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTDEV_COPY_SEGMENT_SIZE } from "../xen/grant-table.ts";
import { PlatformError, type GrantCopyBatchMemory } from "./types.ts";

let libc: { aligned_alloc: (align: number, size: number) => number | null; free: (p: number) => void } | undefined;

function c() {
  if (!libc) {
    const l = dlopen("libc.so.6", {
      aligned_alloc: { args: [FFIType.u64, FFIType.u64], returns: FFIType.ptr },
      free: { args: [FFIType.ptr], returns: FFIType.void },
    }).symbols;
    libc = { aligned_alloc: (a, s) => l.aligned_alloc(a, s) as number | null, free: (p) => l.free(p as never) };
  }
  return libc;
}

const SEG = GNTDEV_COPY_SEGMENT_SIZE; // 24
const TWO32 = 4294967296;
/** Largest copy per segment: a foreign side must not cross its 4096-byte page. */
export const GRANT_COPY_MAX_LEN = 4096;

/**
 * A batch of grant-copy segments in native memory. Segment i occupies bytes [24*i, 24*i+24):
 * source @0 and dest @8 (virt u64, or foreign {ref u32, offset u16, domid u16}), len u16 @16,
 * flags u16 @18, status i16 @20 (written by copy()).
 */
export class GrantCopyBatch implements GrantCopyBatchMemory {
  readonly addr: number;
  readonly capacity: number;
  readonly buffer: ArrayBuffer;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly i16: Int16Array;
  private freed = false;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0 || capacity > 65536)
      throw new PlatformError(`grant copy batch: capacity must be 1..65536 segments, got ${capacity}`, "EINVAL", -22);
    const bytes = Math.ceil((capacity * SEG) / 64) * 64;
    const p = c().aligned_alloc(64, bytes);
    if (!p) throw new PlatformError(`grant copy batch: allocating ${bytes} bytes of native memory failed: lower the batch size`, "ENOMEM", -12);
    this.addr = p;
    this.capacity = capacity;
    this.buffer = toArrayBuffer(p, 0, bytes);
    new Uint8Array(this.buffer).fill(0);
    this.u16 = new Uint16Array(this.buffer);
    this.u32 = new Uint32Array(this.buffer);
    this.i16 = new Int16Array(this.buffer);
  }

  private writeVirt(word: number, addr: number): void {
    this.u32[word] = addr >>> 0;
    this.u32[word + 1] = Math.floor(addr / TWO32);
  }

  private writeForeign(word: number, domid: number, ref: number, offset: number): void {
    this.u32[word] = ref >>> 0;
    this.u16[word * 2 + 2] = offset;
    this.u16[word * 2 + 3] = domid;
  }

  private finish(i: number, len: number, flags: number): void {
    const h = i * 12; // 24 bytes = 12 u16
    this.u16[h + 8] = len;
    this.u16[h + 9] = flags;
    this.i16[h + 10] = 0;
  }

  /** Copy from a page `domid` granted (ref, offset) into local memory at `destAddr` (guest tx). */
  setGrantToLocal(i: number, domid: number, ref: number, offset: number, destAddr: number, len: number): void {
    const w = i * 6;
    this.writeForeign(w, domid, ref, offset);
    this.writeVirt(w + 2, destAddr);
    this.finish(i, len, GNTCOPY_source_gref);
  }

  /** Copy from local memory at `srcAddr` into a page `domid` granted (guest rx). */
  setLocalToGrant(i: number, srcAddr: number, domid: number, ref: number, offset: number, len: number): void {
    const w = i * 6;
    this.writeVirt(w, srcAddr);
    this.writeForeign(w + 2, domid, ref, offset);
    this.finish(i, len, GNTCOPY_dest_gref);
  }

  /** Copy between two granted pages. */
  setGrantToGrant(i: number, srcDomid: number, srcRef: number, srcOffset: number, dstDomid: number, dstRef: number, dstOffset: number, len: number): void {
    const w = i * 6;
    this.writeForeign(w, srcDomid, srcRef, srcOffset);
    this.writeForeign(w + 2, dstDomid, dstRef, dstOffset);
    this.finish(i, len, GNTCOPY_source_gref | GNTCOPY_dest_gref);
  }

  /** GNTST_* status of segment i after copy() (0 = okay). */
  status(i: number): number {
    return this.i16[i * 12 + 10];
  }

  len(i: number): number {
    return this.u16[i * 12 + 8];
  }

  flags(i: number): number {
    return this.u16[i * 12 + 9];
  }

  /** Releases the native memory. The batch must not be used afterwards. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    c().free(this.addr);
  }
}
