// The switch scenario: guest to guest through the in-daemon switch (src/net/switch.ts). Vif A's
// guest transmits (C producer keeping its tx ring full), qnicd's tx path sends each batch into A's
// switch port, the switch forwards it by learned MAC to B's port, and qnicd's rx path delivers it into
// vif B's rx ring (a second C producer keeps it posted), as one worker serving both vifs does per
// wake-up. Baseline: the same chain in C (bench/datapath-ref.c ref_switch: the same tx and rx loops
// around the same switch functions) on the same rings, alternating pairs as the tx/rx scenarios do.
import { SwitchFabric, SwitchPeer } from "../../src/net/switch.ts";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { DatapathRig, GENERATOR_MARGIN, udpFrame, type Producer } from "../lib/datapath-rig.ts";
import { DATAPATH_GOAL, mpps, windows } from "../lib/datapath-scenario.ts";
import type { Figure, Ratio, Scenario, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { alternate, median } from "../lib/stats.ts";

const MAC_A = "02:51:00:00:00:0a";
const MAC_B = "02:51:00:00:00:0b";

async function run(opts: ScenarioOptions): Promise<ScenarioResult> {
  const { ms, runs, warmMs } = windows(opts.quick);
  const figures: Figure[] = [];
  const ratios: Ratio[] = [];
  const invalid: string[] = [];
  const rig = new DatapathRig(opts.workDir);
  const fabric = new SwitchFabric({ ports: 4, ringBytes: 1 << 21 });
  const a = new SwitchPeer(fabric.address, "qnb-a");
  const b = new SwitchPeer(fabric.address, "qnb-b");
  try {
    // B announces its MAC (one frame from it) so A's frames are unicast to B's port.
    const hello = createFrameBatch(1, 2048);
    hello.bytes.set(udpFrame(64, "ff:ff:ff:ff:ff:ff", MAC_B), 0);
    hello.lens[0] = 64;
    hello.count = 1;
    b.send(hello);
    freeFrameBatch(hello);
    const txRing = rig.ring();
    const rxRing = rig.ring();
    const rxRefs = rig.rxBuffers(16);
    for (const size of [64, 1500]) {
      const producers: Producer[] = [];
      let alone: number, p: ReturnType<typeof alternate>;
      try {
        producers.push(await rig.producer(txRing, ["tx", String(rig.dataPage(udpFrame(size, MAC_B, MAC_A))), String(size)]));
        producers.push(await rig.producer(rxRing, ["rx", rxRefs.join(",")]));
        alone = median([0, 1, 2].map(() => rig.ack2Rate(txRing, rxRing, ms))) / 2; // per direction: each delivered frame needs one tx and one rx request
        rig.tsSwitch(txRing, rxRing, a, b, warmMs);
        p = alternate(runs, () => rig.tsSwitch(txRing, rxRing, a, b, ms), () => rig.cSwitch(txRing, rxRing, fabric.address, a, b, ms));
      } finally {
        for (const q of producers) await q.stop();
      }
      while (b.receive(rig.scratch.rxFrames) > 0); // nothing left over for the next size
      const label = `guest to guest ${size} B`;
      const o = median(p.a), c = median(p.b);
      figures.push({ label, value: o, unit: "pps", series: "qnicd switch" });
      figures.push({ label, value: c, unit: "pps", series: "C reference switch" });
      figures.push({ label, value: alone, unit: "pps", series: "generator alone" });
      ratios.push({ label: `qnicd / C reference, ${label}`, value: p.ratio, goal: DATAPATH_GOAL });
      if (alone < o * GENERATOR_MARGIN) invalid.push(`qnicd ${label}: the generators alone (${mpps(alone)}) are not ${GENERATOR_MARGIN}x qnicd's ${mpps(o)}`);
      if (alone < c * GENERATOR_MARGIN) invalid.push(`C reference ${label}: the generators alone (${mpps(alone)}) are not ${GENERATOR_MARGIN}x C's ${mpps(c)}`);
      opts.log(`${label}: qnicd ${mpps(o)}, C ${mpps(c)}, generators alone ${mpps(alone)}, qnicd/C ${p.ratio.toFixed(2)}`);
    }
    const st = b.stats;
    return {
      name: "switch",
      figures,
      ratios,
      invalid: invalid.length ? invalid : undefined,
      notes: [
        "vif A tx -> switch port A -> port B -> vif B rx, one loop as one worker serving both vifs; frames delivered into B's ring per second",
        `two vifs of one sim guest, C producers on both rings; port B took ${st.rxFrames} frames, dropped ${st.rxDropped} (frames past B's posted requests are dropped, in both loops)`,
        `${runs} alternating qnicd/C pairs x ${ms} ms per size; medians; generator alone = both producers acknowledged, per direction`,
      ],
    };
  } finally {
    a.close();
    b.close();
    fabric.destroy();
    rig.close();
  }
}

export const scenario: Scenario = {
  name: "switch",
  description: "guest to guest through the in-daemon switch, 64/1500 B: qnicd's tx + switch + rx vs the same chain in C",
  pin: "0",
  run,
};
