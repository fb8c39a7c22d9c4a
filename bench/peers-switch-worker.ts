// A bench worker for bench/peers.ts: one switch port, either blasting frames to a MAC for a while
// or draining its port (sleeping on its eventfd like a qnicd worker) until told to stop.
import { dlopen, FFIType } from "bun:ffi";
import { createFrameBatch } from "../src/net/frame-batch.ts";
import { SwitchPeer } from "../src/net/switch.ts";

declare const self: Worker;
const libc = dlopen("libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } }).symbols;

type Msg = { role: "send" | "recv"; fabric: number; name: string; myMac: number; toMac: number; size: number; seconds: number; stop: SharedArrayBuffer };

const mac = (n: number) => [0x02, 0x51, 0, 0, 0, n];

self.onmessage = (ev: MessageEvent<Msg>) => {
  const m = ev.data;
  const port = new SwitchPeer(m.fabric, m.name);
  const batch = createFrameBatch(64, 2048);
  const stop = new Int32Array(m.stop);
  for (let i = 0; i < 64; i++) {
    batch.bytes.set([...mac(m.toMac), ...mac(m.myMac), 0x08, 0x00], i * batch.stride);
    batch.lens[i] = m.size;
  }
  // Announce this port's MAC (one broadcast) so the other side's frames are unicast to it.
  batch.bytes.fill(0xff, 0, 6);
  batch.count = 1;
  port.send(batch);
  batch.bytes.set(mac(m.toMac), 0);
  self.postMessage({ ready: true });
  if (m.role === "send") {
    let offered = 0, taken = 0;
    const t0 = performance.now(), end = t0 + m.seconds * 1000;
    let t = t0;
    while (t < end) {
      for (let k = 0; k < 16; k++) {
        batch.count = 64;
        taken += port.send(batch);
        offered += 64;
      }
      t = performance.now();
    }
    Atomics.store(stop, 0, 1);
    self.postMessage({ offered, taken, seconds: (t - t0) / 1000 });
  } else {
    const pfd = new Int32Array([port.pollFd, 1]);
    let got = 0;
    const t0 = performance.now();
    while (Atomics.load(stop, 0) === 0) {
      const n = port.receive(batch);
      got += n;
      if (n === 0) libc.poll(pfd, 1, 20);
    }
    for (let n = port.receive(batch); n > 0; n = port.receive(batch)) got += n;
    self.postMessage({ got, seconds: (performance.now() - t0) / 1000, drops: port.drops });
  }
  port.close();
};
