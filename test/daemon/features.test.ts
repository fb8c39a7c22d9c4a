// The daemon writes feature-sg / feature-gso-tcpv4 per its peer and data path, and a Linux-faithful
// netfront negotiates accordingly: with the null peer it may send multi-slot GSO packets (answered
// OKAY, slot by slot); with the switch peer or the seed data path it is never offered them. A
// protocol violation in a multi-slot packet disables that vif alone.
import { afterEach, expect, test } from "bun:test";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { createNetfront, type Netfront } from "../../src/sim/netfront/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_GSO_TYPE_TCPV4 } from "../../src/xen/netif.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startSimHost, until, type SimHost } from "../backend/sim-host.ts";
import type { FakeFrontend } from "../pool/fake-frontend.ts";
import { rawGuest } from "../hostile/daemon-rig.ts";

let host: SimHost | undefined;
let daemon: Daemon | undefined;
const fronts: Netfront[] = [];
afterEach(async () => {
  for (const f of fronts.splice(0)) await f.close();
  await daemon?.stop();
  daemon = undefined;
  await host?.close();
  host = undefined;
});

async function guestOn(extra: string[], onTxResponse?: (id: number, status: number) => void) {
  host = await startSimHost();
  const config = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--http", "127.0.0.1:0", "--workers", "1", ...extra], env: {} });
  daemon = await startDaemon(config, { log: createLogger({ level: "error", format: "text", write: () => {} }) });
  const d = await host.ts.create("alice", { vifs: 1 });
  const nf = await createNetfront({ dir: host.dir, domid: d.domid, devid: 0, resetWaitMs: 2000, probeWaitMs: 2000, onTxResponse });
  fronts.push(nf);
  const info = await nf.whenConnected(5000);
  const B = `/local/domain/0/backend/vif/${d.domid}/0`;
  const offered = (await host.xs.directory(B)).filter((k) => k.startsWith("feature-")).sort();
  const vif = (await (await fetch(`${daemon.http.url}/vifs/vif${d.domid}.0`)).json()) as { features: Record<string, boolean> };
  return { nf, info, offered, features: vif.features };
}

test("--peer null: SG, TCP GSO and IPv6 checksum offload offered and negotiated; a multi-slot GSO packet is answered OKAY per data slot and NULL for its extra", async () => {
  const statuses: number[] = [];
  const { nf, info, offered, features } = await guestOn(["--peer", "null"], (_id, s) => statuses.push(s));
  expect(offered).toEqual(["feature-dynamic-multicast-control", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload", "feature-multicast-control", "feature-rx-copy", "feature-rx-flip", "feature-sg"]);
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

for (const [what, extra] of [
  ["--peer switch", ["--peer", "switch"]],
  ["--datapath seed", ["--peer", "null", "--datapath", "seed"]],
] as const) {
  test(`${what}: neither SG nor GSO is offered, and the netfront sends one slot per frame`, async () => {
    const { nf, info, offered, features } = await guestOn([...extra]);
    // Multicast control goes with the batched data path whatever the peer; the seed has none.
    expect(offered).toEqual((extra as readonly string[]).includes("seed") ? ["feature-rx-copy", "feature-rx-flip"] : ["feature-dynamic-multicast-control", "feature-multicast-control", "feature-rx-copy", "feature-rx-flip"]);
    expect(info.txOffloads).toEqual({ sg: false, gsoTcpv4: false, gsoTcpv6: false });
    expect(features).toMatchObject({ "feature-sg": false, "feature-gso-tcpv4": false, "feature-gso-tcpv6": false, "feature-ipv6-csum-offload": false });
    expect(() => nf.send(new Uint8Array(5000))).toThrow(/did not offer feature-sg/);
    expect(() => nf.send(new Uint8Array(1000), { gso: { size: 500, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toThrow(/did not offer it/);
  });
}

/** A guest connected through the daemon with granted ring pages (closed after each test). */
async function rawGuestOf(h: SimHost, name: string) {
  const g = await rawGuest(h, name);
  rawFronts.push(g.fe);
  return { domid: g.domid, f: g.f, rings: g.fe };
}
const rawFronts: FakeFrontend[] = [];
afterEach(() => {
  for (const r of rawFronts.splice(0)) r.close();
});

test("--peer null, SG/GSO negotiated: an unknown GSO type disables only that vif (error node naming it); a runt multi-slot packet is only answered ERROR", async () => {
  host = await startSimHost();
  const config = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--http", "127.0.0.1:0", "--workers", "2", "--peer", "null"], env: {} });
  daemon = await startDaemon(config, { log: createLogger({ level: "error", format: "text", write: () => {} }) });
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
