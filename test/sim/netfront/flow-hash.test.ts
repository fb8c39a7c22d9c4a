// The sim netfront's tx queue choice (xennet_select_queue over a flow hash): which bytes of a frame
// make its flow, and the properties a backend can rely on.
import { expect, test } from "bun:test";
import { flowHash, selectQueue } from "../../../src/sim/netfront/flow-hash.ts";

function eth(type: number, l3: Uint8Array, vlans = 0): Uint8Array {
  const f = new Uint8Array(14 + 4 * vlans + l3.length);
  const v = new DataView(f.buffer);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  let o = 12;
  for (let i = 0; i < vlans; i++, o += 4) {
    v.setUint16(o, 0x8100);
    v.setUint16(o + 2, 100 + i);
  }
  v.setUint16(o, type);
  f.set(l3, o + 2);
  return f;
}

function ip4(proto: number, src: number, dst: number, sport: number, dport: number, fragWord = 0): Uint8Array {
  const b = new Uint8Array(28);
  const v = new DataView(b.buffer);
  v.setUint8(0, 0x45);
  v.setUint16(2, 28);
  v.setUint16(6, fragWord);
  v.setUint8(8, 64);
  v.setUint8(9, proto);
  v.setUint32(12, src);
  v.setUint32(16, dst);
  v.setUint16(20, sport);
  v.setUint16(22, dport);
  return b;
}

function ip6(next: number, srcLast: number, dstLast: number, sport: number, dport: number): Uint8Array {
  const b = new Uint8Array(48);
  const v = new DataView(b.buffer);
  v.setUint8(0, 0x60);
  v.setUint16(4, 8);
  v.setUint8(6, next);
  v.setUint8(7, 64);
  b[8] = 0xfd;
  b[23] = srcLast;
  b[24] = 0xfd;
  b[39] = dstLast;
  v.setUint16(40, sport);
  v.setUint16(42, dport);
  return b;
}

const TCP = 6;
const UDP = 17;
const ICMP = 1;

test("a flow's hash depends on its addresses, protocol and ports, is the same both ways, and ignores everything else", () => {
  const a = eth(0x0800, ip4(TCP, 0x0a000001, 0x0a000002, 40000, 80));
  expect(flowHash(a)).not.toBe(0);
  expect(flowHash(a)).toBe(flowHash(a.slice()));
  // Reply direction: same hash (the two ends are put in one order).
  expect(flowHash(eth(0x0800, ip4(TCP, 0x0a000002, 0x0a000001, 80, 40000)))).toBe(flowHash(a));
  // Any one of source port, destination port, address or protocol changes it.
  const others = [
    ip4(TCP, 0x0a000001, 0x0a000002, 40001, 80),
    ip4(TCP, 0x0a000001, 0x0a000002, 40000, 81),
    ip4(TCP, 0x0a000001, 0x0a000003, 40000, 80),
    ip4(UDP, 0x0a000001, 0x0a000002, 40000, 80),
  ].map((l3) => flowHash(eth(0x0800, l3)));
  for (const h of others) expect(h).not.toBe(flowHash(a));
  // The payload, the TTL and the MACs do not take part.
  const b = a.slice();
  b[0] ^= 1;
  b[14 + 8] = 3;
  b[b.length - 1] = 0x55;
  expect(flowHash(b)).toBe(flowHash(a));
  // The seed does (Linux: a random boot-time key).
  expect(flowHash(a, 1)).not.toBe(flowHash(a, 2));
});

test("ports are only read where they exist: not for ICMP, not in IPv4 fragments; VLAN tags are skipped; IPv6 hashes its 128-bit addresses", () => {
  // ICMP's first four bytes are no ports: changing them keeps the hash.
  expect(flowHash(eth(0x0800, ip4(ICMP, 1, 2, 0x0800, 1)))).toBe(flowHash(eth(0x0800, ip4(ICMP, 1, 2, 0x0800, 2))));
  // A fragment (MF set, or an offset) is hashed on addresses and protocol only.
  const mf = 0x2000;
  expect(flowHash(eth(0x0800, ip4(UDP, 1, 2, 1000, 53, mf)))).toBe(flowHash(eth(0x0800, ip4(UDP, 1, 2, 1001, 53, 0x0010))));
  expect(flowHash(eth(0x0800, ip4(UDP, 1, 2, 1000, 53, mf)))).not.toBe(flowHash(eth(0x0800, ip4(UDP, 1, 2, 1000, 53))));
  // One or two VLAN tags: the same flow underneath.
  const plain = flowHash(eth(0x0800, ip4(UDP, 1, 2, 1000, 53)));
  expect(flowHash(eth(0x0800, ip4(UDP, 1, 2, 1000, 53), 1))).toBe(plain);
  expect(flowHash(eth(0x0800, ip4(UDP, 1, 2, 1000, 53), 2))).toBe(plain);
  // IPv6: the low byte of the address is part of it, ports too, and the reply matches.
  const v6 = flowHash(eth(0x86dd, ip6(TCP, 1, 2, 5000, 443)));
  expect(v6).not.toBe(0);
  expect(flowHash(eth(0x86dd, ip6(TCP, 1, 3, 5000, 443)))).not.toBe(v6);
  expect(flowHash(eth(0x86dd, ip6(TCP, 1, 2, 5001, 443)))).not.toBe(v6);
  expect(flowHash(eth(0x86dd, ip6(TCP, 2, 1, 443, 5000)))).toBe(v6);
});

test("no flow, no hash: ARP, runts, a wrong IP version or truncated header all go to queue 0; one queue takes everything", () => {
  const arp = eth(0x0806, new Uint8Array(28));
  expect(flowHash(arp)).toBe(0);
  expect(selectQueue(arp, 4)).toBe(0);
  expect(flowHash(new Uint8Array(10))).toBe(0);
  const badVersion = ip4(UDP, 1, 2, 3, 4);
  badVersion[0] = 0x65;
  expect(flowHash(eth(0x0800, badVersion))).toBe(0);
  expect(flowHash(eth(0x0800, ip4(UDP, 1, 2, 3, 4).subarray(0, 19)))).toBe(0);
  expect(flowHash(eth(0x86dd, ip6(UDP, 1, 2, 3, 4).subarray(0, 39)))).toBe(0);
  // A header length field under 20 is no IPv4 header.
  const shortIhl = ip4(UDP, 1, 2, 3, 4);
  shortIhl[0] = 0x44;
  expect(flowHash(eth(0x0800, shortIhl))).toBe(0);
  const f = eth(0x0800, ip4(UDP, 1, 2, 3, 4));
  expect(selectQueue(f, 1)).toBe(0);
  expect(selectQueue(f, 3)).toBe(flowHash(f) % 3);
});

test("many flows spread over the queues roughly evenly", () => {
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[selectQueue(eth(0x0800, ip4(TCP, 0x0a000001, 0x0a000002, 1024 + i, 80)), 4)]!++;
  // A fair split is 1000 each; a broken hash puts most flows on one or two queues.
  for (const c of counts) expect(c).toBeGreaterThan(800);
});
