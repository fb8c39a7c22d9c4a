// Guest tx scatter-gather and TCP GSO end to end, and guest rx GSO, through the real daemon: three
// Linux-faithful netfront guests on one Linux bridge (--peer tap). The daemon offers feature-sg and
// feature-gso-tcpv4/-tcpv6, the netfronts take them, and alice sends multi-slot packets with a GSO
// extra slot. Her TAP (IFF_VNET_HDR) hands each to the kernel as one GSO packet. Bob's netfront also
// asked for rx GSO, so his TAP's offloads are on and the bridge hands him the packet whole: his rx
// ring gets it as netback would lay it out (one packet over 16 buffers, the GSO extra, csum_blank).
// Carol's netfront did not ask for GSO, so her TAP's offloads stay off and the kernel cuts the
// packet into MSS-sized segments with complete checksums. Root only; every name is private to this run.
import { describe, expect, test } from "bun:test";
import { parseMac, type Netfront } from "../../src/sim/netfront/index.ts";
import type { RxMeta } from "../../src/sim/netfront/rx-queue.ts";
import { NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data, NETTXF_csum_blank, NETTXF_data_validated, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { parseTcp6Segment, parseTcpSegment, streamBytes, tcp6Frame, tcpFrame } from "../net/tcp-frames.ts";
import { canUseTapAndIp, daemonFixture } from "../support/daemon-fixture.ts";
const ALICE_IP: [number, number, number, number] = [10, 77, 0, 1];
const BOB_IP: [number, number, number, number] = [10, 77, 0, 2];
const CAROL_IP: [number, number, number, number] = [10, 77, 0, 3];
const CAROL_IP6 = Uint8Array.from([0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);

/** A checksum-partial TCP frame's checksum field holds the folded pseudo-header sum (what CHECKSUM_PARTIAL means). */
function pseudoSumInField(f: Uint8Array): boolean {
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  let sum = 6;
  let l4: number;
  if (dv.getUint16(12) === 0x0800) {
    const ihl = (f[14] & 0x0f) * 4;
    l4 = 14 + ihl;
    sum += dv.getUint16(16) - ihl;
    for (let o = 26; o < 34; o += 2) sum += dv.getUint16(o);
  } else {
    l4 = 54;
    sum += dv.getUint16(18);
    for (let o = 22; o < 54; o += 2) sum += dv.getUint16(o);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return dv.getUint16(l4 + 16) === sum;
}
const ALICE_IP6 = Uint8Array.from([0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const BOB_IP6 = Uint8Array.from([0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);

describe.skipIf(!canUseTapAndIp())("guest tx SG + TCP GSO through the daemon and a TAP", () => {
  const fx = daemonFixture();

  test("a 64 KiB-class GSO packet in 18 slots leaves alice's tx ring whole, reaches bob (rx GSO) as one GSO packet and carol (no rx GSO) as MSS-sized segments with complete checksums; a multi-slot plain frame arrives intact; TCPv6 GSO too", async () => {
    const bridge = fx.bridge("gb");
    await fx.startHost();
    const prefix = `qg${(process.pid % 1296).toString(36)}x`;
    await fx.startDaemon(["--peer", "tap", "--bridge", bridge, "--vifname-prefix", prefix, "--workers", "2"], { log: "error" });
    const guests: { nf: Netfront; domid: number; mac: Uint8Array; rx: Uint8Array[]; rx6: Uint8Array[]; meta: Map<Uint8Array, RxMeta> }[] = [];
    for (const name of ["alice", "bob", "carol"]) {
      // Carol's netfront takes neither rx GSO (nor, thus, tx GSO: the keys describe both directions).
      const advertise = name === "carol" ? { gsoTcpv4: false, gsoTcpv6: false } : undefined;
      const { domid, nf, info } = await fx.guest(name, { advertise }, { domain: { nics: [{ bridge }] } });
      expect(info.txOffloads).toEqual({ sg: true, gsoTcpv4: true, gsoTcpv6: true });
      const mac = parseMac(info.mac)!;
      const g = { nf, domid, mac, rx: [] as Uint8Array[], rx6: [] as Uint8Array[], meta: new Map<Uint8Array, RxMeta>() };
      // The bridge floods frames to MACs it has not learned yet: keep only our own.
      const mine = (f: Uint8Array) => f.length >= 14 && mac.every((b, i) => f[i] === b);
      nf.onReceive((f, m) => {
        if (!mine(f)) return;
        const copy = f.slice();
        g.meta.set(copy, m);
        if (f.length >= 34 && f[12] === 0x08 && f[13] === 0x00 && f[30] === 10 && f[31] === 77) g.rx.push(copy);
        if (f.length >= 74 && f[12] === 0x86 && f[13] === 0xdd && f[20] === 6) g.rx6.push(copy);
      });
      guests.push(g);
    }
    const [alice, bob, carol] = guests as [(typeof guests)[0], (typeof guests)[0], (typeof guests)[0]];
    const vif = await fx.vif<{ features: Record<string, boolean> }>(`vif${alice.domid}.0`);
    expect(vif.features).toMatchObject({ "feature-sg": true, "feature-gso-tcpv4": true, "feature-gso-tcpv6": true, "feature-ipv6-csum-offload": true });

    // 18 slots: a head of 54 + 3042 bytes at offset 1000, 14 full pages, two half pages, the rest.
    const slots = [3096, ...Array.from({ length: 14 }, () => 4096), 2000, 2000];
    slots.push(65535 - slots.reduce((a, b) => a + b, 0));
    expect(slots.length).toBe(18);
    const payload = streamBytes(65535 - 54, 3);
    const bigTo = (to: typeof bob, dstIp: [number, number, number, number]) => tcpFrame({ srcMac: alice.mac, dstMac: to.mac, srcIp: ALICE_IP, dstIp, srcPort: 33000, dstPort: 5201, seq: 7, payload });
    const big = bigTo(bob, BOB_IP);
    expect(big.length).toBe(65535);
    expect(alice.nf.send(big, { offset: 1000, slots, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
    // Bob asked for rx GSO: one packet, laid out as netback does (ceil(65535 / 4096) = 16 buffers + the extra).
    await until("bob has the GSO packet", () => bob.rx.some((f) => parseTcpSegment(f, 33000, 5201)), 10_000);
    const got = bob.rx.filter((f) => parseTcpSegment(f, 33000, 5201));
    expect(got.length).toBe(1);
    expect(got[0]!.length).toBe(65535);
    expect(bob.meta.get(got[0]!)).toEqual({ flags: NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info | NETRXF_more_data, slots: 16, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 }, queue: 0 });
    expect(pseudoSumInField(got[0]!)).toBe(true);
    expect(parseTcpSegment(got[0]!, 33000, 5201)!.payload).toEqual(payload);
    // Carol did not: the kernel segments it for her, checksums complete.
    expect(alice.nf.send(bigTo(carol, CAROL_IP), { offset: 1000, slots, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
    const want = Math.ceil(payload.length / 1448);
    await until("carol has every segment", () => carol.rx.filter((f) => parseTcpSegment(f, 33000, 5201)).length >= want, 10_000);
    const segs = carol.rx.map((f) => parseTcpSegment(f, 33000, 5201)).filter((s) => s !== null);
    expect(segs.length).toBe(want);
    expect(carol.rx.every((f) => f.length <= 1514 && carol.meta.get(f)!.gso === undefined && carol.meta.get(f)!.slots === 1)).toBe(true);
    expect(segs.every((s) => s.checksumsOk)).toBe(true);
    expect(segs.map((s) => s.seq)).toEqual(Array.from({ length: want }, (_, k) => 7 + k * 1448));
    expect(Buffer.concat(segs.map((s) => s.payload))).toEqual(Buffer.from(payload));

    // A plain 1514-byte frame in three slots, its checksum left to the backend (csum_blank): bob
    // gets it with its checksum still partial (csum_blank), carol with it completed.
    const plainPayload = streamBytes(1460, 9);
    for (const [to, dstIp] of [[bob, BOB_IP], [carol, CAROL_IP]] as const) {
      const plain = tcpFrame({ srcMac: alice.mac, dstMac: to.mac, srcIp: ALICE_IP, dstIp, srcPort: 33001, dstPort: 5201, seq: 1, payload: plainPayload });
      expect(alice.nf.send(plain, { slots: [100, 1000, 414], flags: NETTXF_csum_blank | NETTXF_data_validated })).toBe(true);
      await until("the multi-slot frame", () => to.rx.some((f) => parseTcpSegment(f, 33001, 5201)), 10_000);
      const frames = to.rx.filter((f) => parseTcpSegment(f, 33001, 5201));
      expect(frames.length).toBe(1);
      const one = parseTcpSegment(frames[0]!, 33001, 5201)!;
      expect(one.payload).toEqual(plainPayload);
      if (to === bob) {
        expect(to.meta.get(frames[0]!)!.flags).toBe(NETRXF_csum_blank | NETRXF_data_validated);
        expect(pseudoSumInField(frames[0]!)).toBe(true);
      } else expect(one.checksumsOk).toBe(true);
    }

    // TCP over IPv6: the same, in netfront's default layout (8 slots): bob whole, carol in segments.
    const v6Payload = streamBytes(30_000, 5);
    const v6To = (to: typeof bob, dstIp: Uint8Array) => tcp6Frame({ srcMac: alice.mac, dstMac: to.mac, srcIp: ALICE_IP6, dstIp, srcPort: 33002, dstPort: 5201, seq: 100, payload: v6Payload });
    expect(alice.nf.send(v6To(bob, BOB_IP6), { gso: { size: 1400, type: XEN_NETIF_GSO_TYPE_TCPV6 } })).toBe(true);
    await until("bob has the IPv6 GSO packet", () => bob.rx6.some((f) => parseTcp6Segment(f, 33002, 5201)), 10_000);
    const got6 = bob.rx6.filter((f) => parseTcp6Segment(f, 33002, 5201));
    expect(got6.length).toBe(1);
    expect(bob.meta.get(got6[0]!)!.gso).toEqual({ size: 1400, type: XEN_NETIF_GSO_TYPE_TCPV6 });
    expect(pseudoSumInField(got6[0]!)).toBe(true);
    expect(parseTcp6Segment(got6[0]!, 33002, 5201)!.payload).toEqual(v6Payload);
    expect(alice.nf.send(v6To(carol, CAROL_IP6), { gso: { size: 1400, type: XEN_NETIF_GSO_TYPE_TCPV6 } })).toBe(true);
    const want6 = Math.ceil(v6Payload.length / 1400);
    await until("carol has every IPv6 segment", () => carol.rx6.filter((f) => parseTcp6Segment(f, 33002, 5201)).length >= want6, 10_000);
    const segs6 = carol.rx6.map((f) => parseTcp6Segment(f, 33002, 5201)).filter((s) => s !== null);
    expect(segs6.length).toBe(want6);
    expect(segs6.every((s) => s.checksumsOk)).toBe(true);
    expect(Buffer.concat(segs6.map((s) => s.payload))).toEqual(Buffer.from(v6Payload));
    const bobC = (await fx.vif<{ counters: Record<string, number> }>(`vif${bob.domid}.0`)).counters;
    // At least his two; the bridge may also have flooded him carol's before it learned her MAC.
    expect(bobC.rx_gso_packets).toBeGreaterThanOrEqual(2);
    expect({ rx_drops: bobC.rx_drops, rx_errors: bobC.rx_errors }).toEqual({ rx_drops: 0, rx_errors: 0 });

    // Every slot answered OKAY (the extra slots NULL, not counted), nothing dropped or refused.
    await until("alice's responses", () => alice.nf.queueDepths().txInFlight === 0, 5000);
    expect(alice.nf.counters).toMatchObject({ txPackets: 6, txRspOkay: 2 * (18 + 3 + 8), txRspError: 0, txRspDropped: 0 });
    const c = (await fx.vif<{ counters: Record<string, number> }>(`vif${alice.domid}.0`)).counters;
    expect({ tx_packets: c.tx_packets, tx_errors: c.tx_errors, tx_drops: c.tx_drops }).toEqual({ tx_packets: 6, tx_errors: 0, tx_drops: 0 });
  }, 60_000);
});
