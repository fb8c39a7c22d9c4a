// The steering program a multi-queue TAP runs (src/net/steering-program.ts) picks, for every frame
// the host sends to the guest, the queue VifHash.selectQueue picks (netback's xenvif_select_queue).
// The frame-by-frame check is test/net/steering-check.ts (the real-Xen dom0 runs it too). Needs root
// and /dev/net/tun (skipped without: a gap on such machines, not a pass).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { steeringProgram, steeringValue, STEERING_VALUE_BYTES } from "../../src/net/steering-program.ts";
import { XEN_NETIF_CTRL_HASH_TYPES_ALL, XEN_NETIF_CTRL_HASH_TYPE_IPV4, XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP } from "../../src/xen/ctrl-netif.ts";
import { RSS_KEY } from "./hash-frames.ts";
import { SteeredTap, steeringFrames, STEERED_QUEUES } from "./steering-check.ts";
import { canUseTap, uniqueIfName } from "./tap-helper.ts";

test("the program assembles to whole instructions, its map value holds the header, the mapping and 36 x 256 table words", () => {
  const insns = steeringProgram(3);
  expect(insns.length % 8).toBe(0);
  expect(insns.length / 8).toBeLessThan(4096);
  expect(STEERING_VALUE_BYTES).toBe(256 + 36 * 256 * 4);
  // A mapping entry naming a queue past the count is read as queue 0, never passed on.
  const v = steeringValue({ queues: 2, flags: 0, key: RSS_KEY, size: 3, mapping: [1, 7, 0] });
  expect([...v.subarray(16, 19)]).toEqual([1, 0, 0]);
});

describe.skipIf(!canUseTap())(`a ${STEERED_QUEUES}-queue TAP steered by the program`, () => {
  let tap: SteeredTap;
  beforeAll(() => {
    tap = new SteeredTap(uniqueIfName("st"));
  });
  afterAll(() => tap?.close());

  const configs = [
    { what: "every type, an 8-entry mapping table", flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 8, mapping: [3, 1, 2, 0, 1, 3, 2, 0] },
    { what: "every type, no mapping table (hash % queues)", flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 0, mapping: [] },
    { what: "IPv4 addresses and IPv6 TCP only (other frames count as hash 0)", flags: XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, size: 5, mapping: [2, 3, 1, 0, 3] },
  ];
  for (const c of configs) {
    test(`each frame lands on the queue netback's selection names: ${c.what}`, () => {
      const r = tap.check(c);
      expect(r.wrong).toEqual([]);
      // Not all on one queue: the test would not tell a broken program from queue 0 otherwise.
      expect(r.queuesUsed).toBeGreaterThan(2);
    });
  }

  test("detached, tun spreads by its own flow hash again and a new configuration attaches afresh", () => {
    tap.steering.apply(null);
    const all = steeringFrames();
    expect(tap.deliver(all).size).toBe(all.length);
    const r = tap.check({ flags: XEN_NETIF_CTRL_HASH_TYPES_ALL, size: 1, mapping: [2] });
    expect(r.wrong).toEqual([]);
    expect(r.queuesUsed).toBe(1);
  });
});
