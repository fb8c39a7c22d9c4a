// TAPs with a virtio_net_hdr (as the backend opens them: IFF_VNET_HDR, offloads off), through
// io_uring and through the plain read()/write() fallback. A GSO frame written with its header is
// segmented by the kernel: across a bridge to a plain TAP (no offloads) it arrives as MSS-sized
// segments with complete checksums (TCP over IPv4 and IPv6); a checksum-partial frame arrives completed; what the kernel
// sends to the vnet TAP is read back without the header. With rx offloads turned on for a guest that
// takes GSO (TUNSETOFFLOAD), the kernel hands a vnet TAP a TCP GSO frame whole, described by its header
// (the frame's meta word); with them off, as MSS-sized segments. Root only.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { buildUdpFrame } from "../../src/net/frames.ts";
import { createFrameBatch, freeFrameBatch } from "../../src/net/index.ts";
import { FRAME_META_CSUM, FRAME_META_GSO_SIZE_MASK, FRAME_META_GSO_TYPE_SHIFT } from "../../src/net/peer.ts";
import { TapProvisioner } from "../../src/net/peer-provisioner-tap.ts";
import { TAP_OFFLOAD_CSUM, TAP_OFFLOAD_TSO4, TAP_OFFLOAD_TSO6, TapPeer, type TapPeerIo } from "../../src/net/tap.ts";
import type { PeerHandle } from "../../src/net/peer.ts";
import { canUseTap, createTestTap, ip, linkExists, uniqueIfName, type TestTap } from "./tap-helper.ts";
import { parseTcp6Segment, parseTcpSegment, streamBytes, tcp6Frame, tcpFrame } from "./tcp-frames.ts";

const A_MAC = Uint8Array.from([0x00, 0x16, 0x3e, 0x5a, 0x00, 0x01]);
const B_MAC = Uint8Array.from([0x00, 0x16, 0x3e, 0x5a, 0x00, 0x02]);
const C_MAC = Uint8Array.from([0x00, 0x16, 0x3e, 0x5a, 0x00, 0x03]);

/** A checksum-partial TCPv4 frame's checksum field holds the folded pseudo-header sum (CHECKSUM_PARTIAL). */
function partialTcp4Ok(f: Uint8Array): boolean {
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const ihl = (f[14] & 0x0f) * 4;
  const l4len = dv.getUint16(16) - ihl;
  let sum = 6 + l4len;
  for (let o = 26; o < 34; o += 2) sum += dv.getUint16(o);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return dv.getUint16(14 + ihl + 16) === sum;
}
const TCPV4 = 1;
const TCPV6 = 2;

describe.skipIf(!canUseTap())("TAP with virtio_net_hdr", () => {
  let bridge: string;
  let prov: TapProvisioner;
  let vnet: PeerHandle;
  let plain: TestTap;
  /** A second vnet TAP on the bridge: the one a GSO guest's vif would have. */
  let gsoTap: PeerHandle;
  const batch = createFrameBatch(8, 65536);
  const rxBatch = createFrameBatch(64, 2048);
  const bigRx = createFrameBatch(16, 65536 + 64);

  beforeAll(() => {
    bridge = uniqueIfName("vb");
    ip("link", "add", bridge, "type", "bridge");
    writeFileSync(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, "1");
    ip("link", "set", "dev", bridge, "up");
    prov = new TapProvisioner({ bridge });
    vnet = prov.create(uniqueIfName("va"));
    writeFileSync(`/proc/sys/net/ipv6/conf/${vnet.name}/disable_ipv6`, "1");
    gsoTap = prov.create(uniqueIfName("vg"));
    writeFileSync(`/proc/sys/net/ipv6/conf/${gsoTap.name}/disable_ipv6`, "1");
    plain = createTestTap(uniqueIfName("vp"));
    ip("link", "set", "dev", plain.name, "master", bridge);
  });
  afterAll(() => {
    prov?.close();
    plain?.close();
    if (bridge && linkExists(bridge)) ip("link", "del", bridge);
    freeFrameBatch(batch);
    freeFrameBatch(rxBatch);
    freeFrameBatch(bigRx);
  });

  /** Frames the plain TAP's reader gets within a second, until `want` of them match. */
  async function collect(reader: TapPeer, keep: (f: Uint8Array) => boolean, want: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    const deadline = Date.now() + 2000;
    while (out.length < want && Date.now() < deadline) {
      const n = reader.receive(rxBatch);
      for (let i = 0; i < n; i++) {
        const f = rxBatch.bytes.slice(i * rxBatch.stride, i * rxBatch.stride + rxBatch.lens[i]);
        if (keep(f)) out.push(f);
      }
      if (n === 0) await Bun.sleep(2);
    }
    return out;
  }

  function put(i: number, f: Uint8Array, meta: number): void {
    batch.bytes.set(f, i * batch.stride);
    batch.lens[i] = f.length;
    batch.meta[i] = meta;
  }

  for (const io of ["uring", "plain", "uring-writes"] as TapPeerIo[]) {
    test(`${io}: a TCPv4 GSO frame is segmented by the kernel into MSS-sized segments with complete checksums; a partial UDP checksum is completed; a plain frame is untouched`, async () => {
      const writer = new TapPeer(vnet.name, vnet.fd, { io });
      const reader = new TapPeer(plain.name, plain.fd, { io: "plain" });
      try {
        expect(writer.offloads).toBe(true);
        expect(writer.usesUring).toBe(io === "uring");
        expect(writer.writesUseUring).toBe(io !== "plain");
        expect(reader.offloads).toBe(false);
        reader.receive(rxBatch); // whatever the bridge sent before
        const sport = io === "uring" ? 40001 : io === "plain" ? 40002 : 40003;
        const payload = streamBytes(14_000, sport);
        const gso = tcpFrame({ srcMac: A_MAC, dstMac: B_MAC, srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 2], srcPort: sport, dstPort: 5001, seq: 1000, payload });
        put(0, gso, FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | 1400);
        const good = buildUdpFrame({ size: 333, srcMac: A_MAC, dstMac: B_MAC, srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 2], srcPort: sport, dstPort: 6001 });
        const partial = good.slice();
        partial[14 + 20 + 6] = 0xab; // the guest left the checksum to the host side
        partial[14 + 20 + 7] = 0xcd;
        put(1, partial, FRAME_META_CSUM);
        const raw = good.slice();
        raw[40] = 0; // a frame with no offload asked: goes as it is, even with a wrong checksum
        put(2, raw, 0);
        batch.count = 3;
        expect(writer.send(batch)).toBe(3);
        expect(writer.drops).toBe(0);

        const isUdp = (f: Uint8Array) => f.length === 333 && f[23] === 17;
        const all = await collect(reader, (f) => parseTcpSegment(f, sport, 5001) !== null || isUdp(f), 12);
        const segs = all.filter((f) => !isUdp(f));
        expect(segs.length).toBe(10);
        const parsed = segs.map((f) => parseTcpSegment(f, sport, 5001)!);
        expect(parsed.map((p) => p.seq)).toEqual(Array.from({ length: 10 }, (_, k) => 1000 + k * 1400));
        expect(parsed.every((p) => p.checksumsOk)).toBe(true);
        expect(parsed.every((p) => p.ipLen === 40 + 1400)).toBe(true);
        expect(Buffer.concat(parsed.map((p) => p.payload))).toEqual(Buffer.from(payload));

        expect(all.filter(isUdp)).toEqual([good, raw]);
      } finally {
        writer.close();
        reader.close();
      }
    });

    test(`${io}: a TCPv6 GSO frame is segmented too, and a partial TCPv6 checksum is completed`, async () => {
      const writer = new TapPeer(vnet.name, vnet.fd, { io });
      const reader = new TapPeer(plain.name, plain.fd, { io: "plain" });
      try {
        reader.receive(rxBatch);
        const sport = io === "uring" ? 41001 : io === "plain" ? 41002 : 41003;
        const src = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        const dst = Uint8Array.from([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        const payload = streamBytes(9000, sport);
        put(0, tcp6Frame({ srcMac: A_MAC, dstMac: B_MAC, srcIp: src, dstIp: dst, srcPort: sport, dstPort: 5002, seq: 5, payload }), FRAME_META_CSUM | (TCPV6 << FRAME_META_GSO_TYPE_SHIFT) | 1200);
        const small = streamBytes(333, 1);
        put(1, tcp6Frame({ srcMac: A_MAC, dstMac: B_MAC, srcIp: src, dstIp: dst, srcPort: sport, dstPort: 5003, seq: 9, payload: small }), FRAME_META_CSUM);
        batch.count = 2;
        expect(writer.send(batch)).toBe(2);
        const all = await collect(reader, (f) => parseTcp6Segment(f, sport, 5002) !== null || parseTcp6Segment(f, sport, 5003) !== null, 9);
        const segs = all.map((f) => parseTcp6Segment(f, sport, 5002)).filter((p) => p !== null);
        expect(segs.length).toBe(8);
        expect(segs.map((p) => p.seq)).toEqual(Array.from({ length: 8 }, (_, k) => 5 + k * 1200));
        expect(segs.every((p) => p.checksumsOk)).toBe(true);
        expect(Buffer.concat(segs.map((p) => p.payload))).toEqual(Buffer.from(payload));
        const one = all.map((f) => parseTcp6Segment(f, sport, 5003)).filter((p) => p !== null);
        expect(one.length).toBe(1);
        expect(one[0]!.checksumsOk).toBe(true);
        expect(one[0]!.payload).toEqual(small);
      } finally {
        writer.close();
        reader.close();
      }
    });

    test(`${io}: a GSO frame the kernel could not segment (not TCP, or TCP over the other IP version) is a drop, and the rest of the batch goes`, async () => {
      const writer = new TapPeer(vnet.name, vnet.fd, { io });
      const reader = new TapPeer(plain.name, plain.fd, { io: "plain" });
      try {
        reader.receive(rxBatch);
        const udp = buildUdpFrame({ size: 3000, srcMac: A_MAC, dstMac: B_MAC, srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 2], srcPort: 7, dstPort: 7001 });
        put(0, udp, FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | 1000);
        const ok = buildUdpFrame({ size: 100, srcMac: A_MAC, dstMac: B_MAC, srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 2], srcPort: 7, dstPort: 7002 });
        const v6 = tcp6Frame({ srcMac: A_MAC, dstMac: B_MAC, srcIp: new Uint8Array(16), dstIp: new Uint8Array(16), srcPort: 7, dstPort: 7003, seq: 0, payload: new Uint8Array(3000) });
        put(1, v6, FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | 1000);
        put(2, ok, 0);
        batch.count = 3;
        expect(writer.send(batch)).toBe(1);
        expect(writer.drops).toBe(2);
        expect(writer.lastError).toBe("EINVAL");
        expect(await collect(reader, (f) => f.length === 100 && f[23] === 17, 1)).toEqual([ok]);
      } finally {
        writer.close();
        reader.close();
      }
    });

    test(`${io}: with rx offloads on, a TCP GSO frame reaches a vnet TAP whole (meta: GSO type and size, checksum partial); with them off, as MSS segments`, async () => {
      const writer = new TapPeer(vnet.name, vnet.fd, { io });
      const reader = new TapPeer(gsoTap.name, gsoTap.fd, { io });
      try {
        const sport = io === "uring" ? 42001 : io === "plain" ? 42002 : 42003;
        const payload = streamBytes(60_000, sport);
        const gso = tcpFrame({ srcMac: A_MAC, dstMac: C_MAC, srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 3], srcPort: sport, dstPort: 5004, seq: 77, payload });
        const drain = async (want: number) => {
          const out: { f: Uint8Array; meta: number }[] = [];
          const deadline = Date.now() + 2000;
          while (out.length < want && Date.now() < deadline) {
            const n = reader.receive(bigRx);
            for (let i = 0; i < n; i++) {
              const f = bigRx.bytes.slice(i * bigRx.stride, i * bigRx.stride + bigRx.lens[i]);
              if (parseTcpSegment(f, sport, 5004) !== null) out.push({ f, meta: bigRx.meta[i] });
            }
            if (n === 0) await Bun.sleep(2);
          }
          return out;
        };
        reader.setRxOffloads(TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4 | TAP_OFFLOAD_TSO6);
        await Bun.sleep(20); // the bridge takes the port's new features
        reader.receive(bigRx); // whatever the bridge sent before
        put(0, gso, FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | 1448);
        batch.count = 1;
        expect(writer.send(batch)).toBe(1);
        const whole = await drain(1);
        expect(whole.length).toBe(1);
        expect(whole[0]!.f.length).toBe(gso.length);
        expect(whole[0]!.meta & FRAME_META_GSO_SIZE_MASK).toBe(1448);
        expect((whole[0]!.meta >>> FRAME_META_GSO_TYPE_SHIFT) & 0xf).toBe(TCPV4);
        expect(whole[0]!.meta & FRAME_META_CSUM).toBe(FRAME_META_CSUM);
        expect(partialTcp4Ok(whole[0]!.f)).toBe(true);
        expect(parseTcpSegment(whole[0]!.f, sport, 5004)!.payload).toEqual(payload);

        reader.setRxOffloads(0);
        await Bun.sleep(20);
        reader.receive(bigRx);
        put(0, gso, FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | 1448);
        batch.count = 1;
        expect(writer.send(batch)).toBe(1);
        const want = Math.ceil(payload.length / 1448);
        const segs = await drain(want);
        expect(segs.length).toBe(want);
        expect(segs.every((s) => (s.meta & ~(1 << 25)) === 0 && s.f.length <= 1514)).toBe(true); // at most DATA_VALID
        expect(segs.every((s) => parseTcpSegment(s.f, sport, 5004)!.checksumsOk)).toBe(true);
        expect(Buffer.concat(segs.map((s) => parseTcpSegment(s.f, sport, 5004)!.payload))).toEqual(Buffer.from(payload));
      } finally {
        reader.setRxOffloads(0);
        writer.close();
        reader.close();
      }
    });

    test(`${io}: frames the kernel sends to a vnet TAP are read back without the header`, async () => {
      const peer = new TapPeer(vnet.name, vnet.fd, { io });
      const sender = new TapPeer(plain.name, plain.fd, { io: "plain" });
      try {
        peer.receive(rxBatch);
        const frames = [60, 700, 1514].map((size, k) => buildUdpFrame({ size, srcMac: B_MAC, dstMac: A_MAC, srcIp: [10, 9, 0, 2], dstIp: [10, 9, 0, 1], srcPort: 9, dstPort: 8000 + k }));
        frames.forEach((f, i) => put(i, f, 0));
        batch.count = frames.length;
        expect(sender.send(batch)).toBe(3);
        const got = await collect(peer, (f) => f.length >= 42 && f[23] === 17 && f[36] === 0x1f, 3);
        expect(got).toEqual(frames);
      } finally {
        peer.close();
        sender.close();
      }
    });
  }
});
