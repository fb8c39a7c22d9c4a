// qnicd in a driver domain on the sim: the toolstack creates a domain D, then two guests whose vif
// backend is D (xl's `backend=D`: libxl puts the backend under /local/domain/D and gives D the
// permissions), and a qnicd with --domid D, talking to xenstore through D's own socket with D's
// permissions, maps the guests' grants as D (their netfronts grant to backend-id D, and the sim
// hypervisor refuses any other grantee: native/simxen.c checks the grant's domid against the
// mapper's), binds their event channels from D, and forwards pings between them through its switch.
import { expect, test } from "bun:test";
import { startBackend } from "../../src/backend/index.ts";
import { PlaceholderProvisioner } from "../../src/net/peer-provisioner.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { isXenstoreError, XenstoreClient, xenbusDeviceTransport } from "../../src/xenstore/index.ts";
import { FakePool } from "../backend/fake-pool.ts";
import { ScriptedFrontend } from "../backend/scripted-frontend.ts";
import { FakeXenbusDevice } from "../xenstore/fake-xenbus-device.ts";
import { createLogger } from "../../src/log.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { until } from "../backend/sim-host.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";
import { echoAcross } from "../support/guest-echo.ts";

const fx = daemonFixture();

/** qnicd in driver domain `domid` of the fixture's host. */
function startIn(domid: number, extra: string[] = []) {
  return fx.startDaemon(["--domid", String(domid), "--peer", "switch", "--workers", "1", ...extra], { log: "debug" });
}

test("a qnicd in driver domain D serves two guests whose vifs have backend=D: they ping each other", async () => {
  const host = await fx.startHost();
  const dd = await host.ts.create("driver", { vifs: 0 });
  const d = await startIn(dd.domid);
  expect(d.platform.xenstorePath).toEndWith(`/xenstored/domain-${dd.domid}.sock`);
  // The daemon's xenstore connection has D's permissions, not dom0's: dom0's own nodes are closed to it.
  expect(await d.xs.read(`/local/domain/${dd.domid}/domid`)).toBe(String(dd.domid));
  expect(await d.xs.read("domid")).toBe(String(dd.domid));
  const denied = await d.xs.read("/local/domain/0/name").catch((e) => e);
  expect(isXenstoreError(denied, "EACCES")).toBe(true);
  expect(d.backend.bus.root).toBe(`/local/domain/${dd.domid}/backend/vif`);

  const guests = [];
  for (const [name, ip] of [["alice", "10.7.0.1"], ["bob", "10.7.0.2"]] as const) {
    const { domid, nf, info } = await fx.guest(name, { ip }, { domain: { vifs: 1, backendDomid: dd.domid }, connectMs: 10_000 });
    expect(nf.backendDomid).toBe(dd.domid);
    guests.push({ nf, ip, mac: info.mac, domid });
  }
  const [a, b] = guests as [(typeof guests)[0], (typeof guests)[0]];
  expect(await echoAcross(a, b, 5)).toBe(5);
  expect(await echoAcross(b, a, 5)).toBe(5);

  for (const g of guests) {
    const B = `/local/domain/${dd.domid}/backend/vif/${g.domid}/0`;
    expect(await host.xs.read(`${B}/state`)).toBe(String(S.Connected));
    expect(await host.xs.read(`/local/domain/${g.domid}/device/vif/0/backend-id`)).toBe(String(dd.domid));
  }
  const v = d.vifs().map((s) => [s.domid, s.backendState]);
  expect(v.sort()).toEqual([
    [a.domid, S.Connected],
    [b.domid, S.Connected],
  ]);

  // Teardown by the toolstack works across domains too: the vif is closed and forgotten.
  await a.nf.close();
  const t0 = Date.now();
  await host.ts.destroy(String(a.domid));
  // As with a dom0 backend: qnicd answers Closed at once, so libxl does not wait out its 10 s.
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(host.libxlLog.filter((l) => / error /i.test(l))).toEqual([]);
  await until("vif forgotten", () => d.vifs().length === 1);
  expect(d.vifs().map((s) => s.domid)).toEqual([b.domid]);
  expect(fx.logs.filter((l) => / (warn |error) /.test(l))).toEqual([]);
}, 60_000);

test("a driver domain's qnicd sees only its own backends: a dom0-backed guest is left alone", async () => {
  const host = await fx.startHost();
  const dd = await host.ts.create("driver", { vifs: 0 });
  const d = await startIn(dd.domid);
  const other = await host.ts.create("dom0-guest", { vifs: 1, noWait: true });
  const mine = await host.ts.create("mine", { vifs: 1, backendDomid: dd.domid });
  expect(d.vifs().map((s) => s.domid)).toEqual([mine.domid]);
  expect(await host.xs.read(`/local/domain/0/backend/vif/${other.domid}/0/state`)).toBe(String(S.Initialising));
}, 60_000);

test("--domid naming a domain that does not exist: one line saying how to create it", async () => {
  const host = await fx.startHost();
  await expect(startIn(42)).rejects.toThrow(
    `qnicd: sim platform: dom42 does not exist on the simulated host in ${host.dir}: use 0 (dom0), or create the driver domain first (sim xl create NAME)`,
  );
});

test("the backend in driver domain D through a /dev/xen/xenbus-like device: reads its domid there, claims a guest's vif, walks it to Connected", async () => {
  const host = await fx.startHost();
  const dd = await host.ts.create("driver", { vifs: 0 });
  // What the kernel's xenbus driver does in D: D's own xenstore connection, one message per write.
  const device = new FakeXenbusDevice(simPaths(host.dir).domainSocket(dd.domid), 3);
  fx.cleanup(() => device.close());
  const xs = await XenstoreClient.connect({ transport: { factory: xenbusDeviceTransport("/dev/xen/xenbus", device.file), endpoint: "/dev/xen/xenbus" }, onError: () => {} });
  fx.cleanup(() => xs.close());
  expect(await xs.read("domid")).toBe(String(dd.domid));

  const pool = new FakePool();
  const log = createLogger({ level: "debug", format: "text", write: (l) => fx.logs.push(l) });
  const backend = await startBackend({ xs, pool, peers: new PlaceholderProvisioner("null"), log, backendDomid: dd.domid, type: "vif", vifnamePrefix: "vif" });
  fx.cleanup(() => backend.stop());
  const g = await host.ts.create("alice", { vifs: 1, backendDomid: dd.domid });
  const f = new ScriptedFrontend(await host.guestClient(g.domid), g.domid, 0, "vif", dd.domid);
  await f.connect({ txRingRef: "768", rxRingRef: "769", evtchn: "17" });
  await f.waitBackend(S.Connected);
  expect(pool.specs.map((s) => [s.frontendDomid, s.txRingRef, s.rxRingRef, s.txEvtchn])).toEqual([[g.domid, 768, 769, 17]]);
  expect(device.violations).toEqual([]);
  expect(device.writes.length).toBeGreaterThan(10);
  expect(fx.logs.filter((l) => / (warn |error) /.test(l))).toEqual([]);
}, 30_000);
