// Checksum fill for guest tx frames flagged NETTXF_csum_blank (native/csum.c says what is parsed
// and refused). The worker marks the frames of a batch that asked for it in a status array it owns
// (one byte per frame, allocated once), calls fillChecksums once per batch, and reads each frame's
// result from the same array: C writes it through the argument, so it is never read stale.
import { dlopen, FFIType } from "bun:ffi";
import { nativeLibraryPath } from "../native/lib.ts";
import type { FrameBatch } from "./peer.ts";

function open() {
  return dlopen(nativeLibraryPath("csum"), {
    csum_fill: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    csum_fill_batch: { args: [FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
  }).symbols;
}
let lib: ReturnType<typeof open> | undefined;
const cs = () => (lib ??= open());

/** Per-frame result codes (native/csum.c CS_*). */
export const CsumStatus = {
  /** Not asked. */
  None: 0,
  Filled: 1,
  /** Not TCP/UDP over IPv4/IPv6: nothing to fill; the frame goes out as is. */
  NotL4: 2,
  /** An IP fragment: its checksum covers the whole datagram, so it cannot be filled. */
  Fragment: 3,
  /** A header or the L4 segment reaches past the frame: left as is. */
  Truncated: 4,
  /** Inconsistent headers (IP version/IHL, UDP length, jumbogram, IPv6 routing in use): left as is. */
  Malformed: 5,
} as const;
export type CsumStatusCode = (typeof CsumStatus)[keyof typeof CsumStatus];

/**
 * Fills the TCP/UDP checksum of every frame i < batch.count with status[i] != 0, and sets status[i]
 * to its CsumStatus. One native call for the batch. Returns how many were filled.
 */
export function fillChecksums(batch: FrameBatch, status: Uint8Array): number {
  if (status.length < batch.count) throw new RangeError(`checksum status array holds ${status.length} frames, the batch ${batch.count}`);
  if (batch.count === 0) return 0;
  return cs().csum_fill_batch(batch.base, batch.stride, batch.lensAddr, batch.count, status);
}

/** Fills one frame held in a JS buffer (tests, tools; the data path uses fillChecksums). */
export function fillChecksum(frame: Uint8Array): CsumStatusCode {
  return cs().csum_fill(frame, frame.length) as CsumStatusCode;
}
