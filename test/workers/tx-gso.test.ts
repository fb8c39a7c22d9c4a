// Guest tx scatter-gather and TCP GSO end to end, through the real daemon: two Linux-faithful
// netfront guests on one Linux bridge (--peer tap). The daemon offers feature-sg and
// feature-gso-tcpv4, the netfronts take them, and alice sends multi-slot packets with a GSO extra
// slot. Her TAP (IFF_VNET_HDR) hands each to the kernel as one GSO packet; the bridge forwards it
// to bob's TAP, whose offloads are off, so the kernel cuts it into MSS-sized segments with complete
// checksums, and bob's rx ring gets those. Root only; every name is private to this run.
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { createNetfront, parseMac, type Netfront } from "../../src/sim/netfront/index.ts";
import { NETTXF_csum_blank, NETTXF_data_validated, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6 } from "../../src/xen/netif.ts";
import { startSimHost, until, type SimHost } from "../backend/sim-host.ts";
import { canUseTap, ip, linkExists, uniqueIfName } from "../net/tap-helper.ts";
import { parseTcp6Segment, parseTcpSegment, streamBytes, tcp6Frame, tcpFrame } from "../net/tcp-frames.ts";

const canBridge = () => canUseTap() && spawnSync("ip", ["-V"], { stdio: "ignore" }).status === 0;
const ALICE_IP: [number, number, number, number] = [10, 77, 0, 1];
const BOB_IP: [number, number, number, number] = [10, 77, 0, 2];
const ALICE_IP6 = Uint8Array.from([0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const BOB_IP6 = Uint8Array.from([0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);

describe.skipIf(!canBridge())("guest tx SG + TCP GSO through the daemon and a TAP", () => {
  let host: SimHost | undefined;
  let daemon: Daemon | undefined;
  let bridge: string | undefined;
  const fronts: Netfront[] = [];
  afterEach(async () => {
    for (const f of fronts.splice(0)) await f.close();
    await daemon?.stop();
    daemon = undefined;
    await host?.close();
    host = undefined;
    if (bridge && linkExists(bridge)) ip("link", "del", bridge);
    bridge = undefined;
  });

  test("a 64 KiB-class GSO packet in 18 slots leaves alice's tx ring whole and reaches bob as MSS-sized segments with complete checksums; a multi-slot plain frame arrives intact; TCPv6 GSO too", async () => {
    bridge = uniqueIfName("gb");
    ip("link", "add", bridge, "type", "bridge");
    writeFileSync(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, "1");
    ip("link", "set", "dev", bridge, "up");
    host = await startSimHost();
    const prefix = `qg${(process.pid % 1296).toString(36)}x`;
    const config = loadConfig({
      argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "tap", "--bridge", bridge, "--vifname-prefix", prefix, "--http", "127.0.0.1:0", "--workers", "2"],
      env: {},
    });
    daemon = await startDaemon(config, { log: createLogger({ level: "error", format: "text", write: () => {} }) });
    const guests: { nf: Netfront; domid: number; mac: Uint8Array; rx: Uint8Array[]; rx6: Uint8Array[] }[] = [];
    for (const name of ["alice", "bob"]) {
      const d = await host.ts.create(name, { nics: [{ bridge: bridge! }] });
      const nf = await createNetfront({ dir: host.dir, domid: d.domid, devid: 0, resetWaitMs: 2000, probeWaitMs: 2000 });
      fronts.push(nf);
      const info = await nf.whenConnected(5000);
      expect(info.txOffloads).toEqual({ sg: true, gsoTcpv4: true, gsoTcpv6: true });
      const g = { nf, domid: d.domid, mac: parseMac(info.mac)!, rx: [] as Uint8Array[], rx6: [] as Uint8Array[] };
      nf.onReceive((f) => f.length >= 34 && f[12] === 0x08 && f[13] === 0x00 && f[30] === 10 && f[31] === 77 && g.rx.push(f.slice()));
      nf.onReceive((f) => f.length >= 74 && f[12] === 0x86 && f[13] === 0xdd && f[20] === 6 && g.rx6.push(f.slice()));
      guests.push(g);
    }
    const [alice, bob] = guests as [(typeof guests)[0], (typeof guests)[0]];
    const vif = (await (await fetch(`${daemon.http.url}/vifs/vif${alice.domid}.0`)).json()) as { features: Record<string, boolean> };
    expect(vif.features).toMatchObject({ "feature-sg": true, "feature-gso-tcpv4": true, "feature-gso-tcpv6": true, "feature-ipv6-csum-offload": true });

    // 18 slots: a head of 54 + 3042 bytes at offset 1000, 14 full pages, two half pages, the rest.
    const payload = streamBytes(65535 - 54, 3);
    const big = tcpFrame({ srcMac: alice.mac, dstMac: bob.mac, srcIp: ALICE_IP, dstIp: BOB_IP, srcPort: 33000, dstPort: 5201, seq: 7, payload });
    expect(big.length).toBe(65535);
    const slots = [3096, ...Array.from({ length: 14 }, () => 4096), 2000, 2000];
    slots.push(65535 - slots.reduce((a, b) => a + b, 0));
    expect(slots.length).toBe(18);
    expect(alice.nf.send(big, { offset: 1000, slots, gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
    const want = Math.ceil(payload.length / 1448);
    await until("bob has every segment", () => bob.rx.filter((f) => parseTcpSegment(f, 33000, 5201)).length >= want, 10_000);
    const segs = bob.rx.map((f) => parseTcpSegment(f, 33000, 5201)).filter((s) => s !== null);
    expect(segs.length).toBe(want);
    expect(segs.every((s) => s.checksumsOk)).toBe(true);
    expect(segs.map((s) => s.seq)).toEqual(Array.from({ length: want }, (_, k) => 7 + k * 1448));
    expect(Buffer.concat(segs.map((s) => s.payload))).toEqual(Buffer.from(payload));

    // A plain 1514-byte frame in three slots, its checksum left to the backend (csum_blank).
    const plainPayload = streamBytes(1460, 9);
    const plain = tcpFrame({ srcMac: alice.mac, dstMac: bob.mac, srcIp: ALICE_IP, dstIp: BOB_IP, srcPort: 33001, dstPort: 5201, seq: 1, payload: plainPayload });
    expect(alice.nf.send(plain, { slots: [100, 1000, 414], flags: NETTXF_csum_blank | NETTXF_data_validated })).toBe(true);
    await until("bob has the multi-slot frame", () => bob.rx.some((f) => parseTcpSegment(f, 33001, 5201)), 10_000);
    const one = bob.rx.map((f) => parseTcpSegment(f, 33001, 5201)).filter((s) => s !== null);
    expect(one.length).toBe(1);
    expect(one[0]!.checksumsOk).toBe(true);
    expect(one[0]!.payload).toEqual(plainPayload);

    // TCP over IPv6: the same, in netfront's default layout (8 slots).
    const v6Payload = streamBytes(30_000, 5);
    const v6 = tcp6Frame({ srcMac: alice.mac, dstMac: bob.mac, srcIp: ALICE_IP6, dstIp: BOB_IP6, srcPort: 33002, dstPort: 5201, seq: 100, payload: v6Payload });
    expect(alice.nf.send(v6, { gso: { size: 1400, type: XEN_NETIF_GSO_TYPE_TCPV6 } })).toBe(true);
    const want6 = Math.ceil(v6Payload.length / 1400);
    await until("bob has every IPv6 segment", () => bob.rx6.filter((f) => parseTcp6Segment(f, 33002, 5201)).length >= want6, 10_000);
    const segs6 = bob.rx6.map((f) => parseTcp6Segment(f, 33002, 5201)).filter((s) => s !== null);
    expect(segs6.length).toBe(want6);
    expect(segs6.every((s) => s.checksumsOk)).toBe(true);
    expect(Buffer.concat(segs6.map((s) => s.payload))).toEqual(Buffer.from(v6Payload));

    // Every slot answered OKAY (the extra slots NULL, not counted), nothing dropped or refused.
    await until("alice's responses", () => alice.nf.queueDepths().txInFlight === 0, 5000);
    expect(alice.nf.counters).toMatchObject({ txPackets: 3, txRspOkay: 18 + 3 + 8, txRspError: 0, txRspDropped: 0 });
    const c = ((await (await fetch(`${daemon.http.url}/vifs/vif${alice.domid}.0`)).json()) as { counters: Record<string, number> }).counters;
    expect({ tx_packets: c.tx_packets, tx_errors: c.tx_errors, tx_drops: c.tx_drops }).toEqual({ tx_packets: 3, tx_errors: 0, tx_drops: 0 });
  }, 60_000);
});
