// End to end with the real pieces: the daemon (control plane + worker pool) with --peer switch and
// two workers, and two Linux-faithful netfront guests on the simulated host. Frames cross from one
// guest's tx ring through worker A, the in-daemon switch and worker B into the other's rx ring.
import { expect, test } from "bun:test";
import { buildUdpFrame } from "../../src/net/frames.ts";
import { buildArp, parseIPv4, parseMac, type RxMeta } from "../../src/sim/netfront/index.ts";
import { NETRXF_csum_blank, NETRXF_data_validated, NETTXF_csum_blank } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

/** `bobAdvertise`: what bob's netfront writes beyond the defaults (all of Linux's offloads). */
async function twoGuests(bobAdvertise?: { gsoTcpv4?: boolean; gsoTcpv6?: boolean }) {
  await fx.startHost();
  await fx.startDaemon(["--peer", "switch", "--workers", "2"], { log: "debug" });
  const guests = [];
  for (const [name, ip] of [["alice", "10.9.0.1"], ["bob", "10.9.0.2"]] as const) {
    const { domid, nf, info } = await fx.guest(name, { ip, advertise: name === "bob" ? bobAdvertise : undefined });
    const rx: { frame: Uint8Array; meta: RxMeta }[] = [];
    nf.onReceive((frame, meta) => rx.push({ frame, meta }));
    guests.push({ nf, domid, mac: parseMac(info.mac)!, ip: parseIPv4(ip)!, rx });
  }
  return { a: guests[0]!, b: guests[1]! };
}

async function counters(name: string): Promise<Record<string, number>> {
  return (await fx.vif<{ counters: Record<string, number> }>(name)).counters;
}

test("guest to guest through the switch on two workers: ARP answered; frames of every size 14..1514 arrive intact and in order", async () => {
  const { a, b } = await twoGuests();
  // ARP: alice asks (broadcast, flooded), bob's netfront answers, the switch has learned both MACs.
  a.nf.send(buildArp(1, a.mac, a.ip, new Uint8Array(6), b.ip));
  await until("ARP reply at alice", () => a.rx.some((r) => r.frame.length >= 42 && r.frame[21] === 2));
  expect(b.nf.counters.arpReplies).toBe(1);

  const sent: Uint8Array[] = [];
  for (let size = 14; size <= 1514; size++) {
    const f = new Uint8Array(size);
    for (let i = 0; i < size; i++) f[i] = (i * 31 + size) & 0xff;
    if (size >= 12) {
      f.set(b.mac, 0);
      f.set(a.mac, 6);
    }
    sent.push(f);
  }
  const before = b.rx.length;
  // Paced by the ring: netfront keeps what does not fit in its backlog (1000 frames).
  for (let i = 0; i < sent.length; i += 200) {
    for (const f of sent.slice(i, i + 200)) expect(a.nf.send(f)).toBe(true);
    await until(`${Math.min(i + 200, sent.length)} frames at bob`, () => b.rx.length - before >= Math.min(i + 200, sent.length), 10000);
  }
  const got = b.rx.slice(before).map((r) => r.frame);
  expect(got.length).toBe(sent.length);
  for (let i = 0; i < sent.length; i++) expect(got[i]).toEqual(sent[i]);
  const ca = await counters(`vif${a.domid}.0`);
  const cb = await counters(`vif${b.domid}.0`);
  expect(ca.tx_errors).toBe(0);
  expect(ca.tx_packets).toBeGreaterThanOrEqual(1502);
  expect(cb.rx_drops).toBe(0);
  expect(cb.rx_packets).toBeGreaterThanOrEqual(1502);
  expect(new Set(Object.values(fx.daemon.pool.snapshot().vifs))).toEqual(new Set([0, 1])); // one vif per worker
});

test("csum_blank UDP frames from a guest arrive at a guest without rx offloads with a correct checksum, and at one with them still partial (csum_blank)", async () => {
  for (const offloads of [false, true]) {
    const { a, b } = await twoGuests(offloads ? undefined : { gsoTcpv4: false, gsoTcpv6: false });
    const good = buildUdpFrame({ size: 300, srcMac: a.mac, dstMac: b.mac, srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 2], srcPort: 1000, dstPort: 2000 });
    const blank = good.slice();
    blank[40] = 0;
    blank[41] = 0;
    const before = b.rx.length;
    a.nf.send(blank, { flags: NETTXF_csum_blank });
    await until("frame at bob", () => b.rx.length > before);
    // With offloads the checksum is bob's stack's to complete, as netback leaves a CHECKSUM_PARTIAL frame.
    expect(b.rx[before]!.frame).toEqual(offloads ? blank : good);
    expect(b.rx[before]!.meta.flags).toBe(offloads ? NETRXF_csum_blank | NETRXF_data_validated : 0);
    await fx.teardown();
  }
});
