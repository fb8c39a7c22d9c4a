// Multi-queue as Linux netback negotiates it: multi-queue-max-queues offered at probe, each queue's
// rings and ports read from F/queue-<n>/ at connect, each queue handed to the pool on its own, and
// the vif standing or falling as a whole.
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { PeerError, PlaceholderProvisioner } from "../../src/net/peer-provisioner.ts";
import type { PeerHandle } from "../../src/net/peer.ts";
import type { SteeringConfig } from "../../src/net/steering-program.ts";
import type { HashConfig } from "../../src/pool/types.ts";
import { queueNodes } from "./scripted-frontend.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const errorNode = (domid: number, devid: number) => `/local/domain/0/error/backend/vif/${domid}/${devid}/error`;

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
  await f.connect({ extra: queueNodes(3) });
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

/** Placeholder peers that record what the backend asks of a host side that picks queues itself (a TAP). */
class SteeringPeers extends PlaceholderProvisioner {
  readonly steered: { peer: string; config: SteeringConfig | null }[] = [];
  failWith: string | null = null;
  steer(peer: PeerHandle, config: SteeringConfig | null): void {
    if (this.failWith) throw new PeerError(this.failWith, 1);
    this.steered.push({ peer: peer.name, config: config && { ...config, key: Array.from(config.key), mapping: Array.from(config.mapping) } });
  }
}

const TOEPLITZ: HashConfig = { alg: 1, flags: 0xf, key: Array.from({ length: 40 }, (_, i) => i), size: 4, mapping: [1, 0, 1, 1] };

/** alice's vif connected with two queues, its host side recording each steering it is given. */
async function twoQueueAlice() {
  const peers = new SteeringPeers("null");
  const harness = (h = await startBackendHarness({ maxQueues: 4, peers }));
  const { domid, fronts } = await harness.guest("alice");
  await fronts[0]!.connect({ extra: queueNodes(2) });
  await fronts[0]!.waitBackend(S.Connected);
  return { h: harness, peers, domid, front: fronts[0]! };
}

test("a multi-queue vif's host side is cleared at connect, then steered by each hash configuration queue 0's worker reports; the other queues get it too", async () => {
  const { h, peers, domid } = await twoQueueAlice();
  expect(peers.steered).toEqual([{ peer: `vif${domid}.0`, config: null }]);
  const keys = [...h.pool.specs].sort((a, b) => (a.queue ?? 0) - (b.queue ?? 0)).map((s) => s.key);
  h.pool.hash(keys[0]!, TOEPLITZ);
  await until("steered", () => peers.steered.length === 2);
  expect(peers.steered[1]).toEqual({ peer: `vif${domid}.0`, config: { queues: 2, flags: 0xf, key: TOEPLITZ.key, size: 4, mapping: [1, 0, 1, 1] } });
  expect(h.pool.updates.filter((u) => u.key === keys[1]).map((u) => u.settings.hash)).toEqual([TOEPLITZ]);
  // Algorithm NONE: back to the host's own choice. A report from queue 1 (it has no control ring) changes nothing.
  h.pool.hash(keys[0]!, { ...TOEPLITZ, alg: 0 });
  h.pool.hash(keys[1]!, TOEPLITZ);
  await until("cleared", () => peers.steered.length === 3);
  await Bun.sleep(20);
  expect(peers.steered.slice(2)).toEqual([{ peer: `vif${domid}.0`, config: null }]);
});

test("a host side that cannot steer (bpf refused) costs one warning naming the vif; the vif stays connected", async () => {
  const { h, peers, domid, front } = await twoQueueAlice();
  peers.failWith = "steering TAP vifX's guest-rx queues by the frontend's hash: loading its eBPF program: EPERM";
  const key = [...h.pool.specs].find((s) => s.queue === 0)!.key;
  h.pool.hash(key, TOEPLITZ);
  h.pool.hash(key, { ...TOEPLITZ, size: 2 });
  await Bun.sleep(50);
  h.pool.hash(key, { ...TOEPLITZ, size: 3 });
  await Bun.sleep(50);
  const warnings = h.logs.filter((l) => l.includes("eBPF"));
  expect(warnings.length).toBe(1);
  expect(warnings[0]).toContain(`vif${domid}.0: steering TAP`);
  expect(warnings[0]).toContain("its guest-rx queues stay on the kernel's flow hash");
  expect(await h.host.xs.read(`${front.B}/state`)).toBe(String(S.Connected));
});
