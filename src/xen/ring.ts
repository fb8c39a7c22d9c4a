// Xen shared-ring layout and index arithmetic (xen/include/public/io/ring.h).
// Indices are free-running u32 counters; every comparison is done mod 2^32.

export const PAGE_SIZE = 4096;
export const RING_HEADER_SIZE = 64;

/** Byte offsets of the shared ring header fields. */
export const RingHeader = {
  reqProd: 0,
  reqEvent: 4,
  rspProd: 8,
  rspEvent: 12,
} as const;

/** Largest power of two number of slots of `slotSize` bytes fitting in one page after the header. */
export function ringSize(slotSize: number, pageSize = PAGE_SIZE): number {
  const fit = Math.floor((pageSize - RING_HEADER_SIZE) / slotSize);
  let n = 1;
  while (n * 2 <= fit) n *= 2;
  return n;
}

/** (a - b) mod 2^32, as an unsigned number. */
export function idxDiff(a: number, b: number): number {
  return (a - b) >>> 0;
}

/** Offset of slot `idx` in a ring of `size` slots (size a power of two). */
export function slotOffset(idx: number, size: number, slotSize: number): number {
  return RING_HEADER_SIZE + (idx & (size - 1)) * slotSize;
}

/** RING_REQUEST_PROD_OVERFLOW: the frontend claims more requests than the ring can hold (XSA-39). */
export function requestProdOverflow(reqProd: number, rspProdPvt: number, size: number): boolean {
  return idxDiff(reqProd, rspProdPvt) > size;
}

/** RING_REQUEST_CONS_OVERFLOW: consuming at `cons` would overrun responses not yet produced. */
export function requestConsOverflow(reqCons: number, rspProdPvt: number, size: number): boolean {
  return idxDiff(reqCons, rspProdPvt) >= size;
}

/** The notify decision of RING_PUSH_{REQUESTS,RESPONSES}_AND_CHECK_NOTIFY. */
export function needsNotify(newIdx: number, oldIdx: number, event: number): boolean {
  return idxDiff(newIdx, event) < idxDiff(newIdx, oldIdx);
}
