// A hostile or broken frontend disables its own vif only: error node "<errno> <message>" under the
// backend domain's error/ tree, that vif Closing, every other vif still Connected.
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import type { RingNodes } from "./scripted-frontend.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const errorNode = (domid: number, devid: number) => `/local/domain/0/error/backend/vif/${domid}/${devid}/error`;

test.each<[string, RingNodes, RegExp]>([
  ["a non-numeric ring ref", { txRingRef: "eight" }, /^22 reading tx-ring-ref: "eight" is not a grant reference$/],
  ["a missing event channel", { evtchn: undefined, extra: { "event-channel": null } }, /^2 reading event-channel: the frontend did not write it$/],
  ["request-rx-copy=0", { requestRxCopy: "0" }, /^95 frontend doesn't support rx-copy/],
  ["more than one queue", { extra: { "multi-queue-num-queues": "4" } }, /^22 guest requested 4 queues, exceeding the maximum of 1/],
])("%s: error node, Closing, the other vif unaffected", async (_what, nodes, expected) => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice", 2);
  const [bad, good] = fronts as [NonNullable<(typeof fronts)[0]>, NonNullable<(typeof fronts)[0]>];
  await good.connect();
  await good.waitBackend(S.Connected);
  await bad.connect(nodes);
  await bad.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, bad.devid))).toMatch(expected);
  // Nothing reached the pool for the bad vif; the good one is untouched.
  expect(h.pool.events).toEqual([`connect vif${domid}.${good.devid}#1`]);
  expect(await good.backendState()).toBe(S.Connected);
  expect(await h.host.xs.tryRead(errorNode(domid, good.devid))).toBeUndefined();
  // One log line saying what failed, on which vif, and what to do.
  const line = h.logs.find((l) => l.includes(" error ") && l.includes(`vif${domid}.${bad.devid}:`));
  expect(line).toMatch(/closed this vif \(other vifs carry on\): .+/);
});

test("a frontend that stays Connected after a fatal error is not reconnected on each of its writes", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect({ requestRxCopy: "0" });
  await f.waitBackend(S.Closing);
  for (let i = 0; i < 20; i++) await f.setState(S.Connected);
  await Bun.sleep(50);
  await h.backend.idle();
  expect(await f.backendState()).toBe(S.Closing);
  expect(h.pool.events).toEqual([]);
  // Once it closes properly it may try again.
  await f.setState(S.Closed);
  await f.waitBackend(S.Closed);
  await f.setState(S.Initialising);
  await f.waitBackend(S.InitWait);
  await f.connect();
  await f.waitBackend(S.Connected);
});

test("a pool connect failure is fatal for that vif only", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice", 2);
  await fronts[1]!.connect();
  await fronts[1]!.waitBackend(S.Connected);
  h.pool.failNext = new Error(`vif${domid}.0: failed to map tx-ring-ref 8: bad_gntref`);
  await fronts[0]!.connect();
  await fronts[0]!.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, 0))).toBe(`5 mapping rings and binding event channels: vif${domid}.0: failed to map tx-ring-ref 8: bad_gntref`);
  expect(await fronts[1]!.backendState()).toBe(S.Connected);
});

test("a worker that never answers a connect costs that vif only: ETIMEDOUT, Closing, and shutdown is not wedged", async () => {
  h = await startBackendHarness({ connectTimeoutMs: 200 });
  const { domid, fronts } = await h.guest("alice", 2);
  await fronts[1]!.connect();
  await fronts[1]!.waitBackend(S.Connected);
  h.pool.gate = new Promise<void>(() => {}); // never settles
  await fronts[0]!.connect();
  await fronts[0]!.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, 0))).toBe("110 mapping rings and binding event channels: no worker answered within 200 ms");
  expect(await fronts[1]!.backendState()).toBe(S.Connected);
  // The frontend can still close it, and the backend still stops.
  await fronts[0]!.setState(S.Closed);
  await fronts[0]!.waitBackend(S.Closed);
  await h.close();
});

test("a worker that never confirms a disconnect does not hold the vif's close or the shutdown", async () => {
  h = await startBackendHarness({ connectTimeoutMs: 200 });
  const { fronts } = await h.guest("alice");
  await fronts[0]!.connect();
  await fronts[0]!.waitBackend(S.Connected);
  h.pool.disconnectGate = new Promise<void>(() => {});
  await fronts[0]!.setState(S.Closing);
  await fronts[0]!.waitBackend(S.Closing);
  expect(h.logs.some((l) => l.includes("no worker confirmed the disconnect within 200 ms"))).toBe(true);
  await h.close();
});

test("a pool fault: error node with the worker's errno, the vif disconnected and Closing, the other vif unaffected", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice", 2);
  for (const f of fronts) {
    await f.connect();
    await f.waitBackend(S.Connected);
  }
  const key = h.pool.specs.find((s) => s.devid === 0)!.key;
  h.pool.fault(key, 71, "tx req_prod 0x1300 is more than a ring ahead of 0x200");
  await fronts[0]!.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, 0))).toBe("71 data path: tx req_prod 0x1300 is more than a ring ahead of 0x200");
  expect(h.pool.count("disconnect", `vif${domid}.0`)).toBe(1);
  expect(await fronts[1]!.backendState()).toBe(S.Connected);
  expect(h.pool.liveNames()).toEqual([`vif${domid}.1`]);
});

test("a fault for a connection that is already gone changes nothing", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  await fronts[0]!.connect();
  await fronts[0]!.waitBackend(S.Connected);
  h.pool.fault("vif99.0#7", 71, "stale");
  await Bun.sleep(30);
  await h.backend.idle();
  expect(await fronts[0]!.backendState()).toBe(S.Connected);
});

test("a guest writing its state node in a tight loop costs bounded work and the last value wins", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  const before = h.requests.filter((r) => r.startsWith("READ") && r.endsWith(`${f.F}/state`)).length;
  // 2000 writes pipelined on the guest's connection, alternating Initialised and Connected (neither
  // should change anything), then Closing.
  const N = 2000;
  await Promise.all(Array.from({ length: N }, (_, i) => f.setState(i % 2 ? S.Connected : S.Initialised)));
  await f.setState(S.Closing);
  await f.waitBackend(S.Closing);
  await h.backend.idle();
  const evaluations = h.requests.filter((r) => r.startsWith("READ") && r.endsWith(`${f.F}/state`)).length - before;
  expect(evaluations).toBeGreaterThan(0);
  // Without coalescing this would be one evaluation per watch event (about N).
  expect(evaluations).toBeLessThan(50);
  expect(h.pool.events.length).toBe(2); // one connect, one disconnect
  const dev = h.backend.devices()[0]!.dev;
  expect(dev.running).toBeNull();
  expect(dev.dirty).toBe(false);
});
