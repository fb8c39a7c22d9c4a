// Test helpers for real TAP devices (need root and /dev/net/tun): create a non-persistent TAP the
// way the backend does (TUNSETIFF on a nonblocking fd), drive `ip`, read interface counters, and
// an AF_PACKET socket on the interface (Firecracker's TapTrafficSimulator idea) to see the kernel
// side of frames: what the kernel received from us, and frames the kernel transmits to the TAP.
import { dlopen, FFIType } from "bun:ffi";
import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";

const libc = dlopen("libc.so.6", {
  open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  if_nametoindex: { args: [FFIType.cstring], returns: FFIType.u32 },
  __errno_location: { args: [], returns: FFIType.ptr },
}).symbols;

const O_RDWR = 2, O_NONBLOCK = 0o4000, O_CLOEXEC = 0o2000000;
const TUNSETIFF = 0x400454ca, IFF_TAP = 0x0002, IFF_NO_PI = 0x1000;
const AF_PACKET = 17, SOCK_RAW = 3, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000, ETH_P_ALL = 0x0003;
const MSG_DONTWAIT = 0x40;

const cstr = (s: string) => Buffer.from(`${s}\0`);

export function canUseTap(): boolean {
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

let seq = 0;
/** An interface name no other test (or parallel run) uses: "qn" + pid + counter, <= 15 chars. */
export function uniqueIfName(tag: string): string {
  return `qn${tag}${process.pid % 100000}${seq++}`.slice(0, 15);
}

export function ip(...args: string[]): string {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

export function linkExists(name: string): boolean {
  return spawnSync("ip", ["link", "show", "dev", name], { stdio: "ignore" }).status === 0;
}

export interface TestTap {
  readonly name: string;
  readonly fd: number;
  /** Closing the only fd removes the interface. */
  close(): void;
}

/** A non-persistent, nonblocking TAP, brought up, with IPv6 off (unless asked) so the kernel sends no chatter. */
export function createTestTap(name: string, opts: { ipv6?: boolean } = {}): TestTap {
  const fd = libc.open(cstr("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new Error("opening /dev/net/tun failed: these tests need root and the tun module");
  const ifr = new Uint8Array(40);
  ifr.set(new TextEncoder().encode(name));
  new DataView(ifr.buffer).setUint16(16, IFF_TAP | IFF_NO_PI, true);
  if (libc.ioctl(fd, TUNSETIFF, ifr) < 0) {
    libc.close(fd);
    throw new Error(`TUNSETIFF ${name} failed: run as root`);
  }
  let open = true;
  try {
    spawnSync("sysctl", ["-q", "-w", `net.ipv6.conf.${name}.disable_ipv6=${opts.ipv6 ? 0 : 1}`], { stdio: "ignore" });
    ip("link", "set", "dev", name, "up");
  } catch (e) {
    libc.close(fd);
    throw e;
  }
  return {
    name,
    fd,
    close() {
      if (open) libc.close(fd);
      open = false;
    },
  };
}

/** /sys/class/net/<if>/statistics/<counter>. */
export function ifCounter(name: string, counter: "rx_packets" | "tx_packets" | "rx_bytes" | "tx_bytes" | "rx_dropped" | "tx_dropped"): number {
  return Number(readFileSync(`/sys/class/net/${name}/statistics/${counter}`, "utf8"));
}

export function ifMac(name: string): Uint8Array {
  const s = readFileSync(`/sys/class/net/${name}/address`, "utf8").trim();
  return Uint8Array.from(s.split(":").map((h) => parseInt(h, 16)));
}

/** An AF_PACKET socket bound to one interface: sees every frame crossing it, can transmit on it. */
export class PacketSocket {
  readonly fd: number;
  private readonly buf = new Uint8Array(65536);
  constructor(ifname: string) {
    const fd = libc.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0x0300 /* htons(ETH_P_ALL) */);
    if (fd < 0) throw new Error("AF_PACKET socket failed: run as root");
    const sll = new Uint8Array(20);
    const dv = new DataView(sll.buffer);
    dv.setUint16(0, AF_PACKET, true);
    dv.setUint16(2, ETH_P_ALL, false);
    dv.setInt32(4, libc.if_nametoindex(cstr(ifname)), true);
    if (libc.bind(fd, sll, 20) < 0) {
      libc.close(fd);
      throw new Error(`binding AF_PACKET to ${ifname} failed`);
    }
    this.fd = fd;
  }
  /** Every frame queued on the socket now (both directions). */
  drain(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (;;) {
      const n = Number(libc.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT));
      if (n < 0) break;
      out.push(this.buf.slice(0, n));
    }
    return out;
  }
  /** Transmits `frame` on the interface: for a TAP that means the TAP's fd can read it. */
  send(frame: Uint8Array): void {
    const n = Number(libc.send(this.fd, frame, frame.length, 0));
    if (n !== frame.length) throw new Error(`AF_PACKET send returned ${n}`);
  }
  close(): void {
    libc.close(this.fd);
  }
}

export async function until(what: string, cond: () => boolean, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (cond()) return;
    await Bun.sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}
