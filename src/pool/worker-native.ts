// Bindings to native/worker.c: the worker loop's poll() and the control eventfd, one FFI call each.
// Loaded lazily once per thread (each Bun Worker has its own module instance; dlopen shares the .so).
import { dlopen, FFIType } from "bun:ffi";
import { nativeLibraryPath } from "../native/lib.ts";

const { i32, u64, ptr } = FFIType;

const symbols = {
  qw_eventfd: { args: [], returns: i32 },
  qw_eventfd_signal: { args: [i32], returns: i32 },
  qw_eventfd_drain: { args: [i32], returns: i32 },
  qw_close: { args: [i32], returns: i32 },
  qw_poll: { args: [ptr, ptr, i32, i32], returns: i32 },
  qw_munmap: { args: [u64, u64], returns: i32 },
  qw_gather: { args: [ptr, ptr, ptr, FFIType.u32, ptr, ptr, FFIType.u32], returns: FFIType.void },
} as const;

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];
let lib: Lib | undefined;

export function workerNative(): Lib {
  lib ??= dlopen(nativeLibraryPath("worker"), symbols).symbols;
  return lib;
}

/** Largest fd set one poll() takes (native/worker.c QW_MAX_FDS). */
export const POLL_MAX_FDS = 1027;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
