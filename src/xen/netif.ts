// Netif ABI (xen/include/public/io/netif.h): slot layouts, flags and status codes.
import { ringSize } from "./ring.ts";

export const NETIF_TX_REQUEST_SIZE = 12;
export const NETIF_TX_RESPONSE_SIZE = 4;
export const NETIF_RX_REQUEST_SIZE = 8;
export const NETIF_RX_RESPONSE_SIZE = 8;
export const NETIF_EXTRA_INFO_SIZE = 8;
export const NETIF_CTRL_REQUEST_SIZE = 16;
export const NETIF_CTRL_RESPONSE_SIZE = 12;

/** A ring slot is a union of request and response, so its size is the larger of the two. */
export const NETIF_TX_RING_SIZE = ringSize(Math.max(NETIF_TX_REQUEST_SIZE, NETIF_TX_RESPONSE_SIZE)); // 256
export const NETIF_RX_RING_SIZE = ringSize(Math.max(NETIF_RX_REQUEST_SIZE, NETIF_RX_RESPONSE_SIZE)); // 256
export const NETIF_CTRL_RING_SIZE = ringSize(Math.max(NETIF_CTRL_REQUEST_SIZE, NETIF_CTRL_RESPONSE_SIZE)); // 128
export const NETIF_TX_SLOT_SIZE = 12;
export const NETIF_RX_SLOT_SIZE = 8;
export const NETIF_CTRL_SLOT_SIZE = 16;

/** Byte offsets inside each slot type. */
export const TxRequest = { gref: 0, offset: 4, flags: 6, id: 8, size: 10 } as const;
export const TxResponse = { id: 0, status: 2 } as const;
export const RxRequest = { id: 0, gref: 4 } as const;
export const RxResponse = { id: 0, offset: 2, flags: 4, status: 6 } as const;
export const ExtraInfo = {
  type: 0, flags: 1,
  gsoSize: 2, gsoType: 4, gsoPad: 5, gsoFeatures: 6,
  mcastAddr: 2,
  hashType: 2, hashAlg: 3, hashValue: 4,
} as const;

export const NETTXF_csum_blank = 1 << 0;
export const NETTXF_data_validated = 1 << 1;
export const NETTXF_more_data = 1 << 2;
export const NETTXF_extra_info = 1 << 3;

// The rx csum bits are deliberately swapped relative to tx in the ABI.
export const NETRXF_data_validated = 1 << 0;
export const NETRXF_csum_blank = 1 << 1;
export const NETRXF_more_data = 1 << 2;
export const NETRXF_extra_info = 1 << 3;
export const NETRXF_gso_prefix = 1 << 4;

export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
export const NETIF_RSP_NULL = 1;

export const XEN_NETIF_EXTRA_TYPE_NONE = 0;
export const XEN_NETIF_EXTRA_TYPE_GSO = 1;
export const XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2;
export const XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3;
export const XEN_NETIF_EXTRA_TYPE_HASH = 4;
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;
export const XEN_NETIF_EXTRA_FLAG_MORE = 1;
export const XEN_NETIF_GSO_TYPE_NONE = 0;
export const XEN_NETIF_GSO_TYPE_TCPV4 = 1;
export const XEN_NETIF_GSO_TYPE_TCPV6 = 2;

export const XEN_NETIF_NR_SLOTS_MIN = 18;
// Not in netif.h: Linux netback's limits on the slots of one tx packet (xenvif_count_requests in
// drivers/net/xen-netback/netback.c). XEN_NETBK_LEGACY_SLOTS_MAX (common.h: XEN_NETIF_NR_SLOTS_MIN,
// the historical MAX_SKB_FRAGS) is what a frontend may always use; a frontend using more than
// fatal_skb_slots (module parameter, default FATAL_SKB_SLOTS_DEFAULT) is "considered malicious" and
// the vif is disabled. Extra-info slots count toward neither (netback counts the more_data chain).
export const XEN_NETBK_LEGACY_SLOTS_MAX = XEN_NETIF_NR_SLOTS_MIN;

/** The most multicast groups a vif's list holds (netback's XEN_NETBK_MCAST_MAX, common.h): the 65th add is refused. */
export const XEN_NETBK_MCAST_MAX = 64;
export const FATAL_SKB_SLOTS_DEFAULT = 20;
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

export const XEN_NETIF_CTRL_TYPE_INVALID = 0;
export const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS = 1;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS = 2;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY = 3;
export const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE = 4;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE = 5;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING = 6;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM = 7;
export const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE = 8;
export const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING = 9;
export const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING = 10;
export const XEN_NETIF_CTRL_STATUS_SUCCESS = 0;
export const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED = 1;
export const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER = 2;
export const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW = 3;
export const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE = 0;
export const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ = 1;
// Not in netif.h: Linux netback's own limits (XEN_NETBK_MAX_HASH_KEY_SIZE / _MAPPING_SIZE).
export const XEN_NETBK_MAX_HASH_KEY_SIZE = 40;
export const XEN_NETBK_MAX_HASH_MAPPING_SIZE = 128;
