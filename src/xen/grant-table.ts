// Grant table ABI (xen/include/public/grant_table.h) and the gntdev ioctls (linux uapi xen/gntdev.h).

/** grant_entry_v1: flags u16 @0, domid u16 @2, frame u32 @4. */
export const GRANT_ENTRY_V1_SIZE = 8;
export const GrantEntryV1 = { flags: 0, domid: 2, frame: 4 } as const;

export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_transitive = 3;
export const GTF_type_mask = 3;
export const GTF_readonly = 1 << 2;
export const GTF_reading = 1 << 3;
export const GTF_writing = 1 << 4;
export const GTF_sub_page = 1 << 8;

export const GNTCOPY_source_gref = 1 << 0;
export const GNTCOPY_dest_gref = 1 << 1;

export const GNTST_okay = 0;
export const GNTST_general_error = -1;
export const GNTST_bad_domain = -2;
export const GNTST_bad_gntref = -3;
export const GNTST_bad_handle = -4;
export const GNTST_bad_virt_addr = -5;
export const GNTST_bad_dev_addr = -6;
export const GNTST_no_device_space = -7;
export const GNTST_permission_denied = -8;
export const GNTST_bad_page = -9;
export const GNTST_bad_copy_arg = -10;
export const GNTST_address_too_big = -11;
export const GNTST_eagain = -12;

const gntstNames: Record<number, string> = {
  0: "okay", [-1]: "general_error", [-2]: "bad_domain", [-3]: "bad_gntref", [-4]: "bad_handle",
  [-5]: "bad_virt_addr", [-6]: "bad_dev_addr", [-7]: "no_device_space", [-8]: "permission_denied",
  [-9]: "bad_page", [-10]: "bad_copy_arg", [-11]: "address_too_big", [-12]: "eagain",
};
export function gntstName(status: number): string {
  return gntstNames[status] ?? `unknown(${status})`;
}

/**
 * struct gntdev_grant_copy_segment (24 bytes). `source`/`dest` are each either a virtual address
 * (u64) or a foreign {ref u32 @0, offset u16 @4, domid u16 @6}, chosen by `flags`.
 */
export const GNTDEV_COPY_SEGMENT_SIZE = 24;
export const GntdevCopySegment = {
  source: 0, dest: 8, len: 16, flags: 18, status: 20,
  foreignRef: 0, foreignOffset: 4, foreignDomid: 6,
} as const;

export const IOCTL_GNTDEV_MAP_GRANT_REF = 0x00184700;
export const IOCTL_GNTDEV_UNMAP_GRANT_REF = 0x00104701;
export const IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR = 0x00184702;
export const IOCTL_GNTDEV_SET_MAX_GRANTS = 0x00044703;
export const IOCTL_GNTDEV_SET_UNMAP_NOTIFY = 0x00104707;
export const IOCTL_GNTDEV_GRANT_COPY = 0x00104708;
/** ioctl_gntdev_map_grant_ref: count u32 @0, pad u32 @4, index u64 @8, refs[] of {domid u32, ref u32} @16. */
export const GntdevMapGrantRef = { count: 0, pad: 4, index: 8, refs: 16, refSize: 8 } as const;
/** ioctl_gntdev_unmap_grant_ref: index u64 @0, count u32 @8, pad u32 @12. */
export const GntdevUnmapGrantRef = { index: 0, count: 8, pad: 12, size: 16 } as const;
/** ioctl_gntdev_grant_copy: count u32 @0, segments pointer @8. */
export const GntdevGrantCopy = { count: 0, segments: 8, size: 16 } as const;
