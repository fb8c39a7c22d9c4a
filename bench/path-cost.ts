// What one packet costs qnicd's own tx and rx paths on the simulated host, without a generator: the
// ring is refilled by this process between passes (outside the timed part), so a figure is the time
// inside TxPath.service / RxPath.service per packet, and beside it the time of the sim grant copy
// alone for the same 64 segments (a memcpy with grant checks: the part the C reference pays too).
// The tx and rx scenarios of `bench/run.ts` time the generator and the backend together on one CPU;
// this splits the backend's share into its copy and everything else (the TypeScript per packet).
//   bun bench/path-cost.ts [--size 64] [--windows 25]
// Figures: ns per packet, best window and median of windows (best is the least disturbed by
// other work on a shared machine).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NullPeer, SourcePeer } from "../src/net/index.ts";
import { RxPath } from "../workers/rx.ts";
import { TxPath } from "../workers/tx.ts";
import { BUDGET, counters, DatapathRig, udpFrame } from "./lib/datapath-rig.ts";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}
const size = arg("--size", 64);
const windows = arg("--windows", 25);
const WINDOW_MS = 100;
const WARM = 5;
const RING = 256;

/**
 * Runs `work` (which returns the packets it handled) for `windows` windows, `prepare` untimed before
 * each call: ns per packet of `work` alone, sorted.
 */
function measure(work: () => number, prepare: () => void = () => {}): number[] {
  const out: number[] = [];
  for (let w = 0; w < windows + WARM; w++) {
    let ms = 0;
    let n = 0;
    const end = performance.now() + WINDOW_MS;
    while (performance.now() < end) {
      prepare();
      const t0 = performance.now();
      n += work();
      ms += performance.now() - t0;
    }
    if (w >= WARM && n > 0) out.push((ms * 1e6) / n);
  }
  return out.sort((a, b) => a - b);
}

/** The guest's side: every request the backend answered is posted again (responses overwrote them), a ring ahead. */
function repost(w: Uint32Array, post: (i: number) => void): void {
  const rsp = w[2]!;
  for (let i = (w[0]! - RING) >>> 0; i !== rsp; i = (i + 1) >>> 0) post(i);
  w[0] = (rsp + RING) >>> 0;
}

const work = mkdtempSync(join(tmpdir(), "qnicd-path-cost-"));
const rig = new DatapathRig(work);
try {
  const lines: string[] = [];
  const show = (what: string, ns: number[]) => lines.push(`${what.padEnd(44)} best ${ns[0]!.toFixed(2).padStart(6)} ns   median ${ns[ns.length >> 1]!.toFixed(2).padStart(6)} ns`);
  const tmpl = udpFrame(size);
  // The grant copy of the 64 segments a pass left in `segs`, again, on its own.
  const copyAlone = (segs: typeof rig.scratch.txSegs) => () => {
    rig.gnt.copy(segs, BUDGET);
    return BUDGET;
  };

  // tx: every slot a one-slot packet of `size` bytes from one granted page, into the null sink.
  {
    const ring = rig.ring();
    const w = ring.words;
    const h = new Uint16Array(w.buffer, w.byteOffset, 2048);
    const gref = rig.dataPage(tmpl);
    const post = (i: number) => {
      const s = 64 + (i & (RING - 1)) * 12; // netif_tx_request: gref, offset, flags, id, size
      w[s >> 2] = gref;
      h[(s + 4) >> 1] = 0;
      h[(s + 6) >> 1] = 0;
      h[(s + 8) >> 1] = i & (RING - 1);
      h[(s + 10) >> 1] = size;
    };
    w.fill(0);
    w[1] = w[3] = 1;
    for (let i = 0; i < RING; i++) post(i);
    w[0] = RING;
    const tx = new TxPath(ring.map.buffer, rig.domid);
    const sink = new NullPeer("null");
    const c = counters();
    const pass = () => {
      const p = tx.service(BUDGET, rig.scratch, rig.gnt, sink, c);
      if (p.fault) throw new Error(p.fault);
      return p.packets;
    };
    show(`tx ${size} B: TxPath.service per packet`, measure(pass, () => repost(w, post)));
    const segs = rig.scratch.txSegs;
    show(`tx ${size} B: its grant copy alone (64 segments)`, measure(copyAlone(segs)));
  }

  // rx: 256 posted buffers over 16 granted pages, frames of `size` bytes from the source peer.
  {
    const ring = rig.ring();
    const w = ring.words;
    const h = new Uint16Array(w.buffer, w.byteOffset, 2048);
    const grefs = rig.rxBuffers(16);
    const post = (i: number) => {
      const s = 64 + (i & (RING - 1)) * 8; // netif_rx_request: id, pad, gref
      h[s >> 1] = i & (RING - 1);
      w[(s + 4) >> 2] = grefs[i & 15]!;
    };
    w.fill(0);
    w[1] = w[3] = 1;
    for (let i = 0; i < RING; i++) post(i);
    w[0] = RING;
    const rx = new RxPath(ring.map.buffer, rig.domid, 64, 60_000);
    const src = new SourcePeer("src", { size });
    const c = counters() as ReturnType<typeof counters> & { rx_packets: number };
    const pass = () => {
      const before = c.rx_packets;
      const p = rx.service(src, 1, rig.scratch, rig.gnt, c);
      if (p.fault) throw new Error(p.fault);
      return c.rx_packets - before;
    };
    show(`rx ${size} B: RxPath.service per packet`, measure(pass, () => repost(w, post)));
    const batch = rig.scratch.rxFrames;
    show(`rx ${size} B: the source's fill alone (64 frames)`, measure(() => src.receive(batch, BUDGET)));
    const segs = rig.scratch.rxSegs;
    show(`rx ${size} B: its grant copy alone (64 segments)`, measure(copyAlone(segs)));
    rx.close();
  }
  console.log(`qnicd's data path per packet on the sim (${windows} windows of ${WINDOW_MS} ms each, ring refilled outside the timed part):`);
  for (const l of lines) console.log(`  ${l}`);
} finally {
  rig.close();
  rmSync(work, { recursive: true, force: true });
}
