// xenstored going away and coming back (the sim persists its tree, as live update does): the
// backend tears nothing down, re-reads every device and finishes what it was doing.
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

test("xenstored restarted mid-handshake: the handshake completes without teardown", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.waitBackend(S.InitWait);
  await h.host.stopXenstored();
  await Bun.sleep(150);
  await h.host.startXenstored();
  // The guest's client reconnects by itself; its next writes land in the restored tree.
  await f.connect();
  await f.waitBackend(S.Connected);
  expect(h.pool.events).toEqual([`connect vif${domid}.0#1`]);
  expect(h.peers.names()).toEqual([`vif${domid}.0`]);
});

test("frontend changes made while the backend was cut off are picked up after the reconnect", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.waitBackend(S.InitWait);
  await h.host.stopXenstored();
  await h.host.startXenstored();
  // Written by a client that connects after the restart, possibly before the backend's
  // watches are back: the backend must re-read rather than rely on a watch event.
  const g = await h.host.guestClient(domid);
  await g.transaction(async (t) => {
    for (const [k, v] of [["tx-ring-ref", "8"], ["rx-ring-ref", "9"], ["event-channel", "5"], ["request-rx-copy", "1"]]) await t.write(`${f.F}/${k}`, v!);
  });
  await g.write(`${f.F}/state`, "4");
  await f.waitBackend(S.Connected);
  expect(h.pool.count("connect")).toBe(1);
  expect(h.pool.count("disconnect")).toBe(0);
});

test("a connected vif stays connected across a xenstored restart", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  await h.host.restartXenstored(100);
  await until("backend client reconnected", () => h!.bxs.connected);
  await Bun.sleep(100);
  await h.backend.idle();
  expect(await f.backendState()).toBe(S.Connected);
  expect(h.pool.events.length).toBe(1);
  // And it still follows the frontend afterwards.
  await f.setState(S.Closing);
  await f.waitBackend(S.Closing);
});

test("xenstored gone while a connect is in flight: the Connected write lands after the reconnect, nothing is torn down", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  let open!: () => void;
  h.pool.gate = new Promise<void>((r) => (open = r));
  await f.connect();
  await until("connect in flight", () => h!.pool.count("connect") === 1);
  await h.host.stopXenstored();
  open();
  await Bun.sleep(100);
  await h.host.startXenstored();
  await f.waitBackend(S.Connected);
  expect(h.pool.events.length).toBe(1);
  expect(h.pool.live.size).toBe(1);
});

test("a pool fault while xenstored is away: the error node and Closing are written once it is back", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  await h.host.stopXenstored();
  h.pool.fault(h.pool.specs[0]!.key, 71, "tx ring overflow");
  await Bun.sleep(100);
  await h.host.startXenstored();
  await f.waitBackend(S.Closing);
  expect(await h.host.xs.read(`/local/domain/0/error/backend/vif/${domid}/0/error`)).toBe("71 data path: tx ring overflow");
  expect(h.pool.live.size).toBe(0);
});

test("stop() while xenstored is away does not wait for a run parked on a read; the data path is still stopped", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  await h.host.stopXenstored();
  await until("backend client noticed", () => !h!.bxs.connected);
  // A fault makes the device run, which parks on its first read until xenstored is back.
  h.pool.fault(h.pool.specs[0]!.key, 71, "tx ring overflow");
  await Bun.sleep(20);
  expect(h.backend.devices()[0]!.dev.running).not.toBeNull();
  const t0 = Date.now();
  await h.backend.stop();
  expect(Date.now() - t0).toBeLessThan(1000);
  expect(h.pool.live.size).toBe(0);
  await h.host.startXenstored();
});
