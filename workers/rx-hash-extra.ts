// The hash extra-info slot of a guest-rx packet (netif.h: XEN_NETIF_EXTRA_TYPE_HASH), as Linux
// netback's xenvif_rx_next_skb / xenvif_rx_extra_slot build it: when the vif's frontend configured
// a hash (workers/vif-hash.ts) and the packet has one of an enabled type, the packet's first data
// slot carries NETRXF_extra_info and the next slot is the extra, written over that request's response
// whole: {type 4, flags 0, hash type (the _XEN_NETIF_CTRL_HASH_TYPE_* bit number), algorithm
// Toeplitz, value u32 little-endian}. The packet then needs one more rx request than its data.
import { ExtraInfo, NETIF_RX_RING_SIZE, NETIF_RX_SLOT_SIZE, XEN_NETIF_EXTRA_TYPE_HASH } from "../src/xen/netif.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ } from "../src/xen/ctrl-netif.ts";
import { RING_HEADER_SIZE } from "../src/xen/ring.ts";

const MASK = NETIF_RX_RING_SIZE - 1;
/** Type and flags share the first u16 (flags 0: no further extra), hash type and algorithm the second. */
const W_TYPE = ExtraInfo.type >> 1;
const W_HASH = ExtraInfo.hashType >> 1;
const W_VALUE = ExtraInfo.hashValue >> 1;

/** Stages the hash extra at ring index `idx` in the rx staging page's u16 view `s16` (published with the responses). */
export function stageHashExtra(s16: Uint16Array, idx: number, hashType: number, value: number): void {
  const h = (RING_HEADER_SIZE + (idx & MASK) * NETIF_RX_SLOT_SIZE) >> 1;
  s16[h + W_TYPE] = XEN_NETIF_EXTRA_TYPE_HASH;
  s16[h + W_HASH] = hashType | (XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ << 8);
  s16[h + W_VALUE] = value & 0xffff;
  s16[h + W_VALUE + 1] = value >>> 16;
}
