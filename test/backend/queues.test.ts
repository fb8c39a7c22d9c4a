// Multi-queue as Linux netback negotiates it: multi-queue-max-queues offered at probe, each queue's
// rings and ports read from F/queue-<n>/ at connect, each queue handed to the pool on its own, and
// the vif standing or falling as a whole.
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const errorNode = (domid: number, devid: number) => `/local/domain/0/error/backend/vif/${domid}/${devid}/error`;

/** Linux netfront's keys for `n` queues with split event channels (write_queue_xenstore_keys). */
function queueNodes(n: number): Record<string, string> {
  const extra: Record<string, string> = { "multi-queue-num-queues": String(n) };
  for (let q = 0; q < n; q++) {
    extra[`queue-${q}/tx-ring-ref`] = String(200 + 2 * q);
    extra[`queue-${q}/rx-ring-ref`] = String(201 + 2 * q);
    extra[`queue-${q}/event-channel-tx`] = String(30 + 2 * q);
    extra[`queue-${q}/event-channel-rx`] = String(31 + 2 * q);
  }
  return extra;
}

test("multi-queue-max-queues and feature-split-event-channels are offered at probe", async () => {
  h = await startBackendHarness({ maxQueues: 4 });
  const { fronts } = await h.guest("alice");
  await fronts[0]!.waitBackend(S.InitWait);
  expect(await h.host.xs.read(`${fronts[0]!.B}/multi-queue-max-queues`)).toBe("4");
  expect(await h.host.xs.read(`${fronts[0]!.B}/feature-split-event-channels`)).toBe("1");
});

test("three queues: each is handed to the pool with its own rings, ports, host side and name", async () => {
  h = await startBackendHarness({ maxQueues: 4 });
  const { domid, fronts } = await h.guest("alice");
  const f = fronts[0]!;
  // The top-level keys a single-queue frontend would use are absent, as Linux netfront leaves them.
  await f.connect({ extra: { ...queueNodes(3), "tx-ring-ref": null, "rx-ring-ref": null, "event-channel": null } });
  await f.waitBackend(S.Connected);
  expect(h.pool.count("connect")).toBe(3);
  const specs = [...h.pool.specs].sort((a, b) => (a.queue ?? 0) - (b.queue ?? 0));
  expect(specs.map((s) => [s.queue, s.name, s.txRingRef, s.rxRingRef, s.txEvtchn, s.rxEvtchn, s.peer.name])).toEqual([
    [0, `vif${domid}.0-q0`, 200, 201, 30, 31, `vif${domid}.0`],
    [1, `vif${domid}.0-q1`, 202, 203, 32, 33, `vif${domid}.0:q1`],
    [2, `vif${domid}.0-q2`, 204, 205, 34, 35, `vif${domid}.0:q2`],
  ]);
  expect(new Set(specs.map((s) => s.key)).size).toBe(3);
  const vif = h.backend.devices().find((d) => d.dev.domid === domid)!.vif!;
  expect(vif.queues.length).toBe(3);
  expect(vif.config!.splitEventChannels).toBe(true);
});

test("a fault on one queue closes the whole vif and gives every queue back", async () => {
  h = await startBackendHarness({ maxQueues: 4 });
  const { domid, fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect({ extra: queueNodes(2) });
  await f.waitBackend(S.Connected);
  const keys = h.pool.specs.map((s) => s.key);
  h.pool.fault(keys[1]!, 71, "tx req_prod 0x1300 is more than a ring ahead of 0x200");
  await f.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, 0))).toMatch(/^71 data path: tx req_prod 0x1300/);
  await until("both queues given back", () => keys.every((k) => h!.pool.events.includes(`disconnect ${k}`)), 5000);
});

test("a queue whose connect fails gives back the queues that did connect", async () => {
  h = await startBackendHarness({ maxQueues: 4 });
  const { domid, fronts } = await h.guest("alice");
  h.pool.failNext = Object.assign(new Error(`vif${domid}.0-q0: failed to map tx-ring-ref 200: bad_gntref`), { errno: 22 });
  await fronts[0]!.connect({ extra: queueNodes(2) });
  await fronts[0]!.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, 0))).toMatch(/failed to map tx-ring-ref 200: bad_gntref/);
  await until("the connected queue given back", () => h!.pool.live.size === 0, 5000);
});

test.each([
  ["more queues than offered", { "multi-queue-num-queues": "5" }, /^22 guest requested 5 queues, exceeding the maximum of 4/],
  ["zero queues", { "multi-queue-num-queues": "0" }, /^22 guest requested 0 queues/],
  ["a non-decimal count", { "multi-queue-num-queues": "2q" }, /^22 reading multi-queue-num-queues: "2q" is not a queue count/],
  ["an incomplete queue directory", { "queue-1/rx-ring-ref": null }, /^2 reading queue-1\/rx-ring-ref: the frontend did not write it/],
] as const)("%s: error node and Closing, nothing mapped", async (_, edit, expected) => {
  h = await startBackendHarness({ maxQueues: 4 });
  const { domid, fronts } = await h.guest("alice");
  await fronts[0]!.connect({ extra: { ...queueNodes(2), ...edit } });
  await fronts[0]!.waitBackend(S.Closing);
  expect(await h.host.xs.read(errorNode(domid, 0))).toMatch(expected);
  expect(h.pool.count("connect")).toBe(0);
});
