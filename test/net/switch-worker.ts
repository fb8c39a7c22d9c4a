// A Bun Worker holding switch ports, driven by the test over postMessage: the same shape as a
// qnicd worker (its own thread, its own FrameBatch, the switch reached by address).
import { dlopen, FFIType } from "bun:ffi";
import { createFrameBatch } from "../../src/net/frame-batch.ts";
import { SwitchPeer } from "../../src/net/switch.ts";
import { checkFrame, mac, writeFrame } from "./switch-frames.ts";

declare const self: Worker;
const libc = dlopen("libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } }).symbols;
const pfd = new Int32Array(2);
function waitReadable(fd: number, ms: number): boolean {
  pfd[0] = fd;
  pfd[1] = 1; // POLLIN, revents 0
  return libc.poll(pfd, 1, ms) > 0;
}

let port: SwitchPeer | undefined;
const batch = createFrameBatch(64, 2048);

type Msg =
  | { op: "open"; fabric: number; name: string }
  | { op: "send"; dst: number; src: number; seqs: number[]; len?: number }
  | { op: "blast"; dst: number; src: number; count: number; per: number }
  | { op: "recv" }
  | { op: "drain"; expect: number; idleMs: number }
  | { op: "stats" }
  | { op: "close" };

self.onmessage = (ev: MessageEvent<Msg>) => {
  const m = ev.data;
  try {
    switch (m.op) {
      case "open":
        port = new SwitchPeer(m.fabric, m.name);
        return self.postMessage({ ok: true, index: port.index, pollFd: port.pollFd });
      case "send": {
        m.seqs.forEach((s, i) => (batch.lens[i] = writeFrame(batch.bytes, i * batch.stride, mac(m.dst), mac(m.src), s, m.len)));
        batch.count = m.seqs.length;
        return self.postMessage({ ok: true, sent: port!.send(batch) });
      }
      case "blast": {
        // Sends `count` frames in batches of `per` as fast as it can (the other side drains concurrently).
        let sent = 0, seq = 0;
        while (seq < m.count) {
          const n = Math.min(m.per, m.count - seq);
          for (let i = 0; i < n; i++) batch.lens[i] = writeFrame(batch.bytes, i * batch.stride, mac(m.dst), mac(m.src), seq + i);
          batch.count = n;
          sent += port!.send(batch);
          seq += n;
        }
        return self.postMessage({ ok: true, sent });
      }
      case "recv": {
        const n = port!.receive(batch);
        const frames = Array.from({ length: n }, (_, i) => batch.bytes.slice(i * batch.stride, i * batch.stride + batch.lens[i]));
        return self.postMessage({ ok: true, frames });
      }
      case "drain": {
        // Sleeps on the port's eventfd like a worker loop, receiving until `expect` frames or idle.
        // Order is per sender (mac(port) puts the port in source MAC byte 4): senders interleave freely.
        let got = 0, torn = 0, outOfOrder = 0, wakeups = 0;
        const last = new Map<number, number>();
        const perSender: Record<number, number> = {};
        while (got < m.expect) {
          const n = port!.receive(batch);
          for (let i = 0; i < n; i++) {
            const f = batch.bytes.subarray(i * batch.stride);
            const seq = checkFrame(f, batch.lens[i]);
            const from = f[10];
            if (seq < 0) torn++;
            else if (seq <= (last.get(from) ?? -1)) outOfOrder++;
            else {
              last.set(from, seq);
              perSender[from] = (perSender[from] ?? 0) + 1;
            }
          }
          got += n;
          if (n === 0) {
            if (!waitReadable(port!.pollFd, m.idleMs)) break;
            wakeups++;
          }
        }
        return self.postMessage({ ok: true, got, torn, outOfOrder, wakeups, perSender });
      }
      case "stats":
        return self.postMessage({ ok: true, stats: port!.stats, drops: port!.drops });
      case "close":
        port?.close();
        return self.postMessage({ ok: true });
    }
  } catch (e) {
    self.postMessage({ ok: false, error: String(e) });
  }
};
