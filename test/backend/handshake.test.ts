// The vif handshake against the sim toolstack and a scripted Linux-like netfront.
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

let h: BackendHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

test("xl create succeeds against the running backend: InitWait within libxl's wait, features written, peer named vif<domid>.0", async () => {
  h = await startBackendHarness({ initTimeoutMs: 10_000 });
  const t0 = Date.now();
  const { domid, fronts } = await h.guest("alice");
  expect(Date.now() - t0).toBeLessThan(10_000);
  const f = fronts[0]!;
  expect(await f.backendState()).toBe(S.InitWait);
  const B = f.B;
  const nodes = await h.host.xs.directory(B);
  expect(nodes.filter((n) => n.startsWith("feature-")).sort()).toEqual(["feature-rx-copy", "feature-rx-flip", "feature-split-event-channels"]);
  expect(await h.host.xs.read(`${B}/feature-rx-copy`)).toBe("1");
  expect(await h.host.xs.read(`${B}/feature-rx-flip`)).toBe("0");
  expect(h.peers.names()).toEqual([`vif${domid}.0`]);
});

test("the features go in one transaction", async () => {
  h = await startBackendHarness();
  await h.guest("alice");
  const writes = h.requests.filter((r) => r.startsWith("WRITE") && r.includes("/feature-")).map((r) => r.split(" "));
  expect(writes.length).toBe(3);
  expect(writes[0]![1]).not.toBe("0");
  expect(writes[1]![1]).toBe(writes[0]![1]);
  expect(writes[2]![1]).toBe(writes[0]![1]);
});

test("a Linux-like frontend gets Connected, and the pool gets exactly what it wrote", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect({ txRingRef: "768", rxRingRef: "769", evtchn: "17" });
  await f.waitBackend(S.Connected);
  expect(h.pool.count("connect")).toBe(1);
  const spec = h.pool.specs[0]!;
  expect(spec).toMatchObject({
    name: `vif${domid}.0`,
    frontendDomid: domid,
    devid: 0,
    txRingRef: 768,
    rxRingRef: 769,
    txEvtchn: 17,
    rxEvtchn: 17,
    peer: { kind: "null", name: `vif${domid}.0`, fd: -1 },
  });
  expect(spec.mac).toBe((await h.host.xs.read(`${f.B}/mac`)).toLowerCase());
  // Only what both sides agreed: the frontend asked for sg and gso, which are not offered.
  expect(spec.features).toEqual({
    "feature-rx-notify": true,
    "feature-sg": false,
    "feature-gso-tcpv4": false,
    "feature-gso-tcpv6": false,
    "feature-ipv6-csum-offload": false,
    "feature-no-csum-offload": false,
  });
});

test("split event channels are read when the frontend writes them", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  await fronts[0]!.connect({ split: { tx: "11", rx: "12" } });
  await fronts[0]!.waitBackend(S.Connected);
  expect(h.pool.specs[0]).toMatchObject({ txEvtchn: 11, rxEvtchn: 12 });
});

test("Connected waits for the hotplug script's hotplug-status=connected", async () => {
  h = await startBackendHarness();
  // --no-wait: the toolstack does not run the (simulated) hotplug script, so hotplug-status stays "".
  const { fronts } = await h.guest("alice", 1, { noWait: true });
  const f = fronts[0]!;
  await f.connect();
  await until("pool connect", () => h!.pool.count("connect") === 1);
  await h.backend.idle();
  await Bun.sleep(50);
  expect(await f.backendState()).toBe(S.InitWait);
  await h.host.xs.write(`${f.B}/hotplug-status`, "connected");
  await f.waitBackend(S.Connected);
  expect(h.pool.count("connect")).toBe(1);
});

test("without a hotplug-status node there is no script to wait for", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice", 1, { noWait: true });
  const f = fronts[0]!;
  await h.host.xs.rm(`${f.B}/hotplug-status`);
  await f.connect();
  await f.waitBackend(S.Connected);
});

test("hotplug-status=error is fatal: error node with hotplug-error, Closing", async () => {
  h = await startBackendHarness();
  const { domid, fronts } = await h.guest("alice", 1, { noWait: true });
  const f = fronts[0]!;
  await f.waitBackend(S.InitWait);
  await h.host.xs.transaction(async (t) => {
    await t.write(`${f.B}/hotplug-error`, "bridge xenbr9 does not exist");
    await t.write(`${f.B}/hotplug-status`, "error");
  });
  await f.waitBackend(S.Closing);
  const err = await h.host.xs.read(`/local/domain/0/error/backend/vif/${domid}/0/error`);
  expect(err).toMatch(/^5 hotplug script failed: bridge xenbr9 does not exist$/);
  expect(h.pool.count("connect")).toBe(0);
});

test("a frontend that announces Initialised from InitWait is connected (QEMU legacy behaviour)", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.waitBackend(S.InitWait);
  await f.writeRings();
  await f.setState(S.Initialised);
  await f.waitBackend(S.Connected);
  expect(h.pool.count("connect")).toBe(1);
});

test("Initialised after Connected does nothing", async () => {
  h = await startBackendHarness();
  const { fronts } = await h.guest("alice");
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  await f.setState(S.Initialised);
  await Bun.sleep(50);
  await h.backend.idle();
  expect(await f.backendState()).toBe(S.Connected);
  expect(h.pool.events).toEqual([expect.stringMatching(/^connect /)]);
});

test("the qnic backend type is served the same way", async () => {
  h = await startBackendHarness({ type: "qnic" });
  const { fronts } = await h.guest("alice");
  expect(fronts[0]!.B).toContain("/backend/qnic/");
  await fronts[0]!.connect();
  await fronts[0]!.waitBackend(S.Connected);
});

/** alice's vif connected; the READ and DIRECTORY requests the backend sent for it, in order. */
async function connectedAlice() {
  const harness = (h = await startBackendHarness());
  const { fronts } = await harness.guest("alice");
  const f = fronts[0]!;
  await f.connect();
  await f.waitBackend(S.Connected);
  const asked = harness.requests.filter((r) => r.startsWith("READ 0 ") || r.startsWith("DIRECTORY 0 ")).map((r) => r.replace(" 0 ", " "));
  return { h: harness, f, asked };
}

test("connect lists the frontend's directory once and asks only for the keys it holds", async () => {
  const { h, f, asked } = await connectedAlice();
  expect(asked.filter((r) => r === `DIRECTORY ${f.F}`)).toHaveLength(1);
  // Written by this frontend: read. Not written (multi-queue-num-queues, event-channel-tx, feature-no-csum-offload): not asked for.
  for (const key of ["tx-ring-ref", "rx-ring-ref", "event-channel", "request-rx-copy", "feature-sg"]) expect(asked).toContain(`READ ${f.F}/${key}`);
  for (const key of ["multi-queue-num-queues", "event-channel-tx", "feature-no-csum-offload"]) expect(asked).not.toContain(`READ ${f.F}/${key}`);
  expect(h.pool.specs[0]).toMatchObject({ txRingRef: 8, rxRingRef: 9, txEvtchn: 5, rxEvtchn: 5 });
});

test("connect asks for every key it needs of the frontend's listing at once, not one round trip after the other", async () => {
  const { h, f, asked } = await connectedAlice();
  // readFrontendConfig reads B/mac between request-rx-copy and the feature-* keys: sent one after
  // the other, the features would follow it; asked for together, they all precede it.
  const beMac = asked.indexOf(`READ ${f.B}/mac`);
  expect(beMac).toBeGreaterThan(0);
  const features = asked.flatMap((r, i) => (r.startsWith(`READ ${f.F}/feature-`) ? [i] : []));
  expect(features.length).toBeGreaterThanOrEqual(3);
  expect(Math.max(...features)).toBeLessThan(beMac);
  expect(h.pool.specs[0]).toMatchObject({ txRingRef: 8, rxRingRef: 9, txEvtchn: 5, rxEvtchn: 5 });
});
