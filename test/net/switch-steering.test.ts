// The switch's guest-rx queue choice (native/l2switch.c sw_port_steer, native/flowhash.h): once a
// multi-queue vif's ports steer by the frontend's hash, every frame for the vif (unicast to a MAC
// learned on any of its queues, or flooded) lands on the port of the queue VifHash.selectQueue
// names, netback's xenvif_select_queue; without a configuration, on the port the MAC was learned on.
import { afterEach, expect, test } from "bun:test";
import { createFrameBatch } from "../../src/net/frame-batch.ts";
import { SwitchFabric, SwitchPeer } from "../../src/net/switch.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, XEN_NETIF_CTRL_HASH_TYPES_ALL, XEN_NETIF_CTRL_HASH_TYPE_IPV4, XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP } from "../../src/xen/ctrl-netif.ts";
import { VifHash } from "../../workers/vif-hash.ts";
import { RSS_KEY } from "./hash-frames.ts";
import { steeringFrames } from "./steering-check.ts";

const QUEUES = 4;
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
const batch = createFrameBatch(256, 2048);

const ALICE = [0x02, 0, 0, 0, 0, 0xa1];
const BOB = [0x02, 0, 0, 0, 0, 0xb0];

function rig() {
  const f = new SwitchFabric({ ports: 8, ringBytes: 1 << 20 });
  const alice = Array.from({ length: QUEUES }, (_, q) => new SwitchPeer(f.address, q === 0 ? "vif1.0" : `vif1.0:q${q}`));
  const bob = new SwitchPeer(f.address, "vif2.0");
  cleanups.push(() => {
    for (const p of [...alice, bob]) p.close();
    f.destroy();
  });
  return { alice, bob };
}

function sendFrom(p: SwitchPeer, frames: Uint8Array[]): void {
  frames.forEach((fr, i) => {
    batch.bytes.set(fr, i * batch.stride);
    batch.lens[i] = fr.length;
  });
  batch.count = frames.length;
  expect(p.send(batch)).toBe(frames.length);
}

/** Tag (last 4 octets) -> the queue whose port received it. */
function received(ports: SwitchPeer[]): Map<number, number> {
  const seen = new Map<number, number>();
  ports.forEach((p, q) => {
    const n = p.receive(batch);
    for (let i = 0; i < n; i++) {
      const at = i * batch.stride + batch.lens[i] - 4;
      seen.set(new DataView(batch.bytes.buffer, batch.bytes.byteOffset).getUint32(at), q);
    }
  });
  return seen;
}

/** Frames from bob to `dst` of every kind the hash tells apart (steering-check.ts), tagged 1.. in their last octets. */
const frames = (dst: number[]) => steeringFrames(dst, BOB);

function expected(all: Uint8Array[], c: { flags: number; size: number; mapping: number[] }): Map<number, number> {
  const hash = new VifHash(QUEUES);
  hash.apply({ alg: XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, flags: c.flags, key: [...RSS_KEY], size: c.size, mapping: c.mapping });
  return new Map(all.map((f) => [new DataView(f.buffer).getUint32(f.length - 4), hash.selectQueue(f, 0, f.length)]));
}

const configs = [
  { what: "every type, an 8-entry mapping table", flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 8, mapping: [3, 1, 2, 0, 1, 3, 2, 0] },
  { what: "every type, no table (hash % queues)", flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 0, mapping: [] },
  { what: "IPv4 addresses and IPv6 TCP only", flags: XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, size: 5, mapping: [2, 3, 1, 0, 3] },
];

for (const c of configs) {
  test(`unicast to a MAC learned on queue 2 and broadcast both land on the queue netback's selection names: ${c.what}`, () => {
    const { alice, bob } = rig();
    for (const p of alice) p.steer({ queues: QUEUES, flags: c.flags, key: RSS_KEY, size: c.size, mapping: c.mapping });
    // Alice's MAC learned on queue 2's port: unsteered, every unicast frame would go there.
    sendFrom(alice[2], [Uint8Array.from([...BOB, ...ALICE, 0x08, 0x06, ...new Array(46).fill(0)])]);
    bob.receive(batch);
    const unicast = frames(ALICE);
    sendFrom(bob, unicast);
    const seen = received(alice);
    expect(seen).toEqual(expected(unicast, c));
    expect(new Set(seen.values()).size).toBeGreaterThan(2);
    const flooded = frames([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    sendFrom(bob, flooded);
    expect(received(alice)).toEqual(expected(flooded, c));
  });
}

test("steering off again (algorithm NONE): unicast goes to the queue the MAC was learned on, floods to queue 0", () => {
  const { alice, bob } = rig();
  for (const p of alice) p.steer({ queues: QUEUES, flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, key: RSS_KEY, size: 1, mapping: [3] });
  for (const p of alice) p.steer(null);
  sendFrom(alice[1], [Uint8Array.from([...BOB, ...ALICE, 0x08, 0x06, ...new Array(46).fill(0)])]);
  bob.receive(batch);
  const unicast = frames(ALICE);
  sendFrom(bob, unicast);
  expect(new Set(received(alice).values())).toEqual(new Set([1]));
  sendFrom(bob, frames([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  expect(new Set(received(alice).values())).toEqual(new Set([0]));
});

test("a configuration naming a queue past the count is refused whole and leaves steering off", () => {
  const { alice, bob } = rig();
  alice[0].steer({ queues: QUEUES, flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, key: RSS_KEY, size: 2, mapping: [1, QUEUES] });
  sendFrom(bob, frames([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  expect(new Set(received(alice).values())).toEqual(new Set([0]));
});
