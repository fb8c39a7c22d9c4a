// Child of tap-fallback.test.ts, run under no-uring: a TapPeer in auto mode on a fresh TAP, one
// batch sent; prints what happened as JSON.
import { createFrameBatch } from "../../src/net/frame-batch.ts";
import { buildUdpFrame } from "../../src/net/frames.ts";
import { TapPeer } from "../../src/net/tap.ts";
import { createTestTap, ifCounter, uniqueIfName } from "./tap-helper.ts";

const t = createTestTap(uniqueIfName("f"));
try {
  const result: Record<string, unknown> = {};
  try {
    new TapPeer(t.name, t.fd, { io: "uring" }).close();
    result.uringMode = "opened";
  } catch (e) {
    result.uringMode = String((e as Error).message);
  }
  const p = new TapPeer(t.name, t.fd, { io: "auto" });
  const b = createFrameBatch(8, 2048);
  const f = buildUdpFrame({ srcMac: Uint8Array.of(2, 0, 0, 0, 0, 1), dstMac: Uint8Array.of(2, 0, 0, 0, 0, 2), srcIp: [10, 0, 0, 1], dstIp: [10, 0, 0, 2], srcPort: 1, dstPort: 2, size: 100 });
  for (let i = 0; i < 5; i++) {
    b.bytes.set(f, i * b.stride);
    b.lens[i] = f.length;
  }
  b.count = 5;
  const before = ifCounter(t.name, "rx_packets");
  result.sent = p.send(b);
  result.kernelGot = ifCounter(t.name, "rx_packets") - before;
  result.usesUring = p.usesUring;
  result.uringUnavailable = p.uringUnavailable;
  result.syscalls = p.syscalls;
  p.close();
  console.log(JSON.stringify(result));
} finally {
  t.close();
}
