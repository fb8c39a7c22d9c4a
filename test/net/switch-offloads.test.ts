// The switch carries a frame's meta word (GSO, checksum partial) from sender to receiver, and
// finishes on the way out what the receiving port does not accept (native/segment.h): a TCP GSO
// frame becomes MSS-sized segments with complete checksums, IPv4 lengths and ids, sequence numbers,
// FIN/PSH on the last and CWR on the first only, spread over several receive() calls when the batch
// is short; a checksum-partial frame gets its checksum; a GSO frame that is not TCP is dropped.
import { afterEach, describe, expect, test } from "bun:test";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { buildUdpFrame } from "../../src/net/frames.ts";
import { FRAME_META_CSUM, FRAME_META_GSO_TYPE_SHIFT } from "../../src/net/peer.ts";
import { SwitchFabric, SwitchPeer } from "../../src/net/switch.ts";
import { TAP_OFFLOAD_CSUM, TAP_OFFLOAD_TSO4, TAP_OFFLOAD_TSO6 } from "../../src/net/tap.ts";
import { parseTcp6Segment, parseTcpSegment, streamBytes, tcp6Frame, tcpFrame } from "./tcp-frames.ts";

const A = Uint8Array.from([2, 0, 0, 0, 0, 0xa]);
const B = Uint8Array.from([2, 0, 0, 0, 0, 0xb]);
const TCPV4 = 1, TCPV6 = 2;
const gso = (type: number, mss: number) => FRAME_META_CSUM | (type << FRAME_META_GSO_TYPE_SHIFT) | mss;

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function rig(accept: number) {
  const f = new SwitchFabric({ ports: 4, ringBytes: 1 << 20 });
  const a = new SwitchPeer(f.address, "a");
  const b = new SwitchPeer(f.address, "b");
  b.setRxOffloads(accept);
  const out = createFrameBatch(1, 65536 + 64);
  const inb = createFrameBatch(64, 65536 + 64);
  cleanups.push(() => {
    a.close();
    b.close();
    f.destroy();
    freeFrameBatch(out);
    freeFrameBatch(inb);
  });
  return {
    b,
    send(frame: Uint8Array, meta: number) {
      out.bytes.set(frame, 0);
      out.lens[0] = frame.length;
      out.meta[0] = meta;
      out.count = 1;
      expect(a.send(out)).toBe(1);
    },
    /** Every frame port b hands out, `max` per receive() call, with its meta word. */
    drain(max = 64) {
      const got: { f: Uint8Array; meta: number; call: number }[] = [];
      for (let call = 0; ; call++) {
        const n = b.receive(inb, max);
        for (let i = 0; i < n; i++) got.push({ f: inb.bytes.slice(i * inb.stride, i * inb.stride + inb.lens[i]), meta: inb.meta[i], call });
        if (n === 0) return got;
      }
    },
  };
}

describe("switch offloads", () => {
  test("a port that accepts TSO4 gets a TCPv4 GSO frame whole, its meta word with it", () => {
    const r = rig(TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4);
    const f = tcpFrame({ srcMac: A, dstMac: B, srcIp: [10, 1, 0, 1], dstIp: [10, 1, 0, 2], srcPort: 1, dstPort: 2, seq: 9, payload: streamBytes(60_000, 1) });
    r.send(f, gso(TCPV4, 1448));
    const got = r.drain();
    expect(got.length).toBe(1);
    expect(got[0]!.f).toEqual(f);
    expect(got[0]!.meta).toBe(gso(TCPV4, 1448));
  });

  test("a port that does not: MSS-sized segments with complete checksums, lengths, ids, sequence numbers and flags, across calls when the batch is short", () => {
    const r = rig(0);
    const payload = streamBytes(10_000, 2);
    const f = tcpFrame({ srcMac: A, dstMac: B, srcIp: [10, 1, 0, 1], dstIp: [10, 1, 0, 2], srcPort: 1, dstPort: 2, seq: 0xfffff000, payload });
    f[14 + 20 + 13] = 0x18 | 0x01 | 0x80; // ACK|PSH + FIN + CWR
    const id0 = (f[18] << 8) | f[19];
    r.send(f, gso(TCPV4, 1000));
    const got = r.drain(3);
    expect(got.length).toBe(10);
    expect(got.map((g) => g.call)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
    expect(got.every((g) => g.meta === 0 && g.f.length === 54 + 1000)).toBe(true);
    const segs = got.map((g) => parseTcpSegment(g.f, 1, 2)!);
    expect(segs.every((s) => s.checksumsOk && s.ipLen === 40 + 1000)).toBe(true);
    expect(segs.map((s) => s.seq)).toEqual(Array.from({ length: 10 }, (_, k) => (0xfffff000 + k * 1000) >>> 0));
    expect(got.map((g) => (g.f[18] << 8) | g.f[19])).toEqual(Array.from({ length: 10 }, (_, k) => (id0 + k) & 0xffff));
    // ACK|PSH|FIN|CWR: CWR stays on the first only, FIN and PSH on the last only.
    expect(got.map((g) => g.f[47])).toEqual([0x90, ...Array(8).fill(0x10), 0x19]);
    expect(Buffer.concat(segs.map((s) => s.payload))).toEqual(Buffer.from(payload));
  });

  test("TCPv6 GSO to a port without TSO6 (but with TSO4): segmented, IPv6 payload lengths and checksums complete", () => {
    const r = rig(TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4);
    const payload = streamBytes(5000, 3);
    const f = tcp6Frame({ srcMac: A, dstMac: B, srcIp: new Uint8Array(16).fill(7), dstIp: new Uint8Array(16).fill(8), srcPort: 3, dstPort: 4, seq: 1, payload });
    r.send(f, gso(TCPV6, 1200));
    const got = r.drain();
    expect(got.length).toBe(5);
    const segs = got.map((g) => parseTcp6Segment(g.f, 3, 4)!);
    expect(segs.map((s) => s.plen)).toEqual([1220, 1220, 1220, 1220, 20 + 200]);
    expect(segs.every((s) => s.checksumsOk)).toBe(true);
    expect(Buffer.concat(segs.map((s) => s.payload))).toEqual(Buffer.from(payload));
    const both = rig(TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO6);
    both.send(f, gso(TCPV6, 1200));
    expect(both.drain().map((g) => g.meta)).toEqual([gso(TCPV6, 1200)]);
  });

  test("a checksum-partial frame is completed for a port without checksum offload and passed as partial to one with it", () => {
    const good = buildUdpFrame({ size: 300, srcMac: A, dstMac: B, srcIp: [10, 1, 0, 1], dstIp: [10, 1, 0, 2], srcPort: 5, dstPort: 6 });
    const partial = good.slice();
    partial[40] = 0x12;
    partial[41] = 0x34;
    const r = rig(0);
    r.send(partial, FRAME_META_CSUM);
    expect(r.drain().map((g) => [g.f, g.meta])).toEqual([[good, 0]]);
    const r2 = rig(TAP_OFFLOAD_CSUM);
    r2.send(partial, FRAME_META_CSUM);
    expect(r2.drain().map((g) => [g.f, g.meta])).toEqual([[partial, FRAME_META_CSUM]]);
  });

  test("a GSO frame that is not TCP over its IP version, or has no MSS, is dropped and counted; the next frame passes", () => {
    const r = rig(0);
    const udp = buildUdpFrame({ size: 3000, srcMac: A, dstMac: B, srcIp: [10, 1, 0, 1], dstIp: [10, 1, 0, 2], srcPort: 5, dstPort: 6 });
    r.send(udp, gso(TCPV4, 1000));
    const v4 = tcpFrame({ srcMac: A, dstMac: B, srcIp: [10, 1, 0, 1], dstIp: [10, 1, 0, 2], srcPort: 1, dstPort: 2, seq: 0, payload: streamBytes(3000, 4) });
    r.send(v4, gso(TCPV6, 1000));
    r.send(v4, FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT));
    const ok = buildUdpFrame({ size: 100, srcMac: A, dstMac: B, srcIp: [10, 1, 0, 1], dstIp: [10, 1, 0, 2], srcPort: 5, dstPort: 7 });
    r.send(ok, 0);
    expect(r.drain().map((g) => g.f)).toEqual([ok]);
    expect(r.b.stats.rxOversize).toBe(3);
  });
});
