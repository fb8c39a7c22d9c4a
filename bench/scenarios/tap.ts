// The tap scenario: guest to a TAP and back, through qnicd's data path and a TapPeer (io_uring).
//  - guest -> TAP: a C guest keeps vif A's tx ring full; qnicd's tx path copies each batch out of the
//    guest and writes it to the TAP. Baseline: the plainest C io_uring writer (bench/tap-writer.c,
//    same ring setup, same batch of 64) writing into the same TAP, alternating pairs: the kernel's
//    ceiling for one-frame-per-write TAP I/O, which qnicd's whole tx path should come close to.
//  - TAP -> guest: the kernel queues frames on the TAP (bench/tap-injector.c, AF_PACKET), qnicd's rx
//    path reads them in batches and delivers them into the guest's rx ring. Baseline: the same TapPeer
//    draining the same queue into nothing (the TAP read alone).
// Needs root and /dev/net/tun; skipped with one line otherwise. The TAP has a private name (qnb<pid>),
// never vif<domid>.<devid>, and is gone when its fd closes.
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { TapProvisioner } from "../../src/net/peer-provisioner-tap.ts";
import { TapPeer } from "../../src/net/tap.ts";
import { RxPath } from "../../workers/rx.ts";
import { DatapathRig, GENERATOR_MARGIN, counters, gcc, udpFrame, type Producer } from "../lib/datapath-rig.ts";
import { mpps, windows } from "../lib/datapath-scenario.ts";
import type { Figure, Ratio, Scenario, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { alternate, median } from "../lib/stats.ts";

const BENCH = resolve(import.meta.dir, "..");
/** TapPeer vs the C io_uring writer (bench/peers.ts's goal), here for qnicd's whole tx path. */
const TAP_GOAL = 0.85;
const BATCH = 64;
/** Not the TAP's MAC: the stack drops these early, as bench/peers.ts's frames. */
const OTHER_MAC = "02:02:02:02:02:02";
const FILL = 4096;

export function tapUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "TAP not allowed here: needs root (CAP_NET_ADMIN) for /dev/net/tun";
  if (!existsSync("/dev/net/tun")) return "TAP not allowed here: no /dev/net/tun";
  return null;
}

function cWriter(writer: string, fd: number, size: number, ms: number): Promise<number> {
  return new Promise((res, rej) => {
    const child = spawn(writer, [String(size), String(BATCH), String(ms / 1000)], { stdio: ["ignore", "pipe", "inherit", fd] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.on("exit", (code) => {
      if (code !== 0) return rej(new Error(`tap-writer exited ${code}`));
      const [ok, , secs] = out.trim().split(" ").map(Number);
      res(ok! / secs!);
    });
  });
}

async function run(opts: ScenarioOptions): Promise<ScenarioResult> {
  const why = tapUnavailable();
  if (why) return { name: "tap", figures: [], ratios: [], skipped: why, notes: [] };
  const { ms, runs, warmMs } = windows(opts.quick);
  const writer = join(opts.workDir, "tap-writer");
  const injector = join(opts.workDir, "tap-injector");
  gcc([join(BENCH, "tap-writer.c"), "-o", writer]);
  gcc([join(BENCH, "tap-injector.c"), "-o", injector]);
  const figures: Figure[] = [];
  const ratios: Ratio[] = [];
  const invalid: string[] = [];
  const rig = new DatapathRig(opts.workDir);
  // Raw frames: the C reference writer shares the fd and writes no virtio_net_hdr.
  const prov = new TapProvisioner({ bridge: null, vnetHdr: false });
  const handle = prov.create(`qnb${process.pid}`.slice(0, 15));
  const tap = new TapPeer(handle.name, handle.fd, { io: "uring" });
  try {
    execFileSync("ip", ["link", "set", "dev", handle.name, "txqueuelen", String(2 * FILL)]); // room for the injector's frames
    const txRing = rig.ring();
    const rxRing = rig.ring();
    const rxRefs = rig.rxBuffers(16);
    for (const size of [64, 1500]) {
      // guest -> TAP
      const prod = await rig.producer(txRing, ["tx", String(rig.dataPage(udpFrame(size, OTHER_MAC))), String(size)]);
      let alone: number, ours: number[], ref: number[] = [];
      try {
        alone = rig.ackRate(txRing, ms);
        rig.tsTx(txRing, warmMs, tap);
        ours = [];
        for (let r = 0; r < runs; r++) {
          ours.push(rig.tsTx(txRing, ms, tap));
          ref.push(await cWriter(writer, handle.fd, size, ms));
        }
      } finally {
        await prod.stop();
      }
      const label = `guest -> TAP ${size} B`;
      const o = median(ours), c = median(ref);
      figures.push({ label, value: o, unit: "pps", series: "qnicd" });
      figures.push({ label, value: c, unit: "pps", series: "C io_uring writer" });
      figures.push({ label, value: alone, unit: "pps", series: "generator alone" });
      ratios.push({ label: `qnicd / C io_uring writer, ${label}`, value: median(ours.map((x, i) => x / ref[i]!)), goal: TAP_GOAL });
      if (alone < o * GENERATOR_MARGIN) invalid.push(`qnicd ${label}: the generator alone (${mpps(alone)}) is not ${GENERATOR_MARGIN}x qnicd's ${mpps(o)}`);
      opts.log(`${label}: qnicd ${mpps(o)}, C writer ${mpps(c)}, generator alone ${mpps(alone)}`);

      // TAP -> guest
      const rxProd: Producer = await rig.producer(rxRing, ["rx", rxRefs.join(",")]);
      let p: ReturnType<typeof alternate>;
      try {
        drainRate(rig, rxRing, tap, injector, handle.name, size, true);
        p = alternate(Math.max(3, runs >> 1), () => drainRate(rig, rxRing, tap, injector, handle.name, size, true), () => drainRate(rig, rxRing, tap, injector, handle.name, size, false));
      } finally {
        await rxProd.stop();
      }
      const back = `TAP -> guest ${size} B`;
      figures.push({ label: back, value: median(p.a), unit: "pps", series: "qnicd" });
      figures.push({ label: back, value: median(p.b), unit: "pps", series: "TAP read alone" });
      ratios.push({ label: `qnicd / TAP read alone, ${back}`, value: p.ratio, goal: null });
      opts.log(`${back}: qnicd ${mpps(median(p.a))}, TAP read alone ${mpps(median(p.b))}`);
    }
    return {
      name: "tap",
      figures,
      ratios,
      invalid: invalid.length ? invalid : undefined,
      notes: [
        `TAP ${handle.name} (removed afterwards), TapPeer io_uring, batches of ${BATCH}; guest -> TAP: ${runs} alternating qnicd / C writer pairs x ${ms} ms`,
        `TAP -> guest: ${FILL} frames queued on the TAP by AF_PACKET beforehand, then drained; frames/s while draining (the injector does not compete)`,
        `TAP counters: io_uring syscalls ${tap.syscalls}, drops ${tap.drops}`,
      ],
    };
  } finally {
    tap.close();
    prov.close();
    rig.close();
  }
}

/**
 * Frames/s drained from a TAP queue the injector filled beforehand: through qnicd's rx path into the
 * guest's ring (`qnicd`), or by the TapPeer alone into a batch that is thrown away.
 */
function drainRate(rig: DatapathRig, rxRing: ReturnType<DatapathRig["ring"]>, tap: TapPeer, injector: string, ifname: string, size: number, qnicd: boolean): number {
  const scratch = createFrameBatch(BATCH, 4096 + 64);
  try {
    while (tap.receive(scratch) > 0); // start empty
    const sent = Number(execFileSync(injector, [ifname, String(size), String(FILL)]).toString().trim());
    let got = 0;
    // Made before the clock starts; its queue holds the frames a pass takes beyond the posted requests.
    const rx = qnicd ? new RxPath(rxRing.map.buffer, rig.domid, FILL * 2048, 60_000) : null;
    const c = counters() as unknown as { rx_packets: number; rx_drops: number } & ReturnType<typeof counters>;
    const t0 = performance.now();
    if (rx) {
      // Until every queued frame is in the guest's ring (a few idle passes end it if some never come).
      for (let idle = 0; c.rx_packets < sent && idle < 8; ) {
        const before = c.rx_packets;
        const pass = rx.service(tap, 1, rig.scratch, rig.gnt, c);
        if (pass.fault) throw new Error(pass.fault);
        if (c.rx_packets === before) {
          if (rx.queue.length === 0) idle++;
          rig.ref.ref_yield(); // let the guest post more requests
        } else idle = 0;
      }
      got = c.rx_packets;
    } else {
      for (let n = tap.receive(scratch); n > 0; n = tap.receive(scratch)) got += n;
    }
    const secs = (performance.now() - t0) / 1000;
    rx?.close();
    if (c.rx_drops > 0) throw new Error(`TAP -> guest: ${c.rx_drops} frames dropped by the rx queue`);
    if (got === 0) throw new Error(`nothing read from TAP ${ifname}: the injector's frames did not arrive`);
    return got / secs;
  } finally {
    freeFrameBatch(scratch);
  }
}

export const scenario: Scenario = {
  name: "tap",
  description: "guest -> TAP (vs a C io_uring writer) and TAP -> guest (vs the TAP read alone), 64/1500 B; skipped without root",
  pin: "0",
  run,
};
