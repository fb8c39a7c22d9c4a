// TapPeer against real TAP devices: the kernel receives what send() writes, and what the kernel
// transmits on the TAP comes out of receive(), through io_uring and through the plain fallback.
import { afterEach, describe, expect, test } from "bun:test";
import { createFrameBatch, frameView, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { buildUdpFrame } from "../../src/net/frames.ts";
import { TapPeer, type TapPeerIo } from "../../src/net/tap.ts";
import { PacketSocket, canUseTap, createTestTap, ifCounter, ip, linkExists, uniqueIfName, until, type TestTap } from "./tap-helper.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function tap(tag: string): TestTap {
  const t = createTestTap(uniqueIfName(tag));
  cleanups.push(() => t.close());
  return t;
}
function packetSocket(ifname: string): PacketSocket {
  const s = new PacketSocket(ifname);
  cleanups.push(() => s.close());
  return s;
}
function peer(t: TestTap, io: TapPeerIo, ringEntries?: number): TapPeer {
  const p = new TapPeer(t.name, t.fd, { io, ringEntries });
  cleanups.push(() => p.close());
  return p;
}
function batch(capacity: number, stride = 2048) {
  const b = createFrameBatch(capacity, stride);
  cleanups.push(() => freeFrameBatch(b));
  return b;
}

const mac = (last: number) => Uint8Array.from([0x02, 0x00, 0x5e, 0x10, 0x00, last]);
function frame(i: number, size = 100): Uint8Array {
  return buildUdpFrame({ srcMac: mac(1), dstMac: mac(2), srcIp: [10, 9, 0, 1], dstIp: [10, 9, 0, 2], srcPort: 4000 + i, dstPort: 5000, size, fill: i });
}
function load(b: ReturnType<typeof batch>, frames: Uint8Array[]): void {
  frames.forEach((f, i) => {
    b.bytes.set(f, i * b.stride);
    b.lens[i] = f.length;
  });
  b.count = frames.length;
}
const hex = (u: Uint8Array) => Buffer.from(u).toString("hex");
/** Frames this test made (source MAC mac(1) or mac(3)), in order: the kernel may add its own chatter. */
const ours = (frames: Uint8Array[]) => frames.filter((f) => f[6] === 0x02 && f[7] === 0x00 && f[8] === 0x5e && f[9] === 0x10);

describe.skipIf(!canUseTap())("TapPeer", () => {
  for (const io of ["uring", "plain", "uring-writes"] as const) {
    describe(`${io} I/O`, () => {
      test("the kernel receives every frame of a batch, byte for byte", async () => {
        const t = tap("s");
        const sock = packetSocket(t.name);
        const p = peer(t, io);
        expect(p.usesUring).toBe(io === "uring");
        expect(p.writesUseUring).toBe(io !== "plain");
        const frames = Array.from({ length: 40 }, (_, i) => frame(i, 60 + i * 30));
        const b = batch(64);
        load(b, frames);
        const before = ifCounter(t.name, "rx_packets");
        expect(p.send(b)).toBe(40);
        expect(p.drops).toBe(0);
        expect(ifCounter(t.name, "rx_packets") - before).toBe(40);
        let seen: Uint8Array[] = [];
        await until("the AF_PACKET socket to see 40 frames", () => (seen = seen.concat(ours(sock.drain()))).length >= 40);
        expect(seen.map(hex)).toEqual(frames.map(hex));
      });

      test("frames the kernel transmits on the TAP come out of receive() in order", async () => {
        const t = tap("r");
        const sock = packetSocket(t.name);
        const p = peer(t, io);
        const b = batch(64);
        expect(p.receive(b)).toBe(0); // nothing queued: EAGAIN, no wait
        const frames = Array.from({ length: 25 }, (_, i) => frame(i, 64 + i * 50));
        for (const f of frames) sock.send(f);
        const got: Uint8Array[] = [];
        await until("25 frames from receive()", () => {
          const n = p.receive(b);
          for (let i = 0; i < n; i++) got.push(frameView(b, i).slice());
          return ours(got).length >= 25;
        });
        expect(ours(got).map(hex)).toEqual(frames.map(hex));
      });

      test("a batch larger than the ring goes out and comes in whole", async () => {
        const t = tap("l");
        const sock = packetSocket(t.name);
        const p = peer(t, io, 16);
        const b = batch(200, 256);
        const frames = Array.from({ length: 200 }, (_, i) => frame(i, 64 + (i % 100)));
        load(b, frames);
        const before = ifCounter(t.name, "rx_packets");
        expect(p.send(b)).toBe(200);
        expect(ifCounter(t.name, "rx_packets") - before).toBe(200);
        sock.drain();
        for (const f of frames.slice(0, 150)) sock.send(f);
        const got: Uint8Array[] = [];
        await until("150 frames from receive()", () => {
          const n = p.receive(b);
          for (let i = 0; i < n; i++) got.push(frameView(b, i).slice());
          return ours(got).length >= 150;
        });
        expect(ours(got).map(hex)).toEqual(frames.slice(0, 150).map(hex));
      });

      test("a frame the kernel refuses is a drop and the rest of the batch still goes", () => {
        const t = tap("d");
        const p = peer(t, io);
        const b = batch(8);
        load(b, [frame(0), frame(1), frame(2)]);
        b.lens[1] = 5; // shorter than an Ethernet header: tun answers EINVAL
        const before = ifCounter(t.name, "rx_packets");
        expect(p.send(b)).toBe(2);
        expect(p.drops).toBe(1);
        expect(p.lastError).toBe("EINVAL");
        expect(ifCounter(t.name, "rx_packets") - before).toBe(2);
      });
    });
  }

  /** Sends a batch of 64 frames, then receives 6 the kernel sends: the syscalls each side took. */
  async function sendThenReceive(p: ReturnType<typeof peer>, sock: ReturnType<typeof packetSocket>) {
    const b = batch(64);
    load(b, Array.from({ length: 64 }, (_, i) => frame(i)));
    const s0 = p.syscalls;
    expect(p.send(b)).toBe(64);
    const sendSyscalls = p.syscalls - s0;
    p.receive(b); // drain anything the kernel sent on its own
    for (let i = 0; i < 6; i++) sock.send(frame(i));
    const s1 = p.syscalls;
    let frames = 0, calls = 0;
    await until("6 frames from receive()", () => {
      calls++;
      frames += p.receive(b);
      return frames >= 6;
    });
    return { sendSyscalls, receiveSyscalls: p.syscalls - s1, frames, calls };
  }

  test("one io_uring_enter carries a whole batch each way", async () => {
    const t = tap("e");
    const sock = packetSocket(t.name);
    const p = peer(t, "auto", 256);
    expect(p.usesUring).toBe(true);
    const r = await sendThenReceive(p, sock);
    expect(r.sendSyscalls).toBe(1);
    // Each receive() is one enter: its read-ahead (8 reads, doubling only while all return frames)
    // covers the few frames queued, the rest end in EAGAIN in the same enter.
    expect(r.receiveSyscalls).toBe(r.calls);
  });

  test("io_uring for writes only (a TAP refusing RWF_NOWAIT, as Debian 12's): one io_uring_enter per batch sent, a read per frame received plus the one that finds none", async () => {
    const t = tap("w");
    const sock = packetSocket(t.name);
    const p = peer(t, "uring-writes", 256);
    expect(p.usesUring).toBe(false);
    expect(p.writesUseUring).toBe(true);
    const r = await sendThenReceive(p, sock);
    expect(r.sendSyscalls).toBe(1);
    expect(r.receiveSyscalls).toBe(r.frames + r.calls);
  });

  test("pollFd is the TAP fd and close() leaves the TAP to its owner", () => {
    const t = tap("c");
    const p = new TapPeer(t.name, t.fd);
    expect(p.pollFd).toBe(t.fd);
    p.close();
    p.close();
    expect(linkExists(t.name)).toBe(true);
  });

  test("frames cross a Linux bridge from one TAP peer to another", async () => {
    const br = uniqueIfName("b");
    ip("link", "add", br, "type", "bridge");
    cleanups.push(() => ip("link", "del", br));
    ip("link", "set", "dev", br, "up");
    const a = tap("a"), c = tap("z");
    ip("link", "set", "dev", a.name, "master", br);
    ip("link", "set", "dev", c.name, "master", br);
    const pa = peer(a, "auto"), pc = peer(c, "auto");
    const b = batch(32);
    const frames = Array.from({ length: 10 }, (_, i) => {
      const f = frame(i);
      f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0); // broadcast: the bridge floods it to c
      return f;
    });
    load(b, frames);
    expect(pa.send(b)).toBe(10);
    const got: Uint8Array[] = [];
    await until("10 bridged frames", () => {
      const n = pc.receive(b);
      for (let i = 0; i < n; i++) got.push(frameView(b, i).slice());
      return ours(got).length >= 10;
    });
    expect(ours(got).map(hex)).toEqual(frames.map(hex));
  });
});

test("a TAP peer on an fd that is not open fails with a one-line error naming the cure", () => {
  expect(() => new TapPeer("qnbad0", 1_000_000)).toThrow(/TAP qnbad0: fd is not open \(EBADF\)/);
});
