// A multi-queue TAP steered by qnicd's eBPF program (src/net/tap-steering.ts), checked frame by
// frame against VifHash.selectQueue (netback's xenvif_select_queue): frames are transmitted on the
// TAP through an AF_PACKET socket and looked for on each queue fd. Shared by
// test/net/tap-steering.test.ts (this host's kernel) and test/xen/harness/platform-check.ts (the
// testbed dom0's kernel: the eBPF verifier is the kernel's, so each kernel must accept the program).
// Needs root and /dev/net/tun.
import { dlopen, FFIType } from "bun:ffi";
import { spawnSync } from "node:child_process";
import { nativeLibraryPath } from "../../src/native/lib.ts";
import { TapSteering } from "../../src/net/tap-steering.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ } from "../../src/xen/ctrl-netif.ts";
import { VifHash } from "../../workers/vif-hash.ts";
import { ipFrame, RSS_KEY } from "./hash-frames.ts";
import { PacketSocket } from "./tap-helper.ts";

export const STEERED_QUEUES = 4;
const libc = dlopen("libc.so.6", { read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 } }).symbols;

/** Frames of every kind the hash tells apart, from `src` to `dst`, each with a unique tag (1..) in its last 4 octets. */
export function steeringFrames(dst: readonly number[] = [0x02, 0, 0, 0, 0, 1], src: readonly number[] = [0x02, 0, 0, 0, 0, 2]): Uint8Array[] {
  const out: Uint8Array[] = [];
  const tagged = (f: Uint8Array) => {
    f.set(dst, 0);
    f.set(src, 6);
    new DataView(f.buffer).setUint32(f.length - 4, out.length + 1);
    out.push(f);
  };
  for (let i = 0; i < 40; i++) {
    const v6 = i % 2 === 1;
    const src = v6 ? [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i, 7] : [10, 0, i, 7];
    const dst = v6 ? [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, i] : [10, 1, 9, i];
    tagged(ipFrame({ v6, src, dst, sport: 1000 + i * 7, dport: 80 + i }));
    tagged(ipFrame({ v6, src, dst, proto: 17, sport: 2000 + i, dport: 53 }));
    if (i % 5 === 0) tagged(ipFrame({ v6, src, dst, fragment: true, sport: 3000 + i, dport: 443 }));
  }
  // IPv4 with options (header length 24): the ports sit 4 octets later.
  const opt = ipFrame({ v6: false, sport: 4321, dport: 22 });
  const withOpt = new Uint8Array(opt.length + 4);
  withOpt.set(opt.subarray(0, 34));
  withOpt.set(opt.subarray(34), 38);
  withOpt[14] = 0x46;
  tagged(withOpt);
  // Not IP at all: counts as hash 0.
  const arp = new Uint8Array(60);
  new DataView(arp.buffer).setUint16(12, 0x0806);
  tagged(arp);
  return out;
}

export interface SteeredConfig {
  flags: number;
  size: number;
  mapping: number[];
}

/** A 4-queue, non-persistent TAP named `name` with the program on it; close() removes it. */
export class SteeredTap {
  private readonly fds: number[] = [];
  private readonly sock: PacketSocket;
  readonly steering: TapSteering;
  private readonly tap = dlopen(nativeLibraryPath("tap"), {
    qnicd_tap_open: { args: [FFIType.cstring, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    qnicd_tap_queue_open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    qnicd_fd_close: { args: [FFIType.i32], returns: FFIType.i32 },
    qnicd_link_up: { args: [FFIType.cstring], returns: FFIType.i32 },
  }).symbols;

  constructor(name: string) {
    const cname = Buffer.from(`${name}\0`);
    this.fds.push(this.tap.qnicd_tap_open(cname, 0, 0));
    for (let q = 1; q < STEERED_QUEUES; q++) this.fds.push(this.tap.qnicd_tap_queue_open(cname, 0));
    if (!this.fds.every((fd) => fd >= 0)) {
      this.close();
      throw new Error(`opening a ${STEERED_QUEUES}-queue TAP ${name}: fds ${this.fds.join(" ")}`);
    }
    // No IPv6 chatter (router solicitations) to mistake for test frames.
    spawnSync("sysctl", ["-q", "-w", `net.ipv6.conf.${name}.disable_ipv6=1`], { stdio: "ignore" });
    this.tap.qnicd_link_up(cname);
    this.sock = new PacketSocket(name);
    this.steering = new TapSteering(this.fds[0]);
  }

  /** Which queue each tagged frame arrived on. */
  deliver(all: Uint8Array[]): Map<number, number> {
    const buf = new Uint8Array(65536);
    const seen = new Map<number, number>();
    for (const f of all) {
      this.sock.send(f);
      for (let q = 0; q < STEERED_QUEUES; q++) {
        for (;;) {
          const n = Number(libc.read(this.fds[q], buf, buf.length));
          if (n <= 0) break;
          seen.set(new DataView(buf.buffer).getUint32(n - 4), q);
        }
      }
    }
    return seen;
  }

  /** Steers by `c`, sends steeringFrames(), and says which frames landed elsewhere than VifHash.selectQueue says. */
  check(c: SteeredConfig): { frames: number; queuesUsed: number; wrong: string[] } {
    const hash = new VifHash(STEERED_QUEUES);
    hash.apply({ alg: XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, flags: c.flags, key: [...RSS_KEY], size: c.size, mapping: c.mapping });
    this.steering.apply({ queues: STEERED_QUEUES, flags: c.flags, key: RSS_KEY, size: c.size, mapping: c.mapping });
    const all = steeringFrames();
    const seen = this.deliver(all);
    const wrong: string[] = [];
    for (const f of all) {
      const tag = new DataView(f.buffer).getUint32(f.length - 4);
      const want = hash.selectQueue(f, 0, f.length);
      if (seen.get(tag) !== want) wrong.push(`frame ${tag}: queue ${seen.get(tag) ?? "none"}, want ${want}`);
    }
    return { frames: all.length, queuesUsed: new Set(seen.values()).size, wrong };
  }

  close(): void {
    this.steering?.close();
    this.sock?.close();
    for (const fd of this.fds) if (fd >= 0) this.tap.qnicd_fd_close(fd);
    this.fds.length = 0;
  }
}
