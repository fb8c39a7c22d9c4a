// poll(2) on one fd for POLLIN, for harness scripts (blocks the thread for at most `ms`).
import { dlopen, FFIType } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
}).symbols;

/** Resolves true when `fd` is readable within `ms`. */
export async function poll(fd: number, ms: number): Promise<boolean> {
  const pfd = new Int32Array(2); // struct pollfd { int fd; short events; short revents; }
  pfd[0] = fd;
  pfd[1] = 1; // POLLIN in the low short, revents 0
  const rc = libc.poll(pfd, 1, Math.max(0, Math.floor(ms)));
  await Promise.resolve();
  return rc > 0;
}
