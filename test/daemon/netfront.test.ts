// The daemon against the sim's Linux-faithful netfront (src/sim/netfront): the handshake, a reset
// walk (5, 6, 1) and a reconnect on fresh rings, frames counted, and teardown by the toolstack.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { buildArp, parseIPv4, parseMac } from "../../src/sim/netfront/index.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { until } from "../backend/sim-host.ts";
import { canUseTapAndIp, daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

async function start(extra: string[] = ["--peer", "null"]) {
  const host = await fx.startHost();
  const daemon = await fx.startDaemon(["--workers", "1", ...extra], { log: "debug" });
  return { host, daemon };
}

interface VifJson {
  backendState: { number: number };
  frontendState: { number: number };
  counters: Record<string, number> | null;
}

test("netfront connects through the daemon, resets (5, 6, 1) and reconnects on fresh rings", async () => {
  const { host } = await start();
  const { domid, vif, nf, info: first } = await fx.guest("alice");
  expect(nf.backendState).toBe(S.Connected);
  expect(first.mac).toBe(await host.xs.read(`/local/domain/0/backend/vif/${domid}/0/mac`));

  // A frame from the guest reaches the worker (the null peer drops it, and counts it).
  expect(nf.send(buildArp(1, parseMac(first.mac)!, parseIPv4("10.0.0.2")!, new Uint8Array(6), parseIPv4("10.0.0.1")!))).toBe(true);
  await until("tx counted", async () => {
    const c = (await fx.vif<VifJson>(vif)).counters;
    return c !== null && c.tx_packets + c.tx_drops >= 1;
  });

  await nf.reset();
  const second = await nf.whenConnected(5000);
  expect(second.txRingRef).not.toBe(first.txRingRef);
  const v = await fx.vif<VifJson>(vif);
  expect(v.backendState.number).toBe(S.Connected);
  expect(v.frontendState.number).toBe(S.Connected);
  expect(fx.logs.filter((l) => l.includes(`${vif}: connected`)).length).toBe(2);
});

test("xl destroy of a guest whose netfront is connected: the vif is closed and forgotten, libxl does not time out", async () => {
  const { host, daemon } = await start();
  const { domid, nf } = await fx.guest("alice");
  // The guest dies first (its driver stops), as with a real destroy.
  await nf.close();
  const t0 = Date.now();
  await host.ts.destroy(String(domid));
  expect(Date.now() - t0).toBeLessThan(3000);
  await until("vif forgotten", () => daemon.vifs().length === 0);
  expect(host.libxlLog.filter((l) => / error /i.test(l))).toEqual([]);
});

test.skipIf(!canUseTapAndIp())("--peer tap: the host's ARP request reaches the guest through the TAP and its reply comes back", async () => {
  // A prefix of our own, so the TAP cannot collide with anything else on this host.
  const prefix = `qa${(process.pid % 1000).toString(36)}x`;
  const { host, daemon } = await start(["--peer", "tap", "--vifname-prefix", prefix]);
  const d = await host.ts.create("alice", { vifs: 1 });
  const nf = await fx.netfront({ domid: d.domid, ip: "10.98.0.2" });
  const info = await nf.whenConnected(5000);
  const ifname = `${prefix}${d.domid}.0`;
  expect(spawnSync("ip", ["addr", "add", "10.98.0.1/24", "dev", ifname]).status).toBe(0);
  // The kernel resolves 10.98.0.2 with an ARP request out of the TAP; the guest answers it.
  const sock = createSocket("udp4");
  try {
    await until("the guest's ARP reply learned by the host", async () => {
      sock.send("x", 9, "10.98.0.2");
      await Bun.sleep(50);
      return spawnSync("ip", ["neigh", "show", "10.98.0.2", "dev", ifname]).stdout.toString().includes(info.mac);
    });
  } finally {
    sock.close();
  }
  expect(nf.counters.arpReplies).toBeGreaterThan(0);
  expect(daemon.vifs()[0]!.backendState).toBe(S.Connected);
});
