// FrameBatch memory: frames and their lengths in native memory (peer.ts says why). The lens view is
// a toArrayBuffer of native memory, so lengths native code writes are never read stale (BUN-FACTS
// pitfall 1), and the memory comes from libc, so no GC can move or reuse it while native code holds
// its address (pitfall 2). Keep the batch referenced while any peer may use it; freeFrameBatch when done.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import type { FrameBatch } from "./peer.ts";
import { peerio } from "./peerio-lib.ts";

/** Largest stride: one frame slot must hold a whole 64 KiB frame and no more. */
export const MAX_STRIDE = 65536 + 64;

interface NativeBatch extends FrameBatch {
  /** The frames' bytes (capacity * stride), for building and checking frames outside the data path. */
  readonly bytes: Uint8Array;
}
const owned = new WeakMap<FrameBatch, { addr: number; freed: boolean }>();

/** A batch of `capacity` frame slots of `stride` bytes each (stride rounded up to 64 for alignment). */
export function createFrameBatch(capacity: number, stride: number): FrameBatch & { readonly bytes: Uint8Array } {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 65536)
    throw new RangeError(`frame batch: capacity must be 1..65536 frames, got ${capacity}`);
  if (!Number.isInteger(stride) || stride < 64 || stride > MAX_STRIDE)
    throw new RangeError(`frame batch: stride must be 64..${MAX_STRIDE} bytes, got ${stride}`);
  stride = Math.ceil(stride / 64) * 64;
  const lensBytes = Math.ceil((capacity * 4) / 64) * 64;
  // Lengths, then meta words, then the frames.
  const total = 2 * lensBytes + capacity * stride;
  const addr = peerio().pio_alloc(total) as number | null;
  if (!addr) throw new Error(`frame batch: allocating ${total} bytes of native memory failed: lower the batch capacity or stride`);
  const all = toArrayBuffer(addr, 0, total);
  const batch: NativeBatch = {
    base: addr + 2 * lensBytes,
    stride,
    capacity,
    lens: new Uint32Array(all, 0, capacity),
    lensAddr: addr,
    meta: new Uint32Array(all, lensBytes, capacity),
    metaAddr: addr + lensBytes,
    bytes: new Uint8Array(all, 2 * lensBytes, capacity * stride),
    count: 0,
  };
  owned.set(batch, { addr, freed: false });
  return batch;
}

/** Releases a batch's native memory; the batch must not be used afterwards. Idempotent. */
export function freeFrameBatch(batch: FrameBatch): void {
  const o = owned.get(batch);
  if (!o || o.freed) return;
  o.freed = true;
  peerio().pio_free(o.addr as Pointer);
}

/** Frame i's bytes as a view (tests, generators; not for the per-frame data path). */
export function frameView(batch: FrameBatch & { readonly bytes: Uint8Array }, i: number): Uint8Array {
  return batch.bytes.subarray(i * batch.stride, i * batch.stride + batch.lens[i]);
}
