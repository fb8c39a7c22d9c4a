// The daemon writes feature-sg / feature-gso-tcpv4 per its peer and data path, and a Linux-faithful
// netfront negotiates accordingly: with the null peer it may send multi-slot GSO packets (answered
// OKAY, slot by slot); with the seed data path it is never offered them. Through the switch peer a
// GSO packet reaches a guest that negotiated rx GSO whole, and one that did not as MSS-sized
// segments with complete checksums. A protocol violation in a multi-slot packet disables that vif alone.
import { expect, test } from "bun:test";
import type { Netfront } from "../../src/sim/netfront/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from "../../src/xen/netif.ts";
import { parseMac } from "../../src/sim/netfront/index.ts";
import type { RxMeta } from "../../src/sim/netfront/rx-queue.ts";
import { parseTcp6Segment, parseTcpSegment, streamBytes, tcp6Frame, tcpFrame } from "../net/tcp-frames.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { until, type SimHost } from "../backend/sim-host.ts";
import { rawGuest } from "../hostile/daemon-rig.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

async function guestOn(extra: string[], onTxResponse?: (id: number, status: number) => void) {
  const host = await fx.startHost();
  await fx.startDaemon(["--workers", "1", ...extra], { log: "error" });
  const { domid, vif: name, nf, info } = await fx.guest("alice", { onTxResponse });
  const B = `/local/domain/0/backend/vif/${domid}/0`;
  const offered = (await host.xs.directory(B)).filter((k) => k.startsWith("feature-")).sort();
  const vif = await fx.vif<{ features: Record<string, boolean> }>(name);
  return { nf, info, offered, features: vif.features };
}

test("--peer null: SG, TCP GSO and IPv6 checksum offload offered and negotiated; a multi-slot GSO packet is answered OKAY per data slot and NULL for its extra", async () => {
  const statuses: number[] = [];
  const { nf, info, offered, features } = await guestOn(["--peer", "null"], (_id, s) => statuses.push(s));
  expect(offered).toEqual(["feature-ctrl-ring", "feature-dynamic-multicast-control", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload", "feature-multicast-control", "feature-rx-copy", "feature-rx-flip", "feature-sg", "feature-split-event-channels"]);
  expect(info.txOffloads).toEqual({ sg: true, gsoTcpv4: true, gsoTcpv6: true });
  expect(features).toMatchObject({ "feature-sg": true, "feature-gso-tcpv4": true, "feature-gso-tcpv6": true, "feature-ipv6-csum-offload": true });
  const f = new Uint8Array(10_000);
  f.set([0x08, 0x00], 12);
  expect(nf.send(f, { gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
  await until("responses", () => nf.queueDepths().txInFlight === 0, 5000);
  // netfront's tx gc skips NULL responses before reporting: only the data slots are seen here.
  expect(statuses).toEqual([NETIF_RSP_OKAY, NETIF_RSP_OKAY, NETIF_RSP_OKAY]);
  expect(nf.broken).toBe(false);
});

test("--peer switch: a 64 KiB TCP GSO packet reaches a guest that negotiated rx GSO as one packet (16 buffers, the GSO extra, csum_blank) and one that did not as MSS-sized segments with complete checksums; TCPv6 too", async () => {
  await fx.startHost();
  await fx.startDaemon(["--workers", "2", "--peer", "switch"], { log: "error" });
  type G = { nf: Netfront; domid: number; mac: Uint8Array; got: { f: Uint8Array; m: RxMeta }[] };
  const guests: G[] = [];
  for (const name of ["alice", "bob", "carol"]) {
    const advertise = name === "carol" ? { gsoTcpv4: false, gsoTcpv6: false } : undefined;
    const { domid, nf, info } = await fx.guest(name, { advertise });
    expect(info.txOffloads).toEqual({ sg: true, gsoTcpv4: true, gsoTcpv6: true });
    const g: G = { nf, domid, mac: parseMac(info.mac)!, got: [] };
    // The switch floods frames to MACs it has not learned: keep only our own.
    nf.onReceive((f, m) => g.mac.every((b, i) => f[i] === b) && g.got.push({ f: f.slice(), m }));
    guests.push(g);
  }
  const [alice, bob, carol] = guests as [G, G, G];
  const payload = streamBytes(65535 - 54, 11);
  const v6Payload = streamBytes(20_000, 12);
  const v4 = (to: G) => tcpFrame({ srcMac: alice.mac, dstMac: to.mac, srcIp: [10, 5, 0, 1], dstIp: [10, 5, 0, 2], srcPort: 7000, dstPort: 80, seq: 1000, payload });
  const v6 = (to: G) => tcp6Frame({ srcMac: alice.mac, dstMac: to.mac, srcIp: new Uint8Array(16).fill(1), dstIp: new Uint8Array(16).fill(2), srcPort: 7001, dstPort: 80, seq: 5, payload: v6Payload });
  for (const to of [bob, carol]) {
    expect(alice.nf.send(v4(to), { gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
    expect(alice.nf.send(v6(to), { gso: { size: 1200, type: XEN_NETIF_GSO_TYPE_TCPV6 } })).toBe(true);
  }
  const want4 = Math.ceil(payload.length / 1448), want6 = Math.ceil(v6Payload.length / 1200);
  await until("bob's two packets", () => bob.got.length >= 2, 10_000);
  await until("carol's segments", () => carol.got.length >= want4 + want6, 10_000);

  // Bob: each packet whole, laid out as netback does, its checksum left partial for his stack.
  const b4 = bob.got.find((g) => parseTcpSegment(g.f, 7000, 80))!;
  expect(b4.f.length).toBe(65535);
  expect(b4.m).toEqual({ flags: NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info | NETRXF_more_data, slots: 16, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 }, queue: 0 });
  expect(parseTcpSegment(b4.f, 7000, 80)!.payload).toEqual(payload);
  const b6 = bob.got.find((g) => parseTcp6Segment(g.f, 7001, 80))!;
  expect(b6.m.gso).toEqual({ size: 1200, type: XEN_NETIF_GSO_TYPE_TCPV6 });
  expect(parseTcp6Segment(b6.f, 7001, 80)!.payload).toEqual(v6Payload);

  // Carol: MSS-sized segments, one buffer each, complete checksums, the stream intact.
  const c4 = carol.got.map((g) => ({ g, s: parseTcpSegment(g.f, 7000, 80) })).filter((x) => x.s !== null);
  expect(c4.length).toBe(want4);
  expect(c4.every(({ g, s }) => g.f.length <= 1514 && g.m.gso === undefined && g.m.slots === 1 && s!.checksumsOk)).toBe(true);
  expect(c4.map(({ s }) => s!.seq)).toEqual(Array.from({ length: want4 }, (_, k) => 1000 + k * 1448));
  expect(Buffer.concat(c4.map(({ s }) => s!.payload))).toEqual(Buffer.from(payload));
  const c6 = carol.got.map((g) => parseTcp6Segment(g.f, 7001, 80)).filter((s) => s !== null);
  expect(c6.length).toBe(want6);
  expect(c6.every((s) => s.checksumsOk)).toBe(true);
  expect(Buffer.concat(c6.map((s) => s.payload))).toEqual(Buffer.from(v6Payload));

  const counters = async (g: G) => (await fx.vif<{ counters: Record<string, number> }>(`vif${g.domid}.0`)).counters;
  const cb = await counters(bob), cc = await counters(carol);
  expect(cb.rx_gso_packets).toBeGreaterThanOrEqual(2);
  expect([cc.rx_gso_packets, cc.rx_drops, cb.rx_drops]).toEqual([0, 0, 0]);
});

for (const [what, extra, base] of [
  // The control ring goes with the batched data path whatever the peer, not with the seed's.
  ["--datapath seed", ["--peer", "null", "--datapath", "seed"], ["feature-rx-copy", "feature-rx-flip", "feature-split-event-channels"]],
] as const) {
  test(`${what}: neither SG nor GSO is offered, and the netfront sends one slot per frame`, async () => {
    const { nf, info, offered, features } = await guestOn([...extra]);
    expect(offered).toEqual([...base]);
    expect(info.txOffloads).toEqual({ sg: false, gsoTcpv4: false, gsoTcpv6: false });
    expect(features).toMatchObject({ "feature-sg": false, "feature-gso-tcpv4": false, "feature-gso-tcpv6": false, "feature-ipv6-csum-offload": false });
    expect(() => nf.send(new Uint8Array(5000))).toThrow(/did not offer feature-sg/);
    expect(() => nf.send(new Uint8Array(1000), { gso: { size: 500, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toThrow(/did not offer it/);
  });
}

/** A guest connected through the daemon with granted ring pages (closed after each test). */
async function rawGuestOf(h: SimHost, name: string) {
  const g = await rawGuest(h, name);
  return { domid: g.domid, f: g.f, rings: fx.keepRings(g.fe) };
}

test("--peer null, SG/GSO negotiated: an unknown GSO type disables only that vif (error node naming it); a runt multi-slot packet is only answered ERROR", async () => {
  const host = await fx.startHost();
  await fx.startDaemon(["--workers", "2", "--peer", "null"], { log: "error" });
  const bad = await rawGuestOf(host, "mallory");
  const good = await rawGuestOf(host, "alice");

  // An extra-info slot is struct netif_extra_info over the request's bytes: type 1 (GSO), flags 0,
  // gso.size 1448 in the gref word; gso.type 9 in the offset field.
  bad.rings.postRawTx([
    { flags: NETTXF_extra_info | NETTXF_more_data, id: 1, size: 120 },
    { gref: 1 | (1448 << 16), offset: 9, id: 0, size: 0 },
    { id: 2, size: 60 },
  ]);
  await bad.f.waitBackend(S.Closing);
  const err = await host.xs.read(`/local/domain/0/error/backend/vif/${bad.domid}/0/error`);
  expect(err).toMatch(/^\d+ data path: tx packet at 0x0: GSO type 9 is unknown$/);

  // Tolerable: 13 bytes in two slots (less than an Ethernet header): ERROR for both, then a good packet.
  good.rings.postRawTx([
    { flags: NETTXF_more_data, id: 3, size: 13 },
    { id: 4, size: 6 },
    { flags: NETTXF_more_data, id: 5, size: 100 },
    { id: 6, size: 40 },
  ]);
  expect(await good.rings.responses(4)).toEqual([
    { id: 3, status: NETIF_RSP_ERROR },
    { id: 4, status: NETIF_RSP_ERROR },
    { id: 5, status: NETIF_RSP_OKAY },
    { id: 6, status: NETIF_RSP_OKAY },
  ]);
  expect(await good.f.backendState()).toBe(S.Connected);
});
