// sd_notify(3) without libsystemd: one datagram per state change to the AF_UNIX socket systemd
// names in $NOTIFY_SOCKET (a leading '@' means the abstract namespace). Type=notify units wait for
// READY=1 before `systemctl start` returns (and before a restart is considered done), so it is sent
// once every vif found at start is served; STOPPING=1 tells systemd the stop has begun. Without
// $NOTIFY_SOCKET (not under systemd) every call is a no-op. Node and Bun have no AF_UNIX datagram
// sockets, hence libc through bun:ffi; at most a few calls per daemon lifetime.
import { dlopen, FFIType, ptr } from "bun:ffi";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un): a 2-byte family and a 108-byte path. */
const SUN_PATH_MAX = 108;

type Libc = {
  socket: (domain: number, type: number, protocol: number) => number;
  sendto: (fd: number, buf: number, len: number, flags: number, addr: number, addrlen: number) => number;
  close: (fd: number) => number;
};
let libc: Libc | undefined;
function lib(): Libc {
  libc ??= dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64_fast },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  }).symbols as unknown as Libc;
  return libc;
}

/**
 * Sends `state` ("READY=1", "STOPPING=1", "STATUS=...") to systemd. Returns false when not under
 * systemd or when the send failed (systemd then simply never hears it; nothing else depends on it).
 */
export function sdNotify(state: string, env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  const where = env.NOTIFY_SOCKET;
  if (!where || (where[0] !== "/" && where[0] !== "@")) return false;
  const path = Buffer.from(where);
  if (path.length >= SUN_PATH_MAX) return false;
  if (where[0] === "@") path[0] = 0; // abstract socket: the name starts with a NUL byte
  const addr = Buffer.alloc(2 + path.length + (where[0] === "/" ? 1 : 0));
  addr.writeUInt16LE(AF_UNIX, 0);
  path.copy(addr, 2);
  const msg = Buffer.from(state);
  const l = lib();
  const fd = l.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    return Number(l.sendto(fd, ptr(msg), msg.length, MSG_NOSIGNAL, ptr(addr), addr.length)) === msg.length;
  } finally {
    l.close(fd);
  }
}
