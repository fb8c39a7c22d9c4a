// Checks on a guest's ring shared by every data path (batched tx/rx and the seed baseline): what
// counts as a protocol violation must be decided in one place, whichever path serves the vif.
import {
  NETTXF_extra_info,
  NETTXF_more_data,
  FATAL_SKB_SLOTS_DEFAULT,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_MAX,
  XEN_NETIF_EXTRA_TYPE_NONE,
} from "../src/xen/netif.ts";

/** Response codes for tx slots that carry no grant-copy segment. */
export const R_ERROR = -1;
export const R_NULL = -2;

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

/**
 * The slots after a tx packet's first slot at `first` whose flags ask for what we never offered:
 * extra-info slots (answered NULL) while XEN_NETIF_EXTRA_FLAG_MORE, then more_data fragments
 * (answered ERROR). Writes their ids and codes at respId/respSeg[at + 1 ...] (the first slot's own
 * response is at `at`) and returns the index after them, or why the packet is a protocol violation
 * (the same checks as netback's xenvif_get_extras and xenvif_count_requests).
 */
export function walkUnsupportedTx(
  u8: Uint8Array,
  u16: Uint16Array,
  mask: number,
  first: number,
  flags: number,
  prod: number,
  respId: Uint16Array,
  respSeg: Int32Array,
  at: number,
): number | string {
  let idx = (first + 1) >>> 0;
  let n = at + 1;
  let slots = 1;
  const take = (): number | string => {
    if (idx === prod) return `tx packet at 0x${hex(first)} continues past req_prod 0x${hex(prod)}`;
    if (slots >= FATAL_SKB_SLOTS_DEFAULT) return `tx packet at 0x${hex(first)} spans more than ${FATAL_SKB_SLOTS_DEFAULT} slots`;
    const off = 64 + (idx & mask) * 12;
    idx = (idx + 1) >>> 0;
    slots++;
    return off;
  };
  if (flags & NETTXF_extra_info) {
    for (let more = true; more; ) {
      const off = take();
      if (typeof off === "string") return off;
      const type = u8[off];
      const eflags = u8[off + 1];
      if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX) return `tx extra info type ${type} is unknown`;
      respId[n] = 0;
      respSeg[n++] = R_NULL;
      more = (eflags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
    }
  }
  let f = flags;
  while (f & NETTXF_more_data) {
    const off = take();
    if (typeof off === "string") return off;
    f = u16[(off + 6) >> 1];
    respId[n] = u16[(off + 8) >> 1];
    respSeg[n++] = R_ERROR;
  }
  return n;
}
