import { afterEach, expect, test } from "bun:test";
import { openGuestDomain } from "../../../src/sim/hypervisor/index.ts";
import { createNetfront, type NetfrontEvent } from "../../../src/sim/netfront/netfront.ts";
import { playNetback, startHost, TestBackend, until } from "./harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const player = await playNetback(be);
  cleanups.push(() => player.stop());
  return { host, domid, be, player };
}

const frame = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i + seed) & 0xff);

test("reset walks Closing, Closed, Initialising with the backend, then connects again with fresh rings and ports", async () => {
  const { host, domid, be, player } = await setup();
  const events: NetfrontEvent[] = [];
  const log: string[] = [];
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 2000, log: (l) => log.push(l) });
  cleanups.push(() => nf.close());
  nf.onEvent((e) => events.push(e));
  const first = await nf.whenConnected();
  const backendStates: number[] = [];
  await host.xs.watch(`${be.B}/state`, async () => backendStates.push(Number(await host.xs.tryRead(`${be.B}/state`))));

  const again = new Promise<NetfrontEvent>((r) => nf.onEvent((e) => e.type === "connected" && r(e)));
  await nf.reset();
  const second = ((await again) as { info: typeof first }).info;
  expect(player.seen).toEqual([1, 4, 5, 6, 1, 4]);
  expect(events.filter((e) => e.type === "state").map((e) => (e as { state: number }).state)).toEqual([4, 5, 6, 1, 4]);
  expect(backendStates).toEqual(expect.arrayContaining([5, 6, 2, 4]));
  expect(log.join("\n")).not.toContain("timed out");
  expect(second.txRingRef).not.toBe(first.txRingRef);
  expect(second.rxRingRef).not.toBe(first.rxRingRef);
  expect(await host.xs.read(`${be.F}/tx-ring-ref`)).toBe(String(second.txRingRef));
  // The old ring grants were ended once the backend had unmapped them; nothing leaked.
  const guest = openGuestDomain(host.dir, domid);
  expect(guest.grantEntry(first.txRingRef).flags).toBe(0);
  expect(guest.grantEntry(first.rxRingRef).flags).toBe(0);
  guest.close();
  expect(nf.counters.leakedGrants).toBe(0);
  // The new connection carries data both ways.
  const rx: Uint8Array[] = [];
  nf.onReceive((f) => rx.push(f));
  nf.send(frame(60, 1));
  await until("tx after reset", () => be.drainTx().length === 1);
  await until("rx ring posted", () => be.rxAvailable() > 0);
  be.postRx(frame(70, 2));
  await until("rx after reset", () => rx.length === 1);
  expect(rx[0]).toEqual(frame(70, 2));
  expect(nf.counters).toMatchObject({ resets: 1, connects: 2 });
});

test("a reset whose backend never answers times out each step, as Linux does, and still walks to Initialising", async () => {
  const { host, domid, be, player } = await setup();
  const log: string[] = [];
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 100, probeWaitMs: 100, log: (l) => log.push(l) });
  cleanups.push(() => nf.close());
  await nf.whenConnected();
  await player.stop();
  const t0 = Date.now();
  await nf.reset();
  expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
  expect(log.filter((l) => l.includes(`backend ${be.B} timed out`)).length).toBe(3);
  expect(await be.frontendState()).toBe(1);
});

test("a guest that finds its vif left Connected by a previous kernel walks the reset first, then connects", async () => {
  const { host, domid, be, player } = await setup();
  const old = await createNetfront({ dir: host.dir, domid, devid: 0 });
  await old.whenConnected();
  const oldRef = old.connection!.txRingRef;
  await old.close(); // like a crash: xenstore still says Connected
  expect(await be.frontendState()).toBe(4);
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 2000 });
  cleanups.push(() => nf.close());
  const info = await nf.whenConnected();
  expect(player.seen).toEqual([1, 4, 5, 6, 1, 4]);
  expect(info.txRingRef).not.toBe(oldRef);
});

test("when the toolstack detaches the vif, it closes with the backend and reports the device removed", async () => {
  const { host, domid, player } = await setup();
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 500 });
  cleanups.push(() => nf.close());
  await nf.whenConnected();
  const removed = new Promise<void>((r) => nf.onEvent((e) => e.type === "removed" && r()));
  await host.ts.networkDetach("g", "0");
  await removed;
  // libxl wrote B=5; netfront answered Closed (xenbus_frontend_closed); the backend went Closed.
  expect(player.seen).toEqual([1, 4, 6]);
  expect(nf.connection).toBeUndefined();
  expect(nf.counters.leakedGrants).toBe(0);
});
