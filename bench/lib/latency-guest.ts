// The guest of the latency scenario, a process of its own on the simulated host: two vifs' rings
// (A's tx ring, B's rx ring), one event channel to the backend. It measures round trips itself:
//  - "evtchn": notify the backend, wait for its notify back (the event-channel ping-pong alone);
//  - "backend": post one 64 B frame on A's tx ring and notify; wait until it arrives on B's rx ring
//    (through qnicd's tx path, the in-daemon switch and qnicd's rx path) and the backend notifies.
// Modes alternate in blocks; the latencies (ns) go to <out file> as JSON at the end (a file, not
// stdout: a large write to a pipe may not be flushed before the process exits).
//   bun bench/lib/latency-guest.ts <sim dir> <domid> <rounds per block> <blocks> <out file>
import { writeFileSync } from "node:fs";
import { buildUdpFrame, parseMac } from "../../src/net/frames.ts";
import { openGuestDomain, type SimEventChannelDevice } from "../../src/sim/hypervisor/index.ts";

export const LAT_MAC_A = "02:51:00:00:01:0a";
export const LAT_MAC_B = "02:51:00:00:01:0b";
export const LAT_STOP = 0x53544f50;
const MASK = 255;

if (import.meta.main) {
  const [dir, domidS, roundsS, blocksS, outFile] = process.argv.slice(2);
  const g = openGuestDomain(dir!, Number(domidS));
  const rounds = Number(roundsS), blocks = Number(blocksS);
  const page = () => {
    const f = g.allocPage();
    const v = g.pageView(f);
    return { f, u32: new Uint32Array(v.buffer, v.byteOffset, 1024), u16: new Uint16Array(v.buffer, v.byteOffset, 2048), i16: new Int16Array(v.buffer, v.byteOffset, 2048) };
  };
  const tx = page(), rx = page();
  for (const r of [tx, rx]) {
    r.u32.fill(0);
    r.u32[1] = r.u32[3] = 1; // SHARED_RING_INIT: req_event = rsp_event = 1
  }
  const data = g.allocPage();
  g.pageView(data).set(buildUdpFrame({ size: 64, srcMac: parseMac(LAT_MAC_A), dstMac: parseMac(LAT_MAC_B), srcIp: [10, 0, 0, 2], dstIp: [10, 0, 0, 3], srcPort: 9, dstPort: 9 }), 0);
  const dataRef = g.grantAccess(0, data, true);
  const rxRef = g.grantAccess(0, g.allocPage(), false);
  const txRef = g.grantAccess(0, tx.f, false);
  const rxRingRef = g.grantAccess(0, rx.f, false);
  const ev = g.evtchn as SimEventChannelDevice;
  const port = ev.bindUnboundPort(0);
  // One rx request posted at a time (slot 0.., id = slot).
  let rxProd = 0, rxCons = 0, txProd = 0;
  const postRx = () => {
    rx.u16[(64 + (rxProd & MASK) * 8) >> 1] = rxProd & MASK; // id
    rx.u32[(64 + (rxProd & MASK) * 8 + 4) >> 2] = rxRef;
    rxProd++;
    Atomics.store(rx.u32, 0, rxProd);
  };
  postRx();
  process.stdout.write(`${JSON.stringify({ txRef, rxRingRef, port })}\n`);
  const out = new Uint32Array(8);
  const waitEvent = () => {
    for (;;) {
      if (!ev.wait(5000)) throw new Error("latency guest: no event from the backend in 5 s");
      const n = ev.readPending(out);
      if (n === 0) continue;
      ev.unmask(out, n);
      return;
    }
  };
  waitEvent(); // the backend is bound and ready
  const lat = { evtchn: [] as number[], backend: [] as number[] };
  const evtchnRound = () => {
    const t = Bun.nanoseconds();
    ev.notify(port);
    waitEvent();
    return Bun.nanoseconds() - t;
  };
  const backendRound = () => {
    const t = Bun.nanoseconds();
    const s = 64 + (txProd & MASK) * 12;
    tx.u32[s >> 2] = dataRef;
    tx.u16[(s + 4) >> 1] = 0; // offset
    tx.u16[(s + 6) >> 1] = 0; // flags
    tx.u16[(s + 8) >> 1] = txProd & MASK; // id
    tx.u16[(s + 10) >> 1] = 64; // size
    txProd++;
    Atomics.store(tx.u32, 0, txProd);
    ev.notify(port);
    for (;;) {
      waitEvent();
      if ((Atomics.load(rx.u32, 2) >>> 0) !== rxCons) break;
    }
    const d = Bun.nanoseconds() - t;
    const st = rx.i16[(64 + (rxCons & MASK) * 8 + 6) >> 1];
    if (st !== 64) throw new Error(`latency guest: rx response status ${st}, expected the 64 B frame`);
    rxCons++;
    Atomics.store(rx.u32, 3, rxCons + 1); // rsp_event: notify me at the next response
    postRx();
    return d;
  };
  for (let i = 0; i < 200; i++) evtchnRound(), backendRound(); // warm-up
  for (let b = 0; b < blocks; b++) {
    for (let r = 0; r < rounds; r++) lat.evtchn.push(evtchnRound());
    for (let r = 0; r < rounds; r++) lat.backend.push(backendRound());
  }
  writeFileSync(outFile!, JSON.stringify(lat));
  Atomics.store(tx.u32, 15, LAT_STOP);
  ev.notify(port);
  g.close();
  process.exit(0);
}
