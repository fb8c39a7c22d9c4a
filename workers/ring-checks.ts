// Checks on a guest's ring shared by every data path (batched tx/rx and the seed baseline): what
// counts as a protocol violation must be decided in one place, whichever path serves the vif.

/** Response codes for tx slots that carry no grant-copy segment. */
export const R_ERROR = -1;
export const R_NULL = -2;
/** A slot answered OKAY without a frame of its own (a multicast-control request that succeeded). */
export const R_OKAY = -3;

export function hex(n: number): string {
  return (n >>> 0).toString(16);
}

/** The fault line for req_prod more than a ring ahead of what was answered (XSA-39). */
export function overflowMessage(dir: "tx" | "rx", prod: number, rspProdPvt: number): string {
  return `${dir} req_prod 0x${hex(prod)} is more than a ring ahead of 0x${hex(rspProdPvt)}`;
}

/**
 * The fault line for a tx packet's first slot whose own bytes run past its page. Netback's
 * xenvif_tx_build_gops treats this as fatal ("Cross page boundary", xenvif_fatal_tx_err in
 * drivers/net/xen-netback/netback.c): the payload would have to fragment, and no well-behaved
 * netfront builds such a slot. `bytes` is the slot's own share (the packet's size less its
 * fragments', as netback's xenvif_count_requests leaves txreq.size).
 */
export function crossPageMessage(first: number, offset: number, bytes: number): string {
  return `tx packet at 0x${hex(first)}: its first slot at offset ${offset} with ${bytes} bytes crosses its page`;
}
