// Xenstore wire protocol (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt).
export const XsOp = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
} as const;
export type XsOp = (typeof XsOp)[keyof typeof XsOp];

/** Error names in the order of xs_wire.h's xsd_errors table, with their Linux errno values. */
export const XsErrors = {
  EINVAL: 22,
  EACCES: 13,
  EEXIST: 17,
  EISDIR: 21,
  ENOENT: 2,
  ENOMEM: 12,
  ENOSPC: 28,
  EIO: 5,
  ENOTEMPTY: 39,
  ENOSYS: 38,
  EROFS: 30,
  EBUSY: 16,
  EAGAIN: 11,
  EISCONN: 106,
  E2BIG: 7,
  EPERM: 1,
} as const;
export type XsErrorName = keyof typeof XsErrors;

export const XS_HEADER_SIZE = 16;
/** Header field byte offsets (all u32 little-endian). */
export const XsHeader = { type: 0, reqId: 4, txId: 8, len: 12 } as const;
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;
