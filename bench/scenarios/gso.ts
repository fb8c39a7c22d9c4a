// The gso scenario: 64 KiB TCPv4 GSO packets on one vif whose frontend negotiated feature-sg and
// feature-gso-tcpv4, both ways, qnicd's data path (workers/tx.ts, workers/rx.ts) against the C
// reference loops (bench/datapath-ref.c ref_tx_gso / ref_rx_gso) on the same rings in the same run:
//   tx: the C guest posts 65535-byte packets as Linux netfront does (first slot, GSO extra, 15
//       fragments: 17 slots), copied into 64 KiB frames for a sink that takes GSO frames (a vnet TAP);
//   rx: a generator hands out 65535-byte TCP frames described as GSO (as a TAP with rx offloads does),
//       laid over 16 rx buffers plus the GSO extra, as netback lays them out.
// Pairs alternate qnicd / C; the ratio is the median of the per-pair ratios (datapath-scenario.ts).
import { DatapathRig, GENERATOR_MARGIN, GUEST_MAC } from "../lib/datapath-rig.ts";
import { windows } from "../lib/datapath-scenario.ts";
import type { Figure, Ratio, Scenario, ScenarioResult } from "../lib/scenario.ts";
import { alternate, median } from "../lib/stats.ts";
import { parseMac } from "../../src/net/frames.ts";

/** The frame both directions move: the largest a TCP GSO packet gets (netfront's 0xffff size field). */
const FRAME = 65535;
const MSS = 1448;
/** Ring slots one packet takes: 16 data slots and the GSO extra (either direction). */
const SLOTS = 17;
/** qnicd / C goal for the data path (issue 12 asks >= 0.9 of the tx and rx scenarios). */
const GOAL = 0.9;

/** Ethernet + IPv4 + TCP (ACK|PSH) of `size` bytes with a patterned payload; the checksum is left partial. */
function tcpGsoFrame(size: number): Uint8Array {
  const f = new Uint8Array(size);
  const dv = new DataView(f.buffer);
  f.set(parseMac(GUEST_MAC)!, 0);
  f.set(parseMac("02:00:00:00:00:fe")!, 6);
  dv.setUint16(12, 0x0800);
  f[14] = 0x45;
  dv.setUint16(16, size - 14);
  f[22] = 64;
  f[23] = 6;
  f.set([10, 0, 0, 2, 10, 0, 0, 1], 26);
  dv.setUint16(34, 40000);
  dv.setUint16(36, 5201);
  dv.setUint32(38, 1);
  f[46] = 0x50;
  f[47] = 0x18;
  dv.setUint16(48, 65535);
  for (let i = 54; i < size; i++) f[i] = (i * 7) & 0xff;
  return f;
}

export const scenario: Scenario = {
  name: "gso",
  description: "64 KiB TCP GSO packets on one vif with feature-sg + feature-gso-tcpv4, guest tx -> GSO sink and generator -> guest rx: qnicd's paths vs the C reference",
  pin: "0",
  async run(opts): Promise<ScenarioResult> {
    const { ms, runs, warmMs } = windows(opts.quick);
    const figures: Figure[] = [];
    const ratios: Ratio[] = [];
    const invalid: string[] = [];
    const rig = new DatapathRig(opts.workDir);
    const frame = tcpGsoFrame(FRAME);
    try {
      for (const dir of ["tx", "rx"] as const) {
        const ring = rig.ring();
        const producer =
          dir === "tx"
            ? await rig.producer(ring, ["txgso", String(rig.dataPage(frame.subarray(0, 4096))), String(MSS)])
            : await rig.producer(ring, ["rx", rig.rxBuffers(32).join(",")]);
        let alone: number, p: ReturnType<typeof alternate>;
        try {
          const ours = dir === "tx" ? () => rig.tsTxGso(ring, ms) : () => rig.tsRxGso(ring, ms, frame, MSS);
          const ref = dir === "tx" ? () => rig.cTxGso(ring, ms) : () => rig.cRxGso(ring, ms, frame, MSS);
          // The generator alone acknowledges requests: SLOTS of them per packet.
          alone = median([rig.ackRate(ring, ms), rig.ackRate(ring, ms), rig.ackRate(ring, ms)]) / SLOTS;
          ours(); // JIT warm-up (one window)
          if (warmMs > ms) ours();
          p = alternate(runs, ours, ref);
        } finally {
          await producer.stop();
        }
        const label = `${dir} 64 KiB GSO`;
        const o = median(p.a), c = median(p.b);
        const gbit = (pps: number) => (pps * FRAME * 8) / 1e9;
        figures.push({ label, value: o, unit: "pps", series: `qnicd ${dir}` });
        figures.push({ label, value: c, unit: "pps", series: `C reference ${dir}` });
        figures.push({ label: `${label} (Gbit/s)`, value: gbit(o), unit: "Gbit/s", series: `qnicd ${dir}` });
        figures.push({ label: `${label} (Gbit/s)`, value: gbit(c), unit: "Gbit/s", series: `C reference ${dir}` });
        figures.push({ label, value: alone, unit: "pps", series: "generator alone" });
        ratios.push({ label: `qnicd / C reference, ${label}`, value: p.ratio, goal: GOAL });
        if (alone < o * GENERATOR_MARGIN) invalid.push(`qnicd ${label}: the generator alone (${alone.toFixed(0)} pps) is not ${GENERATOR_MARGIN}x qnicd's ${o.toFixed(0)}: the generator may be the limit`);
        opts.log(`${label}: qnicd ${o.toFixed(0)} pps (${gbit(o).toFixed(2)} Gbit/s), C ${c.toFixed(0)} pps (${gbit(c).toFixed(2)} Gbit/s), generator alone ${alone.toFixed(0)} pps, qnicd/C ${p.ratio.toFixed(2)}`);
      }
    } finally {
      rig.close();
    }
    return {
      name: "gso",
      figures,
      ratios,
      invalid: invalid.length ? invalid : undefined,
      notes: [
        `${FRAME}-byte TCPv4 GSO packets (MSS ${MSS}), ${SLOTS} ring slots each; tx into a sink that takes GSO frames (a vnet TAP's kernel segments them), rx from a generator describing each as GSO (a TAP with rx offloads)`,
        "sim batched grant copy, one copy call per pass; guest = C producer process (bench/datapath-guest.c txgso / rx)",
        `${runs} alternating qnicd/C pairs x ${ms} ms per direction; figures are medians, ratios the median of per-pair ratios`,
      ],
    };
  },
};
