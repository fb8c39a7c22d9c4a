// The Toeplitz hash pinned three ways: the published test vectors (FEATURES-FACTS section 5: DPDK's
// app/test/test_thash.c inputs, values recomputed with netif.h's algorithm, the same as Microsoft's
// RSS verification suite), netif.h's own xen_netif_toeplitz_hash compiled from Debian's libxen-dev
// and run on random keys and inputs, and the flow fields FlowHasher takes from real frames.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FlowHasher, toeplitzHash } from "../../src/net/toeplitz.ts";
import * as ctrl from "../../src/xen/ctrl-netif.ts";
import { ensureDebPackages } from "../support/apt.ts";
import { DPORT, ipFrame, RSS_KEY as KEY, SPORT, V4_DST, V4_SRC } from "./hash-frames.ts";

const ALL = ctrl.XEN_NETIF_CTRL_HASH_TYPES_ALL;

describe("Toeplitz vectors (FEATURES-FACTS section 5)", () => {
  const h = new FlowHasher();
  const cases: [string, boolean, number, number, number][] = [
    ["IPV4", false, ctrl.XEN_NETIF_CTRL_HASH_TYPE_IPV4, ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV4, 0x323e8fc2],
    ["IPV4_TCP", false, ALL, ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, 0x51ccc178],
    ["IPV6", true, ctrl.XEN_NETIF_CTRL_HASH_TYPE_IPV6, ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV6, 0x2cc18cd5],
    ["IPV6_TCP", true, ALL, ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, 0x40207d3d],
  ];
  for (const [name, v6, flags, type, want] of cases) {
    test(`${name}: 0x${want.toString(16)}`, () => {
      const f = ipFrame({ v6 });
      expect(h.hash(f, 0, f.length, flags, KEY, 40)).toBe(true);
      expect({ value: `0x${h.value.toString(16)}`, type: h.type }).toEqual({ value: `0x${want.toString(16)}`, type });
    });
  }

  test("the raw function over the IPv4+TCP input gives the same value", () => {
    const input = Uint8Array.from([...V4_SRC, ...V4_DST, SPORT >> 8, SPORT & 0xff, DPORT >> 8, DPORT & 0xff]);
    expect(toeplitzHash(KEY, 40, input, 0, 12)).toBe(0x51ccc178);
    expect(toeplitzHash(KEY, 40, input, 0, 8)).toBe(0x323e8fc2);
  });
});

describe("FlowHasher picks the fields xenvif_set_skb_hash picks", () => {
  const h = new FlowHasher();
  test("the most specific enabled type wins; TCP types only for TCP", () => {
    const tcp = ipFrame({ v6: false });
    expect(h.hash(tcp, 0, tcp.length, ctrl.XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, KEY, 40) && h.value).toBe(0x51ccc178);
    const udp = ipFrame({ v6: false, proto: 17 });
    expect(h.hash(udp, 0, udp.length, ctrl.XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, KEY, 40)).toBe(false);
    expect(h.hash(udp, 0, udp.length, ALL, KEY, 40) && h.type).toBe(ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV4);
  });
  test("a fragment hashes on its addresses only", () => {
    const f = ipFrame({ v6: false, fragment: true });
    expect(h.hash(f, 0, f.length, ALL, KEY, 40)).toBe(true);
    expect([h.type, h.value]).toEqual([ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV4, 0x323e8fc2]);
    const g = ipFrame({ v6: true, fragment: true });
    expect(h.hash(g, 0, g.length, ALL, KEY, 40) && h.type).toBe(ctrl._XEN_NETIF_CTRL_HASH_TYPE_IPV6);
  });
  test("no hash: flags of the other family, no flags, ARP, a VLAN tag, a truncated header", () => {
    const v4 = ipFrame({ v6: false });
    expect(h.hash(v4, 0, v4.length, ctrl.XEN_NETIF_CTRL_HASH_TYPE_IPV6 | ctrl.XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, KEY, 40)).toBe(false);
    expect(h.hash(v4, 0, v4.length, 0, KEY, 40)).toBe(false);
    const arp = v4.slice();
    arp[12] = 0x08;
    arp[13] = 0x06;
    expect(h.hash(arp, 0, arp.length, ALL, KEY, 40)).toBe(false);
    const vlan = v4.slice();
    vlan[12] = 0x81;
    vlan[13] = 0x00;
    expect(h.hash(vlan, 0, vlan.length, ALL, KEY, 40)).toBe(false);
    expect(h.hash(v4, 0, 14 + 19, ALL, KEY, 40)).toBe(false);
    const badIhl = v4.slice();
    badIhl[14] = 0x44;
    expect(h.hash(badIhl, 0, badIhl.length, ALL, KEY, 40)).toBe(false);
  });
  test("a frame at an offset inside a larger buffer hashes the same", () => {
    const f = ipFrame({ v6: true });
    const buf = new Uint8Array(f.length + 100);
    buf.set(f, 37);
    expect(h.hash(buf, 37, f.length, ALL, KEY, 40) && h.value).toBe(0x40207d3d);
  });
});

describe("the same function as netif.h's xen_netif_toeplitz_hash", () => {
  let cases: { key: Uint8Array; keyLen: number; data: Uint8Array }[] = [];
  let cValues: number[] = [];
  beforeAll(() => {
    ensureDebPackages(["libxen-dev", "gcc"]);
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
    cases = Array.from({ length: 200 }, (_, i) => {
      const keyLen = i % 41; // 0..40, shorter keys zero-filled as netback's are
      const key = Uint8Array.from({ length: 40 }, (_, k) => (k < keyLen ? rnd() : 0));
      const data = Uint8Array.from({ length: [8, 12, 32, 36, 1, 0, 5][i % 7] }, rnd);
      return { key, keyLen, data };
    });
    const arr = (b: Uint8Array) => `{${[...b, 0].join(",")}}`;
    const body = cases.map((c, i) => `  { static const uint8_t k[] = ${arr(c.key)}, d[] = ${arr(c.data)}; printf("%d %u\\n", ${i}, xen_netif_toeplitz_hash(k, ${c.keyLen}, d, ${c.data.length})); }`).join("\n");
    const dir = mkdtempSync(join(tmpdir(), "qnicd-toeplitz-"));
    try {
      writeFileSync(join(dir, "t.c"), `#include <stdint.h>\n#include <stdio.h>\n#define XEN_NETIF_DEFINE_TOEPLITZ\n#include <xen/xen.h>\n#include <xen/io/netif.h>\nint main(void) {\n${body}\n  return 0;\n}\n`);
      const cc = Bun.spawnSync(["gcc", "-Wall", "-Wno-unused-function", "-o", join(dir, "t"), join(dir, "t.c")], { stderr: "pipe" });
      if (cc.exitCode !== 0) throw new Error(`compiling netif.h's Toeplitz hash failed:\n${cc.stderr.toString()}`);
      cValues = Bun.spawnSync([join(dir, "t")], { stdout: "pipe" }).stdout.toString().trim().split("\n").map((l) => Number(l.split(" ")[1]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("200 random keys (0..40 bytes) and inputs give the header's values", () => {
    expect(cValues.length).toBe(cases.length);
    const ours = cases.map((c) => toeplitzHash(c.key, c.keyLen, c.data, 0, c.data.length));
    expect(ours).toEqual(cValues);
  });
});
