import { afterEach, expect, test } from "bun:test";
import { createNetfront, type Netfront, type NetfrontEvent } from "../../../src/sim/netfront/netfront.ts";
import { NETBACK_FEATURES, startHost, TestBackend, until, type Host } from "./harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { log?: string[]; trace?: { op: string; tx: number; args: readonly string[] }[] } = {}) {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest();
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const events: NetfrontEvent[] = [];
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 300, probeWaitMs: 300, log: (l) => opts.log?.push(l), trace: (op, tx, args) => opts.trace?.push({ op, tx, args }) });
  nf.onEvent((e) => events.push(e));
  cleanups.push(() => nf.close());
  return { host, domid, be, nf, events };
}

test("writes every ring and feature key in one transaction, then goes straight from Initialising to Connected", async () => {
  const trace: { op: string; tx: number; args: readonly string[] }[] = [];
  const { host, be, nf } = await setup({ trace });
  const F = be.F;
  // Watch F as the backend would: record each state and each snapshot of the ring keys.
  const obs = await host.client();
  const stateSeen: string[] = [];
  const keySnapshots: string[][] = [];
  const ringKeys = ["tx-ring-ref", "rx-ring-ref", "event-channel-tx", "event-channel-rx", "request-rx-copy", "feature-rx-notify", "multi-queue-num-queues"];
  await obs.watch(F, async () => {
    // One DIRECTORY request: an atomic view of which keys exist at that moment.
    const names = await obs.directory(F);
    keySnapshots.push(ringKeys.filter((k) => names.includes(k)));
    const s = await obs.tryRead(`${F}/state`);
    if (s !== undefined && stateSeen.at(-1) !== s) stateSeen.push(s);
  });
  await be.offer();
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
  // The watcher's callback reads asynchronously: it may record Connected a moment after the read above.
  await until("the watcher saw Connected", () => stateSeen.at(-1) === "4");
  // Every snapshot has none of the ring keys or all of them: they were written in one transaction.
  for (const snap of keySnapshots) expect([0, ringKeys.length]).toContain(snap.length);
  // Never Initialised (3): the only state the driver writes is Connected.
  expect(stateSeen).not.toContain("3");
  expect(stateSeen.at(-1)).toBe("4");
  // The driver's own requests: the keys are written inside one transaction, state outside it after.
  const writes = trace.filter((t) => t.op === "WRITE").map((t) => ({ key: t.args[0]!.slice(F.length + 1), tx: t.tx }));
  const ringWrites = writes.filter((w) => w.key !== "state");
  expect(ringWrites.map((w) => w.key)).toEqual([
    "multi-queue-num-queues", "tx-ring-ref", "rx-ring-ref", "event-channel-tx", "event-channel-rx",
    "request-rx-copy", "feature-rx-notify", "feature-sg", "feature-gso-tcpv4", "feature-gso-tcpv6", "feature-ipv6-csum-offload",
  ]);
  expect(new Set(ringWrites.map((w) => w.tx)).size).toBe(1);
  expect(ringWrites[0]!.tx).not.toBe(0);
  const stateWrites = trace.filter((t) => t.op === "WRITE" && t.args[0] === `${F}/state`);
  expect(stateWrites.map((t) => [t.args[1], t.tx === ringWrites[0]!.tx])).toEqual([["4", false]]);
  const dump: Record<string, string> = {};
  for (const k of await host.xs.directory(F)) dump[k] = await host.xs.read(`${F}/${k}`);
  const info = nf.connection!;
  expect(dump).toEqual({
    backend: be.B,
    "backend-id": "0",
    state: "4",
    handle: "0",
    mac: "00:16:3e:12:34:56",
    trusted: "1",
    mtu: "1500",
    "multi-queue-num-queues": "1",
    "tx-ring-ref": String(info.txRingRef),
    "rx-ring-ref": String(info.rxRingRef),
    "event-channel-tx": String(info.txPort),
    "event-channel-rx": String(info.rxPort),
    "request-rx-copy": "1",
    "feature-rx-notify": "1",
    "feature-sg": "1",
    "feature-gso-tcpv4": "1",
    "feature-gso-tcpv6": "1",
    "feature-ipv6-csum-offload": "1",
  });
  expect(info.split).toBe(true);
  expect(info.txPort).not.toBe(info.rxPort);
});

test("uses one event channel and no multi-queue key when the backend offers neither", async () => {
  const { host, be, nf } = await setup();
  const { "feature-split-event-channels": _s, "multi-queue-max-queues": _m, ...plain } = NETBACK_FEATURES;
  await be.offer(plain);
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
  const keys = await host.xs.directory(be.F);
  expect(keys).toContain("event-channel");
  expect(keys).not.toContain("event-channel-tx");
  expect(keys).not.toContain("multi-queue-num-queues");
  expect(await host.xs.read(`${be.F}/event-channel`)).toBe(String(nf.connection!.txPort));
  expect(nf.connection!.split).toBe(false);
});

test("gives up with Linux's message and stays Initialising when the backend lacks feature-rx-copy", async () => {
  const log: string[] = [];
  const { host, be, events } = await setup({ log });
  const { "feature-rx-copy": _c, ...noCopy } = NETBACK_FEATURES;
  await be.offer(noCopy);
  await until("gave-up", () => events.find((e) => e.type === "gave-up"));
  await Bun.sleep(100);
  expect(log.join("\n")).toContain("backend does not support copying receive path");
  expect(await be.frontendState()).toBe(1);
  const keys = await host.xs.directory(be.F);
  expect(keys.filter((k) => k.includes("ring") || k.includes("event-channel"))).toEqual([]);
});

test("waits while the backend is still Initialising and connects when it reaches InitWait", async () => {
  const { be, nf } = await setup();
  await Bun.sleep(150);
  expect(await be.frontendState()).toBe(1);
  expect(nf.connection).toBeUndefined();
  await be.offer();
  await be.connect();
  const info = await nf.whenConnected(3000);
  expect(info.mac).toBe("00:16:3e:12:34:56");
});

test("answers a backend Closing with Closed, as xenbus_frontend_closed does, and keeps its rings", async () => {
  const { be, nf, events } = await setup();
  await be.offer();
  await be.connect();
  await nf.whenConnected();
  await be.setState(5);
  await until("frontend Closed", async () => (await be.frontendState()) === 6);
  expect(events.filter((e) => e.type === "state").map((e) => (e as { state: number }).state)).toEqual([4, 6]);
  expect(nf.connection).toBeDefined();
});

test("goes to Closed when it missed the backend's Closing and sees Closed", async () => {
  const { be, nf } = await setup();
  await be.offer();
  await be.connect();
  await nf.whenConnected();
  await be.setState(6);
  await until("frontend Closed", async () => (await be.frontendState()) === 6);
});

test("an unparsable F/mac is fatal like xenbus_dev_fatal: an error node, then Closing", async () => {
  const { host, domid, be, nf } = await setup();
  await host.xs.write(`${be.F}/mac`, "not-a-mac");
  await be.offer();
  await until("frontend Closing", async () => (await be.frontendState()) === 5);
  expect(await host.xs.read(`/local/domain/${domid}/error/device/vif/0/error`)).toBe("2 parsing device/vif/0/mac");
  expect(nf.connection).toBeUndefined();
  expect(await host.xs.tryRead(`${be.F}/tx-ring-ref`)).toBeUndefined();
});

test("a backend offering no queues at all is fatal ('creating queues'), as in Linux", async () => {
  const { host, domid, be } = await setup();
  await be.offer({ ...NETBACK_FEATURES, "multi-queue-max-queues": "0" });
  await until("frontend Closing", async () => (await be.frontendState()) === 5);
  expect(await host.xs.read(`/local/domain/${domid}/error/device/vif/0/error`)).toBe("22 creating queues");
});

test("a backend offering XDP headroom is told 0 (XDP off) before the ring keys", async () => {
  const trace: { op: string; tx: number; args: readonly string[] }[] = [];
  const { host, be } = await setup({ trace });
  await be.offer({ ...NETBACK_FEATURES, "feature-xdp-headroom": "1" });
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
  expect(await host.xs.read(`${be.F}/xdp-headroom`)).toBe("0");
  const writes = trace.filter((t) => t.op === "WRITE").map((t) => t.args[0]!.slice(be.F.length + 1));
  expect(writes.indexOf("xdp-headroom")).toBeLessThan(writes.indexOf("tx-ring-ref"));
});

test("the advertised rx features can be narrowed: only the chosen keys are written", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest();
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, advertise: { sg: false, gsoTcpv4: false, gsoTcpv6: false } });
  cleanups.push(() => nf.close());
  await be.offer();
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
  const keys = (await host.xs.directory(be.F)).filter((k) => k.startsWith("feature-"));
  expect(keys.sort()).toEqual(["feature-ipv6-csum-offload", "feature-rx-notify"]);
});
