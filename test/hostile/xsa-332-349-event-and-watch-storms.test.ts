// XSA-332 / XSA-349: a guest can raise events and fire xenstore watches as fast as it likes. The
// backend must coalesce them (events drained and unmasked per wake-up, watch events folded into one
// re-evaluation) so that neither storm starves the other vifs or grows the daemon's queues; a storm
// of notifications with nothing on the rings produces no responses and no events back.
import { afterEach, expect, test } from "bun:test";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** Runs `storm` in slices, yielding between them, until `work` settles and at least `min` slices ran; returns how many ran. */
async function during(work: Promise<void>, min: number, storm: () => void | Promise<void>): Promise<number> {
  let done = false;
  const w = work.finally(() => {
    done = true;
  });
  let slices = 0;
  while (!done || slices < min) {
    await storm();
    slices++;
    await Bun.sleep(0);
  }
  await w;
  return slices;
}

test("XSA-332: an event storm (notify in a tight loop, empty rings) costs the neighbours nothing and gets no event back", async () => {
  rig = await startHostileRig();
  const bad = rig.bad;
  await rig.neighboursForward(50);
  const before = rig.stats(bad)!;
  let notifies = 0;
  const slices = await during(rig.neighboursForward(400), 25, () => {
    for (let i = 0; i < 2000; i++) bad.fe.guest.evtchn.notify(bad.fe.txPort);
    notifies += 2000;
  });
  expect(slices).toBeGreaterThanOrEqual(25);
  expect(notifies).toBeGreaterThanOrEqual(50_000);
  const after = rig.stats(bad)!;
  // Coalesced: far fewer wake-ups than notifications, and nothing sent back for nothing done.
  expect(after.events_received - before.events_received).toBeLessThan(notifies);
  expect(after.notifies_sent - before.notifies_sent).toBe(0);
  expect([after.tx_packets, after.tx_errors]).toEqual([0, 0]);
  expect(await bad.f.backendState()).toBe(S.Connected);
  // And its own ring still works afterwards.
  bad.fe.postRawTx([{ id: 1, size: 60 }]);
  expect(await bad.fe.responses(1)).toEqual([{ id: 1, status: 0 }]);
});

test("XSA-349: a watch storm (the guest rewriting its frontend nodes in a tight loop) costs the neighbours nothing; the daemon stays responsive", async () => {
  rig = await startHostileRig();
  const bad = rig.bad;
  const xs = bad.f.xs;
  await rig.neighboursForward(50);
  let writes = 0;
  const slices = await during(rig.neighboursForward(400), 10, async () => {
    // Pipelined on the guest's own connection: its state (unchanged), its ring nodes (unchanged
    // values) and nodes nobody reads.
    const ops: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      ops.push(xs.write(`${bad.f.F}/state`, String(S.Connected)));
      ops.push(xs.write(`${bad.f.F}/tx-ring-ref`, String(bad.fe.txRef)));
      ops.push(xs.write(`${bad.f.F}/junk-${writes % 64}`, "x".repeat(writes % 100)));
      writes += 3;
    }
    await Promise.all(ops);
  });
  expect(slices).toBeGreaterThanOrEqual(10);
  expect(writes).toBeGreaterThanOrEqual(1500);
  // The daemon answers at once and the storming vif is still served.
  const t0 = Date.now();
  const res = await fetch(`${rig.daemon.http.url}/vifs`);
  expect(res.status).toBe(200);
  expect(Date.now() - t0).toBeLessThan(2000);
  expect(await bad.f.backendState()).toBe(S.Connected);
  bad.fe.postRawTx([{ id: 1, size: 60 }]);
  expect(await bad.fe.responses(1)).toEqual([{ id: 1, status: 0 }]);
  await rig.neighboursForward(100);
});
