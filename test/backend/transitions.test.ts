// Every way a vif leaves Connected (or never gets there), driven by the frontend or the toolstack.
import { afterEach, expect, test } from "bun:test";
import { startBackend } from "../../src/backend/index.ts";
import { createLogger } from "../../src/log.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** B/state values as the frontend's client sees them over time (via a watch). */
async function recordStates(h: BackendHarness, B: string): Promise<number[]> {
  const seen: number[] = [];
  const xs = await h.host.client();
  await xs.watch(`${B}/state`, async () => {
    const v = await xs.tryRead(`${B}/state`);
    if (v !== undefined && Number(v) !== seen.at(-1)) seen.push(Number(v));
  });
  return seen;
}

async function connected(h: BackendHarness, name = "alice") {
  const { domid, fronts } = await h.guest(name);
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  return { domid, f };
}

test("frontend Closing -> backend disconnects and goes Closing; Closed -> Closed", async () => {
  h = await startBackendHarness();
  const { f } = await connected(h);
  await f.setState(S.Closing);
  await f.waitBackend(S.Closing);
  expect(h.pool.count("disconnect")).toBe(1);
  expect(h.pool.live.size).toBe(0);
  await f.setState(S.Closed);
  await f.waitBackend(S.Closed);
  expect(h.pool.count("disconnect")).toBe(1);
});

test("a frontend that jumps straight to Closed gets disconnect, Closing, Closed", async () => {
  h = await startBackendHarness();
  const { f } = await connected(h);
  const seen = await recordStates(h, f.B);
  await until("recorder primed", () => seen.length > 0);
  await f.setState(S.Closed);
  await f.waitBackend(S.Closed);
  expect(h.pool.count("disconnect")).toBe(1);
  expect(seen).toEqual([S.Connected, S.Closing, S.Closed]);
});

test("the frontend's state node removed (Unknown) is treated like Closed", async () => {
  h = await startBackendHarness();
  const { f } = await connected(h);
  await h.host.xs.rm(`${f.F}/state`);
  await f.waitBackend(S.Closed);
  expect(h.pool.live.size).toBe(0);
});

test("a frontend closing from InitWait (never connected) reaches Closed without a pool call", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.setState(S.Closed);
  await f.waitBackend(S.Closed);
  expect(h.pool.events).toEqual([]);
});

test("reconnect after Closed: frontend 5, 6, 1 brings the backend back to InitWait, then Connected again with a new key", async () => {
  h = await startBackendHarness();
  const { f, domid } = await connected(h);
  await f.setState(S.Closing);
  await f.waitBackend(S.Closing);
  await f.setState(S.Closed);
  await f.waitBackend(S.Closed);
  await f.setState(S.Initialising);
  await f.waitBackend(S.InitWait);
  await f.connect({ txRingRef: "100" });
  await f.waitBackend(S.Connected);
  expect(h.pool.events).toEqual([`connect vif${domid}.0#1`, `disconnect vif${domid}.0#1`, `connect vif${domid}.0#2`]);
  expect(h.pool.specs[1]!.txRingRef).toBe(100);
  // The host interface is kept across the reconnect, as Linux keeps vifN.M.
  expect(h.peers.names()).toEqual([`vif${domid}.0`]);
});

test("a frontend back at Initialising while Connected is disconnected and offered InitWait", async () => {
  h = await startBackendHarness();
  const { f } = await connected(h);
  await f.setState(S.Initialising);
  await f.waitBackend(S.InitWait);
  expect(h.pool.live.size).toBe(0);
});

test("toolstack detach (online=0 + state=5 in one transaction): disconnect, then B reaches Closed and the device is forgotten", async () => {
  h = await startBackendHarness();
  const { f, domid } = await connected(h);
  const seen = await recordStates(h, f.B);
  await until("recorder primed", () => seen.length > 0);
  await h.host.ts.networkDetach(String(domid), "0");
  // networkDetach only returns once libxl saw Closed and removed the nodes.
  expect(seen).toEqual([S.Connected, S.Closing, S.Closed]);
  expect(await h.host.xs.tryRead(f.B)).toBeUndefined();
  await until("device forgotten", () => h!.backend.devices().length === 0);
  expect(h.pool.live.size).toBe(0);
  expect(h.peers.names()).toEqual([]);
  expect(h.host.libxlLog.filter((l) => l.includes("error"))).toEqual([]);
});

test("xl destroy of a connected guest completes without libxl timing out", async () => {
  h = await startBackendHarness({ destroyTimeoutMs: 3000 });
  const { domid } = await connected(h);
  const t0 = Date.now();
  await h.host.ts.destroy(String(domid));
  expect(Date.now() - t0).toBeLessThan(2000);
  await until("device forgotten", () => h!.backend.devices().length === 0);
  expect(h.pool.live.size).toBe(0);
});

test("the toolstack writing B/state=5 alone: Closed, and a frontend still at Connected is not reconnected until it starts over", async () => {
  h = await startBackendHarness();
  const { f, domid } = await connected(h);
  await h.host.xs.write(`${f.B}/state`, "5");
  await f.waitBackend(S.Closed);
  expect(h.pool.live.size).toBe(0);
  await f.setState(S.Connected);
  await Bun.sleep(50);
  await h.backend.idle();
  expect(await f.backendState()).toBe(S.Closed);
  await f.setState(S.Initialising);
  await f.waitBackend(S.InitWait);
  await f.connect();
  await f.waitBackend(S.Connected);
  expect(h.pool.events).toEqual([`connect vif${domid}.0#1`, `disconnect vif${domid}.0#1`, `connect vif${domid}.0#2`]);
});

test("online=0 before the frontend connects: Closed, and no connect", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await h.host.xs.write(`${f.B}/online`, "0");
  await f.waitBackend(S.Closed);
  await f.writeRings();
  await f.setState(S.Connected);
  await Bun.sleep(50);
  await h.backend.idle();
  expect(await f.backendState()).toBe(S.Closed);
  expect(h.pool.events).toEqual([]);
});

test("a device that is not online yet is left alone until online=1", async () => {
  h = await startBackendHarness();
  const { fronts, domid } = await h.guest("alice", 1, { noWait: true });
  const f = fronts[0]!;
  // A backend that was not there when the toolstack wrote the nodes would see them like this.
  await h.backend.stop();
  await h.host.xs.write(`${f.B}/online`, "0");
  await h.host.xs.write(`${f.B}/state`, "1");
  const again = await startBackendAgain(h);
  await Bun.sleep(50);
  await again.idle();
  expect(await f.backendState()).toBe(S.Initialising);
  await h.host.xs.write(`${f.B}/online`, "1");
  await f.waitBackend(S.InitWait);
  expect(h.peers.names()).toContain(`vif${domid}.0`);
  await again.stop();
});

test("a backend restarted while a vif was Connected closes it (its rings died with the old one); the guest can start over", async () => {
  h = await startBackendHarness();
  const { f } = await connected(h);
  // Simulate a crash: the old backend stops serving without writing anything.
  const old = h.backend.devices()[0]!.dev;
  old.forgotten = true;
  const again = await startBackendAgain(h);
  await f.waitBackend(S.Closing);
  await f.setState(S.Closed);
  await f.waitBackend(S.Closed);
  await f.setState(S.Initialising);
  await f.waitBackend(S.InitWait);
  await f.connect();
  await f.waitBackend(S.Connected);
  await again.stop();
});

test("a backend restarted while a vif waited in InitWait carries on with the handshake", async () => {
  h = await startBackendHarness();
  const { fronts, domid } = await h.guest("alice");
  const f = fronts[0]!;
  await f.waitBackend(S.InitWait);
  h.backend.devices()[0]!.dev.forgotten = true;
  const again = await startBackendAgain(h);
  await again.idle();
  expect(await f.backendState()).toBe(S.InitWait);
  await f.connect();
  await f.waitBackend(S.Connected);
  expect(h.pool.events).toEqual([`connect vif${domid}.0#1`]);
  await again.stop();
});

test("the backend directory deleted mid-connect: B/state is not recreated, the vif is disconnected and forgotten", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  let open!: () => void;
  h.pool.gate = new Promise<void>((r) => (open = r));
  await f.connect();
  await until("connect in flight", () => h!.pool.count("connect") === 1);
  await h.host.xs.rm(f.B);
  open();
  await until("device forgotten", () => h!.backend.devices().length === 0);
  expect(await h.host.xs.tryRead(f.B)).toBeUndefined();
  expect(h.pool.live.size).toBe(0);
  expect(h.pool.count("disconnect")).toBe(1);
});

test("an invalid frontend state is fatal: 'saw state 9 at frontend'", async () => {
  h = await startBackendHarness();
  const { fronts, domid } = await h.guest("alice");
  await fronts[0]!.setState(9);
  await fronts[0]!.waitBackend(S.Closing);
  expect(await h.host.xs.read(`/local/domain/0/error/backend/vif/${domid}/0/error`)).toBe("22 saw state 9 at frontend");
});

async function startBackendAgain(h: BackendHarness) {
  const xs = await h.host.client();
  return startBackend({ xs, pool: h.pool, peers: h.peers, log: createLogger({ level: "error", format: "text", write: () => {} }), backendDomid: 0, type: "vif", vifnamePrefix: "vif" });
}
