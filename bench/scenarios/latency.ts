// The latency scenario: ping-pong round trips through the backend, median and p99. A guest process
// (bench/lib/latency-guest.ts) posts one 64 B frame on vif A's tx ring and notifies; the backend
// (this process, a worker's wake-up: event, tx pass into the in-daemon switch, rx pass from the
// switch into vif B's rx ring, one notify) delivers it to the same guest's vif B; the guest times
// until the frame is in its rx ring. Baseline, alternating in blocks with the same processes and
// event channel: the event-channel ping-pong alone (notify, the backend notifies back), so the
// backend's added latency is the difference.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { buildUdpFrame, parseMac } from "../../src/net/frames.ts";
import { SwitchFabric, SwitchPeer } from "../../src/net/switch.ts";
import { openPlatform } from "../../src/platform/index.ts";
import { createDomain, initHypervisor, teardownHypervisor, type SimEventChannelDevice } from "../../src/sim/hypervisor/index.ts";
import { RxPath } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";
import { BUDGET, counters } from "../lib/datapath-rig.ts";
import { LAT_MAC_B, LAT_STOP } from "../lib/latency-guest.ts";
import type { Figure, Scenario, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { median, percentile } from "../lib/stats.ts";

async function run(opts: ScenarioOptions): Promise<ScenarioResult> {
  const rounds = opts.quick ? 1500 : 5000;
  const blocks = opts.quick ? 2 : 6;
  const dir = join(opts.workDir, "sim");
  initHypervisor(dir);
  const domid = createDomain(dir, { memoryPages: 32 });
  const platform = openPlatform({ kind: "sim", dir, domid: 0 });
  const gnt = platform.openGrantDevice();
  const ev = platform.openEventChannelDevice() as SimEventChannelDevice;
  const fabric = new SwitchFabric({ ports: 4, ringBytes: 1 << 20 });
  const a = new SwitchPeer(fabric.address, "qnb-lat-a");
  const b = new SwitchPeer(fabric.address, "qnb-lat-b");
  const scratch = new WorkerScratch(BUDGET);
  const latFile = join(opts.workDir, "latency.json");
  const guest = Bun.spawn([process.execPath, join(import.meta.dir, "..", "lib", "latency-guest.ts"), dir, String(domid), String(rounds), String(blocks), latFile], { stdout: "pipe", stderr: "inherit" });
  const unmaps: (() => void)[] = [];
  try {
    const lines = lineReader(guest.stdout as ReadableStream<Uint8Array>);
    const hello = JSON.parse(await lines.next()) as { txRef: number; rxRingRef: number; port: number };
    const txMap = gnt.map(domid, [hello.txRef], true);
    const rxMap = gnt.map(domid, [hello.rxRingRef], true);
    unmaps.push(() => txMap.unmap(), () => rxMap.unmap());
    const tx = new TxPath(txMap.buffer, domid);
    const rx = new RxPath(rxMap.buffer, domid, 1 << 20, 60_000);
    const txWords = new Uint32Array(txMap.buffer, 0, 1024);
    const ca = counters(), cb = counters();
    // B announces its MAC so the guest's frames from A are unicast to B's port.
    const ann = createFrameBatch(1, 2048);
    ann.bytes.set(buildUdpFrame({ size: 64, srcMac: parseMac(LAT_MAC_B), dstMac: parseMac("ff:ff:ff:ff:ff:ff"), srcIp: [10, 0, 0, 3], dstIp: [10, 0, 0, 255], srcPort: 9, dstPort: 9 }), 0);
    ann.lens[0] = 64;
    ann.count = 1;
    b.send(ann);
    freeFrameBatch(ann);
    while (a.receive(scratch.rxFrames) > 0); // the announcement flooded to A: drop it
    const bp = ev.bindInterdomain(domid, hello.port);
    const out = new Uint32Array(8);
    ev.notify(bp); // bound: start
    let frames = 0;
    // The backend loop (synchronous; the guest's STOP ends it).
    for (;;) {
      if (!ev.wait(10_000)) throw new Error("latency: no event from the guest in 10 s");
      const n = ev.readPending(out);
      if (n === 0) continue;
      ev.unmask(out, n);
      if (Atomics.load(txWords, 15) === LAT_STOP) break;
      if ((Atomics.load(txWords, 0) >>> 0) === tx.reqCons) {
        ev.notify(bp); // event-channel ping: echo it
        continue;
      }
      const p = tx.service(BUDGET, scratch, gnt, a, ca);
      if (p.fault) throw new Error(p.fault);
      const q = rx.service(b, 1, scratch, gnt, cb);
      if (q.fault) throw new Error(q.fault);
      frames += p.packets;
      if (p.notify || q.notify) ev.notify(bp);
    }
    const code = await guest.exited;
    if (code !== 0) throw new Error(`latency: the guest process exited ${code} (its stderr says why)`);
    const lat = JSON.parse(readFileSync(latFile, "utf8")) as { evtchn: number[]; backend: number[] };
    rx.close();
    ev.unbind(bp);
    const us = (ns: number) => ns / 1000;
    const e50 = us(median(lat.evtchn)), e99 = us(percentile(lat.evtchn, 0.99));
    const b50 = us(median(lat.backend)), b99 = us(percentile(lat.backend, 0.99));
    opts.log(`round trip through the backend: median ${b50.toFixed(1)} us, p99 ${b99.toFixed(1)} us; event channel alone: median ${e50.toFixed(1)} us, p99 ${e99.toFixed(1)} us`);
    const S = "qnicd (tx, switch, rx)", E = "event channel alone";
    const figures: Figure[] = [
      { label: "round trip median", value: b50, unit: "us", series: S },
      { label: "round trip median", value: e50, unit: "us", series: E },
      { label: "round trip p99", value: b99, unit: "us", series: S },
      { label: "round trip p99", value: e99, unit: "us", series: E },
      // Only the median difference: a difference of two p99s from separate samples is mostly noise.
      { label: "added by the backend, median", value: b50 - e50, unit: "us", series: S },
    ];
    return {
      name: "latency",
      figures,
      ratios: [
        { label: "round trip through the backend / event channel alone, median", value: b50 / e50, goal: null },
        { label: "round trip through the backend / event channel alone, p99", value: b99 / e99, goal: null },
      ],
      notes: [
        `${lat.backend.length} round trips each way, in ${blocks} alternating blocks of ${rounds}; guest and backend in two processes, not pinned; 64 B frames`,
        `the backend loop is a worker's wake-up (event, tx pass, switch, rx pass, notify) without its poll() on the switch port; ${frames} frames went through`,
      ],
    };
  } finally {
    guest.kill();
    await guest.exited;
    for (const u of unmaps) u();
    scratch.free();
    a.close();
    b.close();
    fabric.destroy();
    ev.close();
    gnt.close();
    platform.close();
    teardownHypervisor(dir);
  }
}

function lineReader(stream: ReadableStream<Uint8Array>) {
  const rd = stream.getReader();
  const dec = new TextDecoder();
  let buf = "";
  return {
    async next(): Promise<string> {
      for (;;) {
        const i = buf.indexOf("\n");
        if (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          return line;
        }
        const { value, done } = await rd.read();
        if (done) throw new Error("latency: the guest process ended early (its stderr says why)");
        buf += dec.decode(value, { stream: true });
      }
    },
  };
}

export const scenario: Scenario = {
  name: "latency",
  description: "ping-pong round trip guest -> qnicd (tx, switch, rx) -> guest, median and p99, vs the event-channel ping-pong alone",
  run,
};
