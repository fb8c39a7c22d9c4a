// The netif control ring's ABI (xen/include/public/io/netif.h, "Control ring"): the request and
// response layouts, the hash types, and the constants of the operations. Checked against Xen's
// header by test/xen/abi.test.ts like the rest of src/xen. The ring's sizes and the operation and
// status codes themselves live beside the data rings' in netif.ts; they are re-exported here so the
// control ring's code reads from one place.
export {
  NETIF_CTRL_REQUEST_SIZE,
  NETIF_CTRL_RESPONSE_SIZE,
  NETIF_CTRL_RING_SIZE,
  NETIF_CTRL_SLOT_SIZE,
  XEN_NETBK_MAX_HASH_KEY_SIZE,
  XEN_NETBK_MAX_HASH_MAPPING_SIZE,
  XEN_NETIF_CTRL_HASH_ALGORITHM_NONE,
  XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
  XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW,
  XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER,
  XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED,
  XEN_NETIF_CTRL_STATUS_SUCCESS,
  XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING,
  XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING,
  XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE,
  XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS,
  XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE,
  XEN_NETIF_CTRL_TYPE_INVALID,
  XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM,
  XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS,
  XEN_NETIF_CTRL_TYPE_SET_HASH_KEY,
  XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING,
  XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE,
} from "./netif.ts";

/** struct xen_netif_ctrl_request: byte offsets (data[0..2] are three u32 words). */
export const CtrlRequest = { id: 0, type: 2, data0: 4, data1: 8, data2: 12 } as const;
/** struct xen_netif_ctrl_response: byte offsets. */
export const CtrlResponse = { id: 0, type: 2, status: 4, data: 8 } as const;

// Hash types: the bit numbers (_XEN_NETIF_CTRL_HASH_TYPE_*) are what a hash extra-info slot carries
// in its `type`; the masks (XEN_NETIF_CTRL_HASH_TYPE_*) are what SET_HASH_FLAGS / GET_HASH_FLAGS carry.
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV4 = 0;
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP = 1;
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV6 = 2;
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP = 3;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV4 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV4;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV6 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV6;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP;
/** Every hash type netback implements (what its GET_HASH_FLAGS answers, and SET_HASH_FLAGS accepts). */
export const XEN_NETIF_CTRL_HASH_TYPES_ALL =
  XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP | XEN_NETIF_CTRL_HASH_TYPE_IPV6 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP;

// Not in netif.h: how much of a grant one SET_HASH_MAPPING may name. Linux netback refuses more than
// a page of u32 entries (XEN_PAGE_SIZE / sizeof(u32)) before it looks at the table size.
export const XEN_NETBK_MAX_HASH_MAPPING_COPY = 4096 / 4;
