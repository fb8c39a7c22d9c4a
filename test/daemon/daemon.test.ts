// The daemon in-process on a simulated host: real config, real worker pool, HTTP API, and a guest
// that grants real ring pages (test/pool's FakeFrontend) and talks xenstore like netfront.
import { expect, test } from "bun:test";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { ECS_UNBOUND } from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { FakeFrontend, ringPagesMapped, workerThreads } from "../pool/fake-frontend.ts";
import { FakePool } from "../backend/fake-pool.ts";
import { ScriptedFrontend } from "../backend/scripted-frontend.ts";
import { until, type SimHost } from "../backend/sim-host.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

/** Two workers, the null peer (it counts what the guests send and answers nothing). */
const FLAGS = ["--peer", "null", "--workers", "2"];

/** A guest whose vif 0 is connected through the real pool with granted ring pages. */
async function connectedGuest(h: SimHost, name: string) {
  const d = await h.ts.create(name, { vifs: 1 });
  const rings = fx.keepRings(new FakeFrontend(h.dir, d.domid));
  const f = new ScriptedFrontend(await h.guestClient(d.domid), d.domid, 0);
  await f.connect({ txRingRef: String(rings.txRef), rxRingRef: String(rings.rxRef), evtchn: String(rings.txPort) });
  await f.waitBackend(S.Connected);
  return { domid: d.domid, f, rings };
}

test("a guest connects through the real worker pool; /vifs shows it with its worker, MAC, features and counters", async () => {
  const host = await fx.startHost();
  const daemon = await fx.startDaemon(FLAGS, { log: "debug" });
  const { domid, rings } = await connectedGuest(host, "alice");
  expect(rings.mapped(rings.txRef)).toBe(true);
  rings.postTx([1, 2, 3]);
  expect((await rings.responses(3)).map((r) => r.id)).toEqual([1, 2, 3]);

  const health = await (await fetch(`${daemon.http.url}/health`)).json();
  expect(health).toMatchObject({ status: "ok", xenstore: "connected", workers: { configured: 2, running: 2 } });
  const mac = await host.xs.read(`/local/domain/0/backend/vif/${domid}/0/mac`);
  const vif = await until("counters published", async () => {
    const v = (await (await fetch(`${daemon.http.url}/vifs/vif${domid}.0`)).json()) as { counters: Record<string, number> | null; worker: unknown };
    // The null peer drops what the guest sends; either way the worker counted all three.
    return v.counters && v.counters.tx_packets + v.counters.tx_drops === 3 && v;
  });
  expect(vif).toMatchObject({
    name: `vif${domid}.0`,
    domid,
    devid: 0,
    backendState: { name: "Connected", number: 4 },
    frontendState: { name: "Connected", number: 4 },
    mac,
    // The null peer takes GSO frames, so SG and TCPv4 GSO are offered; the scripted frontend asks for SG.
    features: { "feature-rx-notify": true, "feature-sg": true, "multi-queue-num-queues": 1 },
  });
  expect(typeof vif!.worker).toBe("number");
});

test("a hostile frontend caught by a worker: error node, Closing, the other guest keeps its vif", async () => {
  const host = await fx.startHost();
  await fx.startDaemon(FLAGS, { log: "debug" });
  const bad = await connectedGuest(host, "mallory");
  const good = await connectedGuest(host, "alice");
  bad.rings.setReqProd(0x1300);
  await bad.f.waitBackend(S.Closing);
  const err = await host.xs.read(`/local/domain/0/error/backend/vif/${bad.domid}/0/error`);
  expect(err).toMatch(/^\d+ data path: /);
  await until("bad vif's rings unmapped", () => !bad.rings.mapped(bad.rings.txRef));
  expect(await good.f.backendState()).toBe(S.Connected);
  good.rings.postTx([7]);
  expect((await good.rings.responses(1))[0]!.id).toBe(7);
});

test("stop(): every vif Closed, rings unmapped, ports unbound, workers gone, HTTP closed", async () => {
  const host = await fx.startHost();
  const daemon = await fx.startDaemon(FLAGS, { log: "debug" });
  const a = await connectedGuest(host, "alice");
  const b = await connectedGuest(host, "bob");
  const url = daemon.http.url;
  await fx.stopDaemon();
  for (const g of [a, b]) {
    expect(await g.f.backendState()).toBe(S.Closed);
    expect(g.rings.mapped(g.rings.txRef)).toBe(false);
    expect(g.rings.mapped(g.rings.rxRef)).toBe(false);
    // Xen returns the guest's end to unbound when the backend's end closes.
    expect(g.rings.portState(g.rings.txPort)).toBe(ECS_UNBOUND);
  }
  expect(ringPagesMapped(simPaths(host.dir).shmDir, a.domid)).toBe(0);
  await until("worker threads gone", () => workerThreads().length === 0);
  expect(fetch(`${url}/health`)).rejects.toThrow();
});

test("stop() while xenstored is down still stops the data path and returns", async () => {
  const host = await fx.startHost();
  const daemon = await fx.startDaemon(FLAGS, { log: "debug" });
  const a = await connectedGuest(host, "alice");
  await host.stopXenstored();
  await until("daemon noticed", async () => (await (await fetch(`${daemon.http.url}/health`)).json() as { xenstore: string }).xenstore === "reconnecting");
  await fx.stopDaemon();
  expect(a.rings.mapped(a.rings.txRef)).toBe(false);
  expect(a.rings.portState(a.rings.txPort)).toBe(ECS_UNBOUND);
  await until("worker threads gone", () => workerThreads().length === 0);
  await host.startXenstored();
});

test("startup failures are one line naming the cure", async () => {
  const host = await fx.startHost();
  await host.stopXenstored();
  const e = (await fx.startDaemon(FLAGS, { log: "debug" }).catch((x) => x)) as Error;
  expect(e.message).toBe(`qnicd: cannot reach xenstored at ${simPaths(host.dir).xenstoredSocket}: ENOENT: start it with 'npm run sim -- up --dir ${host.dir}'`);
  // The workers were already starting (they load while xenstored is reached): none is left.
  await until("worker threads gone", () => workerThreads().length === 0);
  await host.startXenstored();
});

test("the workers start before xenstored is reached, and a start failing there closes them", async () => {
  const host = await fx.startHost();
  await host.stopXenstored();
  const pool = new FakePool();
  let started = 0;
  const e = (await fx.startDaemon(FLAGS, { log: "debug", deps: { createPool: async () => (started++, pool) } }).catch((x) => x)) as Error;
  expect(e.message).toStartWith("qnicd: cannot reach xenstored at ");
  expect(started).toBe(1);
  expect(pool.closed).toBe(true);
  await host.startXenstored();
});

test("a taken --http port fails the start with one line, before any vif is claimed", async () => {
  const host = await fx.startHost();
  const d = await host.ts.create("alice", { vifs: 1, noWait: true });
  const blocker = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  try {
    // The later --http wins over the fixture's 127.0.0.1:0.
    const e = (await fx.startDaemon([...FLAGS, "--http", `127.0.0.1:${blocker.port}`], { log: "debug" }).catch((x) => x)) as Error;
    expect(e.message).toMatch(new RegExp(`^qnicd: --http: cannot listen on 127\\.0\\.0\\.1:${blocker.port}: `));
    expect(e.message).not.toContain("\n");
  } finally {
    blocker.stop(true);
  }
  expect(await host.xs.read(`/local/domain/0/backend/vif/${d.domid}/0/state`)).toBe("1");
  await until("worker threads gone", () => workerThreads().length === 0);
});

test("a simulated host that was never started: one line saying how to start it", async () => {
  // No host, so not the fixture's daemon: this one must fail before it holds anything.
  const config = loadConfig({ argv: ["--platform", "sim", "--sim-dir", "/tmp/qnicd-no-such-host", "--http", "127.0.0.1:0", ...FLAGS], env: {}, defaultConfigFile: null });
  const e = (await startDaemon(config, { log: createLogger({ level: "debug", format: "text", write: () => {} }) }).catch((x) => x)) as Error;
  expect(e.message).toBe("qnicd: no simulated Xen host is running in /tmp/qnicd-no-such-host: start it with 'npm run sim -- up --dir /tmp/qnicd-no-such-host'");
  expect(e.message).not.toContain("\n");
});

test("with an injected pool the daemon hands it every vif and closes it on stop", async () => {
  const host = await fx.startHost();
  const pool = new FakePool();
  await fx.startDaemon(FLAGS, { log: "debug", deps: { createPool: async () => pool } });
  const d = await host.ts.create("alice", { vifs: 2 });
  const g = await host.guestClient(d.domid);
  for (const devid of [0, 1]) {
    const f = new ScriptedFrontend(g, d.domid, devid);
    await f.connect();
    await f.waitBackend(S.Connected);
  }
  expect(pool.liveNames().sort()).toEqual([`vif${d.domid}.0`, `vif${d.domid}.1`]);
  await fx.stopDaemon();
  expect(pool.closed).toBe(true);
  expect(pool.live.size).toBe(0);
});
