// XSA-392: a frontend that never consumes (posts no rx buffers) must not make the backend hold
// unbounded memory: frames for it wait in a byte-bounded queue, the rest are dropped and counted,
// and after the stall time (Linux's rx_stall_timeout) its carrier goes off and the queue is purged
// until it posts again. A stall is judged by the head packet's needs: qnicd's rx packets are one
// slot each (no rx SG yet), so "fewer free slots than the head packet needs" is "no slot at all";
// once rx SG lands (issue 13) a head packet needing several slots must count as stalled while
// fewer are posted. Neighbours, flooded with the same broadcast traffic, lose nothing.
import { afterEach, expect, test } from "bun:test";
import { until } from "../backend/sim-host.ts";
import { frames } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const QUEUE = 64 * 1024;

for (const datapath of ["batched", "seed"] as const) {
  test(`XSA-392 (${datapath}): rx queue bounded in bytes, drops counted, carrier off after the stall and back when it posts; neighbours lose nothing`, async () => {
    rig = await startHostileRig({ datapath, rxStallMs: 2000, rxQueueBytes: QUEUE });
    const bad = rig.bad;
    // 600 broadcast frames of 60..1460 bytes (~450 KiB) from a: every one offered to bad too.
    let maxQueued = 0;
    for (let k = 0; k < 6; k++) {
      await rig.neighboursForward(100);
      maxQueued = Math.max(maxQueued, rig.stats(bad)!.rx_queue_bytes);
    }
    const s = rig.stats(bad)!;
    expect(maxQueued).toBeLessThanOrEqual(QUEUE);
    expect(s.rx_queue_bytes).toBeGreaterThan(QUEUE - 1500);
    expect(s.rx_packets).toBe(0);
    expect(s.rx_drops).toBeGreaterThan(300);
    // Nothing posted for the stall time: carrier off, the queue purged, everything counted.
    const off = await rig.statsUntil(bad, (s) => s.carrier === 0, 5000);
    expect([off.rx_queue_bytes, off.rx_drops, off.rx_packets]).toEqual([0, 600, 0]);
    await until("stall logged", () => rig!.logs.some((l) => l.includes(`${bad.vif}: guest rx stalled`)));
    await rig.neighboursForward(100);
    expect(rig.stats(bad)!.rx_drops).toBe(700); // carrier off: dropped at once, nothing queued
    // One buffer posted is enough for a one-slot head packet: carrier on, frames delivered again.
    bad.fe.postRx(1);
    await rig.statsUntil(bad, (s) => s.carrier === 1);
    bad.fe.postRx(31);
    const f = frames(rig.a.mac, 8, 99, () => 300);
    rig.a.fe.sendFrames(f, 50_000);
    await rig.a.fe.responses(8);
    expect((await bad.fe.received(8)).map((r) => r.frame)).toEqual(f);
    await until("b saw them too", () => rig!.receivedByB(rig!.a).length === 708);
    await rig.neighboursForward(100);
    expect(await rig.errorNode(bad)).toBeUndefined();
  });
}
