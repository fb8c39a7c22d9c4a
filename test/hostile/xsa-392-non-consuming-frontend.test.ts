// XSA-392: a frontend that never consumes (posts no rx buffers) must not make the backend hold
// unbounded memory: frames for it wait in a byte-bounded queue, the rest are dropped and counted,
// and after the stall time (Linux's rx_stall_timeout) its carrier goes off and the queue is purged
// until it posts again. A stall is judged by the head packet's needs, as netback's
// xenvif_rx_queue_stalled does: a frontend that negotiated rx GSO and keeps one buffer posted while
// the head is a 64 KiB GSO packet needing 17 is stalled, and its carrier comes back only once it
// posts enough. Neighbours, flooded with the same broadcast traffic, lose nothing.
import { afterEach, expect, test } from "bun:test";
import { until } from "../backend/sim-host.ts";
import { createNetfront, parseMac } from "../../src/sim/netfront/index.ts";
import { XEN_NETIF_GSO_TYPE_TCPV4 } from "../../src/xen/netif.ts";
import { streamBytes, tcpFrame } from "../net/tcp-frames.ts";
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

test("XSA-392 (batched, rx GSO): one buffer posted while the head packet needs 17 is a stall; the carrier comes back once 17 are posted", async () => {
  rig = await startHostileRig({ rxStallMs: 1500 });
  const bad = rig.bad; // negotiated feature-sg and feature-gso-tcpv4 (as Linux netfront does)
  const d = await rig.host.ts.create("carl", { vifs: 1 });
  const carl = await createNetfront({ dir: rig.host.dir, domid: d.domid, devid: 0, resetWaitMs: 2000, probeWaitMs: 2000 });
  try {
    const info = await carl.whenConnected(5000);
    const big = () => tcpFrame({ srcMac: parseMac(info.mac)!, dstMac: bad.mac, srcIp: [10, 3, 0, 1], dstIp: [10, 3, 0, 2], srcPort: 1, dstPort: 2, seq: 0, payload: streamBytes(65535 - 54, 5) });
    bad.fe.postRx(1);
    expect(carl.send(big(), { gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
    const queued = await rig.statsUntil(bad, (s) => s.rx_queue_bytes >= 65535);
    expect([queued.rx_packets, queued.carrier]).toEqual([0, 1]);
    // One buffer is not what the head needs: stalled, the carrier goes off after the stall time.
    const off = await rig.statsUntil(bad, (s) => s.carrier === 0, 6000);
    expect([off.rx_stalls, off.rx_drops_stall_purge, off.rx_queue_bytes]).toEqual([1, 1, 0]);
    // Still one buffer: not ready.
    await Bun.sleep(300);
    expect(rig.stats(bad)!.carrier).toBe(0);
    bad.fe.postRx(16);
    await rig.statsUntil(bad, (s) => s.carrier === 1);
    expect(carl.send(big(), { gso: { size: 1448, type: XEN_NETIF_GSO_TYPE_TCPV4 } })).toBe(true);
    const on = await rig.statsUntil(bad, (s) => s.rx_gso_packets === 1);
    expect([on.rx_packets, on.rx_stalls, on.rx_errors]).toEqual([1, 1, 0]);
    await rig.neighboursForward(50);
    expect(await rig.errorNode(bad)).toBeUndefined();
  } finally {
    await carl.close();
  }
});
