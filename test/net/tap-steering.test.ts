// The steering program a multi-queue TAP runs (src/net/steering-program.ts) picks, for every frame
// the host sends to the guest, the queue VifHash.selectQueue picks (netback's xenvif_select_queue):
// frames are transmitted on a 4-queue TAP through an AF_PACKET socket and each is looked for on the
// queue fds. Needs root and /dev/net/tun (skipped without: a gap on such machines, not a pass).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dlopen, FFIType } from "bun:ffi";
import { spawnSync } from "node:child_process";
import { nativeLibraryPath } from "../../src/native/lib.ts";
import { steeringProgram, steeringValue, STEERING_VALUE_BYTES } from "../../src/net/steering-program.ts";
import { TapSteering } from "../../src/net/tap-steering.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, XEN_NETIF_CTRL_HASH_TYPES_ALL, XEN_NETIF_CTRL_HASH_TYPE_IPV4, XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP } from "../../src/xen/ctrl-netif.ts";
import { VifHash } from "../../workers/vif-hash.ts";
import { ipFrame, RSS_KEY } from "./hash-frames.ts";
import { canUseTap, PacketSocket, uniqueIfName } from "./tap-helper.ts";

const QUEUES = 4;
const libc = dlopen("libc.so.6", { read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 } }).symbols;

test("the program assembles to whole instructions, its map value holds the header, the mapping and 36 x 256 table words", () => {
  const insns = steeringProgram(3);
  expect(insns.length % 8).toBe(0);
  expect(insns.length / 8).toBeLessThan(4096);
  expect(STEERING_VALUE_BYTES).toBe(256 + 36 * 256 * 4);
  // A mapping entry naming a queue past the count is read as queue 0, never passed on.
  const v = steeringValue({ queues: 2, flags: 0, key: RSS_KEY, size: 3, mapping: [1, 7, 0] });
  expect([...v.subarray(16, 19)]).toEqual([1, 0, 0]);
});

/** Frames of every kind the hash tells apart, each with a unique tag in its last 4 octets. */
function frames(): Uint8Array[] {
  const out: Uint8Array[] = [];
  let tag = 0;
  const tagged = (f: Uint8Array) => {
    f.set([0x02, 0, 0, 0, 0, 1], 0); // unicast destination, so no bridge logic cares
    f.set([0x02, 0, 0, 0, 0, 2], 6);
    new DataView(f.buffer).setUint32(f.length - 4, ++tag);
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
  // Not IP at all: ARP-sized, counts as hash 0.
  const arp = new Uint8Array(60);
  new DataView(arp.buffer).setUint16(12, 0x0806);
  tagged(arp);
  return out;
}

describe.skipIf(!canUseTap())("a 4-queue TAP steered by the program", () => {
  const name = uniqueIfName("st");
  const tap = dlopen(nativeLibraryPath("tap"), {
    qnicd_tap_open: { args: [FFIType.cstring, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    qnicd_tap_queue_open: { args: [FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    qnicd_fd_close: { args: [FFIType.i32], returns: FFIType.i32 },
    qnicd_link_up: { args: [FFIType.cstring], returns: FFIType.i32 },
  }).symbols;
  const fds: number[] = [];
  let sock: PacketSocket;
  let steering: TapSteering;
  const cname = Buffer.from(`${name}\0`);

  beforeAll(() => {
    fds.push(tap.qnicd_tap_open(cname, 0, 0));
    for (let q = 1; q < QUEUES; q++) fds.push(tap.qnicd_tap_queue_open(cname, 0));
    expect(fds.every((fd) => fd >= 0)).toBe(true);
    spawnSync("sysctl", ["-q", "-w", `net.ipv6.conf.${name}.disable_ipv6=1`], { stdio: "ignore" });
    expect(tap.qnicd_link_up(cname)).toBe(0);
    sock = new PacketSocket(name);
    steering = new TapSteering(fds[0]);
  });
  afterAll(() => {
    steering?.close();
    sock?.close();
    for (const fd of fds) tap.qnicd_fd_close(fd);
  });

  /** Which queue each tagged frame arrived on. */
  function deliver(all: Uint8Array[]): Map<number, number> {
    const buf = new Uint8Array(65536);
    const seen = new Map<number, number>();
    for (const f of all) {
      sock.send(f);
      for (let q = 0; q < QUEUES; q++) {
        for (;;) {
          const n = Number(libc.read(fds[q], buf, buf.length));
          if (n <= 0) break;
          seen.set(new DataView(buf.buffer).getUint32(n - 4), q);
        }
      }
    }
    return seen;
  }

  const configs = [
    { what: "every type, an 8-entry mapping table", flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 8, mapping: [3, 1, 2, 0, 1, 3, 2, 0] },
    { what: "every type, no mapping table (hash % queues)", flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 0, mapping: [] },
    { what: "IPv4 addresses and IPv6 TCP only (other frames count as hash 0)", flags: XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, size: 5, mapping: [2, 3, 1, 0, 3] },
  ];
  for (const c of configs) {
    test(`each frame lands on the queue netback's selection names: ${c.what}`, () => {
      const hash = new VifHash(QUEUES);
      hash.apply({ alg: XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, flags: c.flags, key: [...RSS_KEY], size: c.size, mapping: c.mapping });
      steering.apply({ queues: QUEUES, flags: c.flags, key: RSS_KEY, size: c.size, mapping: c.mapping });
      const all = frames();
      const seen = deliver(all);
      const want = new Map(all.map((f) => [new DataView(f.buffer).getUint32(f.length - 4), hash.selectQueue(f, 0, f.length)]));
      expect(seen.size).toBe(all.length);
      expect(seen).toEqual(want);
      // Not all on one queue: the test would not tell a broken program from queue 0 otherwise.
      expect(new Set(seen.values()).size).toBeGreaterThan(2);
    });
  }

  test("detached, tun spreads by its own flow hash again and a new configuration attaches afresh", () => {
    steering.apply(null);
    const all = frames();
    expect(deliver(all).size).toBe(all.length);
    steering.apply({ queues: QUEUES, flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, key: RSS_KEY, size: 1, mapping: [2] });
    const seen = deliver(frames());
    expect(new Set(seen.values())).toEqual(new Set([2]));
  });
});
