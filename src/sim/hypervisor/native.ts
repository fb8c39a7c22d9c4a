// Bindings to native/simxen.c, the simulated hypervisor. Loaded lazily, once per thread (each Bun
// Worker has its own module instance and dlopen()s the same library, whose handle tables are
// mutex-protected). Also tracks this thread's open sim objects per run directory, so
// teardownHypervisor() can close them before removing the files.
import { dlopen, FFIType } from "bun:ffi";
import { nativeLibraryPath } from "../../native/lib.ts";

const { i32, u32, ptr } = FFIType;

const symbols = {
  sx_init: { args: [ptr], returns: i32 },
  sx_teardown: { args: [ptr], returns: i32 },
  sx_domain_create: { args: [ptr, u32], returns: i32 },
  sx_domain_destroy: { args: [ptr, ptr, u32], returns: i32 },
  sx_domain_list: { args: [ptr, ptr, u32], returns: i32 },
  sx_domain_pages: { args: [ptr, u32], returns: i32 },
  sx_layout: { args: [i32], returns: i32 },

  sx_gdev_open: { args: [ptr, u32], returns: i32 },
  sx_gdev_map: { args: [i32, u32, ptr, u32, i32, ptr], returns: i32 },
  sx_gdev_unmap: { args: [i32, u32], returns: i32 },
  sx_gdev_copy: { args: [i32, ptr, u32], returns: i32 },
  sx_gdev_close: { args: [i32], returns: i32 },

  sx_edev_open: { args: [ptr, ptr, u32], returns: i32 },
  sx_edev_fd: { args: [i32], returns: i32 },
  sx_edev_bind_unbound: { args: [i32, u32], returns: i32 },
  sx_edev_bind_interdomain: { args: [i32, u32, u32], returns: i32 },
  sx_edev_unbind: { args: [i32, u32], returns: i32 },
  sx_edev_notify: { args: [i32, u32], returns: i32 },
  sx_edev_read: { args: [i32, ptr, u32], returns: i32 },
  sx_edev_unmask: { args: [i32, ptr, u32], returns: i32 },
  sx_edev_close: { args: [i32], returns: i32 },
  sx_edev_port_state: { args: [i32, u32, ptr], returns: i32 },
  sx_poll: { args: [i32, i32], returns: i32 },

  sx_guest_open: { args: [ptr, u32], returns: i32 },
  sx_guest_ram: { args: [i32], returns: ptr },
  sx_guest_gnttab: { args: [i32], returns: ptr },
  sx_guest_pages: { args: [i32], returns: i32 },
  sx_guest_alloc_page: { args: [i32], returns: i32 },
  sx_guest_free_page: { args: [i32, u32], returns: i32 },
  sx_guest_grant: { args: [i32, u32, u32, i32], returns: i32 },
  sx_guest_end: { args: [i32, u32], returns: i32 },
  sx_guest_close: { args: [i32], returns: i32 },
  sx_guest_audit_enable: { args: [i32, i32], returns: i32 },
  sx_guest_audit_reset: { args: [i32], returns: i32 },
  sx_guest_audit_read: { args: [i32, ptr, u32, ptr, i32], returns: i32 },
} as const;

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
let lib: Lib | undefined;

export function simxen(): Lib {
  lib ??= dlopen(nativeLibraryPath("simxen"), symbols).symbols;
  return lib;
}

/** A NUL-terminated copy of `s` for a `const char *` argument (kept alive by the caller's frame). */
export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** Mirrors simxen.h: callers outside the sim use these for sizing and tests. */
export const SIM_PAGE_SIZE = 4096;
export const SIM_NR_RESERVED_GREFS = 8;
/** sx_gdev_map returns SX_ERRNO_BASE - errno for failures that are not a GNTST status. */
export const SX_ERRNO_BASE = -1000;

const errnoNames: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 7: "E2BIG", 9: "EBADF", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES",
  16: "EBUSY", 17: "EEXIST", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 28: "ENOSPC", 36: "ENAMETOOLONG",
  71: "EPROTO", 107: "ENOTCONN",
};
export function errnoName(errno: number): string {
  return errnoNames[errno] ?? `errno ${errno}`;
}

// ---- per-thread registry of open sim objects, by shmDir ----

export interface Closable {
  close(): void;
}
const open = new Map<string, Set<Closable>>();

export function track(shmDir: string, obj: Closable): void {
  let set = open.get(shmDir);
  if (!set) open.set(shmDir, (set = new Set()));
  set.add(obj);
}
export function untrack(shmDir: string, obj: Closable): void {
  open.get(shmDir)?.delete(obj);
}
export function closeAllTracked(shmDir: string): void {
  const set = open.get(shmDir);
  if (!set) return;
  for (const obj of [...set]) {
    try {
      obj.close();
    } catch {
      // teardown goes on: the native side closes whatever is left
    }
  }
  open.delete(shmDir);
}
