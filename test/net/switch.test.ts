// The learning switch: delivery, learning, flooding, ageing, bounded rings and wake-ups on one
// thread; then across two real Bun Worker threads: intact delivery and no torn frames under load.
import { afterEach, describe, expect, test } from "bun:test";
import { dlopen, FFIType, toArrayBuffer } from "bun:ffi";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { SwitchFabric, SwitchPeer, type SwitchOptions } from "../../src/net/switch.ts";
import { checkFrame, lengthFor, mac, writeFrame } from "./switch-frames.ts";

const cleanups: (() => void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function fabric(opts: SwitchOptions = {}) {
  const f = new SwitchFabric({ ports: 8, ringBytes: 1 << 18, ...opts });
  cleanups.push(() => f.destroy());
  return f;
}
function port(f: SwitchFabric, name: string) {
  const p = new SwitchPeer(f.address, name);
  cleanups.push(() => p.close());
  return p;
}
const batch = createFrameBatch(64, 2048);
afterEach(() => void (batch.count = 0));

/** Sends frames (seq numbers) from port `src` (MAC host `from`) to MAC `to`. */
function send(p: SwitchPeer, to: Uint8Array, from: Uint8Array, seqs: number[]): number {
  seqs.forEach((s, i) => (batch.lens[i] = writeFrame(batch.bytes, i * batch.stride, to, from, s)));
  batch.count = seqs.length;
  return p.send(batch);
}
function recvSeqs(p: SwitchPeer): number[] {
  const n = p.receive(batch);
  return Array.from({ length: n }, (_, i) => checkFrame(batch.bytes.subarray(i * batch.stride), batch.lens[i]));
}
const libc = dlopen("libc.so.6", {
  read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  eventfd: { args: [FFIType.u32, FFIType.i32], returns: FFIType.i32 },
  write: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
}).symbols;
/** The eventfd's counter (and resets it), 0 if it was not signalled. */
function readEventfd(fd: number): number {
  const v = new BigUint64Array(1);
  return Number(libc.read(fd, v, 8)) === 8 ? Number(v[0]) : 0;
}
function readable(fd: number): boolean {
  return libc.poll(Int32Array.of(fd, 1), 1, 0) > 0;
}
function signal(fd: number): void {
  libc.write(fd, BigUint64Array.of(1n), 8);
}
/** A port's `armed` word in the switch's shared memory (struct sw_port offset 8). */
function armedWord(f: SwitchFabric, index: number): Uint32Array {
  const portsOff = new Uint32Array(toArrayBuffer(f.address, 32, 4))[0];
  return new Uint32Array(toArrayBuffer(f.address, portsOff + index * 256 + 8, 4));
}
const BCAST = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

describe("learning switch on one thread", () => {
  test("unknown unicast floods to every other port, and the reply is switched to the learned port only", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b"), c = port(f, "c");
    expect(send(a, mac(2), mac(1), [1, 2, 3])).toBe(3);
    expect(recvSeqs(b)).toEqual([1, 2, 3]);
    expect(recvSeqs(c)).toEqual([1, 2, 3]);
    expect(recvSeqs(a)).toEqual([]);
    expect(a.stats.txFlooded).toBe(3);
    expect(a.lookup(mac(1))).toBe(a.index);
    // b answers a's MAC: learned, so only a gets it; b's MAC is now learned too.
    expect(send(b, mac(1), mac(2), [10])).toBe(1);
    expect(recvSeqs(a)).toEqual([10]);
    expect(recvSeqs(c)).toEqual([]);
    expect(send(a, mac(2), mac(1), [11])).toBe(1);
    expect(recvSeqs(b)).toEqual([11]);
    expect(recvSeqs(c)).toEqual([]);
    expect(b.stats.txFlooded).toBe(0);
  });

  test("broadcast and multicast always flood, and a multicast source is never learned", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b"), c = port(f, "c");
    send(b, mac(1), mac(2), [0]); // b's MAC learned
    recvSeqs(a); recvSeqs(c);
    expect(send(a, BCAST, mac(1), [1])).toBe(1);
    expect(send(a, Uint8Array.from([0x01, 0, 0x5e, 0, 0, 1]), mac(1), [2])).toBe(1);
    expect(recvSeqs(b)).toEqual([1, 2]);
    expect(recvSeqs(c)).toEqual([1, 2]);
    const mcastSrc = Uint8Array.from([0x03, 0, 0, 0, 0, 9]);
    send(c, BCAST, mcastSrc, [3]);
    expect(a.lookup(mcastSrc)).toBe(-1);
  });

  test("a MAC that moves to another port is relearned there", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b"), c = port(f, "c");
    send(a, BCAST, mac(9), [1]);
    expect(a.lookup(mac(9))).toBe(a.index);
    recvSeqs(c);
    send(c, BCAST, mac(9), [2]);
    expect(a.lookup(mac(9))).toBe(c.index);
    send(b, mac(9), mac(2), [3]);
    expect(recvSeqs(a)).toEqual([2]);
    expect(recvSeqs(c)).toEqual([3]);
  });

  test("learned MACs age out and unknown unicast floods again", () => {
    const f = fabric({ agingMs: 1000 });
    const a = port(f, "a"), b = port(f, "b"), c = port(f, "c");
    send(b, BCAST, mac(2), [0]);
    recvSeqs(a); recvSeqs(c);
    send(a, mac(2), mac(1), [1]);
    expect(recvSeqs(c)).toEqual([]);
    f.advanceClock(1500);
    expect(a.lookup(mac(2))).toBe(-1);
    send(a, mac(2), mac(1), [2]);
    expect(recvSeqs(c)).toEqual([2]);
    expect(recvSeqs(b)).toEqual([1, 2]);
  });

  test("a frame to the sender's own MAC is dropped, not reflected", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b");
    send(a, BCAST, mac(1), [0]);
    recvSeqs(b);
    expect(send(a, mac(1), mac(1), [1])).toBe(0);
    expect(recvSeqs(a)).toEqual([]);
    expect(recvSeqs(b)).toEqual([]);
    expect(a.stats.txDropped).toBe(1);
  });

  test("a port that does not drain drops past its ring's bytes and counts them; the ring keeps working after", () => {
    const f = fabric({ ringBytes: 1 << 17 }); // 128 KiB
    const a = port(f, "a"), b = port(f, "b");
    let sent = 0, offered = 0;
    for (let k = 0; k < 10; k++) {
      const seqs = Array.from({ length: 64 }, (_, i) => k * 64 + i);
      sent += send(a, mac(2), mac(1), seqs);
      offered += 64;
    }
    expect(b.drops).toBeGreaterThan(0);
    expect(b.drops + sent).toBe(offered);
    expect(b.stats.rxFrames).toBe(sent);
    // Everything enqueued comes out intact and in order, across the wrap, then new frames flow.
    const got: number[] = [];
    for (let n = -1; n !== 0; ) {
      const s = recvSeqs(b);
      n = s.length;
      got.push(...s);
    }
    expect(got.length).toBe(sent);
    expect(got.every((s) => s >= 0)).toBe(true);
    expect(got.every((s, i) => i === 0 || s > got[i - 1])).toBe(true);
    expect(send(a, mac(2), mac(1), [9999])).toBe(1);
    expect(recvSeqs(b)).toEqual([9999]);
  });

  test("a sleeping port is woken once per batch, and not again until it has drained", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b");
    send(a, mac(2), mac(1), [1, 2, 3, 4]);
    expect(b.stats.wakes).toBe(1);
    send(a, mac(2), mac(1), [5, 6]);
    expect(b.stats.wakes).toBe(1); // b has not looked yet: no second wake-up
    expect(recvSeqs(b)).toEqual([1, 2, 3, 4, 5, 6]);
    send(a, mac(2), mac(1), [7]);
    expect(b.stats.wakes).toBe(2);
  });

  test("ports sharing one worker eventfd get one write per batch between them, and leave clearing it to the worker", () => {
    const f = fabric();
    const a = port(f, "a");
    const efd = libc.eventfd(0, 0o4000 | 0o2000000); // EFD_NONBLOCK | EFD_CLOEXEC: the worker's
    cleanups.push(() => void libc.close(efd));
    const b = new SwitchPeer(f.address, "b", { wakeFd: efd }), c = new SwitchPeer(f.address, "c", { wakeFd: efd });
    cleanups.push(() => c.close(), () => b.close());
    send(a, BCAST, mac(1), [1, 2, 3]); // reaches both b and c
    expect(b.stats.wakes + c.stats.wakes).toBe(2); // both were asleep...
    expect(readEventfd(efd)).toBe(1); // ...but the shared fd was written once
    expect(recvSeqs(b)).toEqual([1, 2, 3]);
    expect(recvSeqs(c)).toEqual([1, 2, 3]);
    send(a, BCAST, mac(1), [4]);
    expect(readEventfd(efd)).toBe(1);
  });

  test("a port's eventfd is readable exactly while it has something to do", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b");
    expect(readable(b.pollFd)).toBe(false);
    send(a, BCAST, mac(1), [1]);
    expect(readable(b.pollFd)).toBe(true);
    expect(recvSeqs(b)).toEqual([1]);
    expect(readable(b.pollFd)).toBe(false); // drained and cleared: the worker may sleep
    send(a, BCAST, mac(1), [2]);
    expect(readable(b.pollFd)).toBe(true); // and is woken again
    expect(recvSeqs(b)).toEqual([2]);
    expect(readable(b.pollFd)).toBe(false);
  });

  test("a wake-up whose eventfd write lands after the port re-armed is still cleared (no busy loop)", () => {
    const f = fabric();
    port(f, "a");
    const b = port(f, "b");
    const armed = armedWord(f, b.index);
    expect(armed[0]).toBe(1);
    Atomics.store(armed, 0, 0); // a producer took the wake-up (armed 1 -> 0)...
    expect(recvSeqs(b)).toEqual([]); // ...the port re-arms before that producer's write lands
    expect(Atomics.load(armed, 0)).toBe(1);
    signal(b.pollFd); // the write lands now
    expect(readable(b.pollFd)).toBe(true);
    expect(recvSeqs(b)).toEqual([]); // the spurious wake-up is answered once...
    expect(readable(b.pollFd)).toBe(false); // ...and the fd does not stay readable
  });

  test("closing a port forgets its MACs, and its name can be opened again", () => {
    const f = fabric();
    const a = port(f, "a");
    const b = new SwitchPeer(f.address, "b");
    send(b, BCAST, mac(2), [1]);
    expect(a.lookup(mac(2))).toBe(b.index);
    expect(() => new SwitchPeer(f.address, "b")).toThrow(/a port by that name is open/);
    b.close();
    expect(a.lookup(mac(2))).toBe(-1);
    expect(b.stats.txFrames).toBe(1);
    const b2 = port(f, "b");
    expect(recvSeqs(b2)).toEqual([]);
    // The closed handle no longer reaches the slot, which now belongs to b2.
    send(a, BCAST, mac(1), [7]);
    expect(b.receive(batch)).toBe(0);
    expect(b.send(batch)).toBe(0);
    expect(recvSeqs(b2)).toEqual([7]);
  });

  test("malformed lengths are dropped and counted, not copied", () => {
    const f = fabric();
    const a = port(f, "a"), b = port(f, "b");
    send(a, BCAST, mac(1), [1, 2, 3]);
    recvSeqs(b);
    writeFrame(batch.bytes, 0, BCAST, mac(1), 4);
    batch.lens[0] = 13;
    batch.lens[1] = 4096; // longer than the stride
    batch.lens[2] = writeFrame(batch.bytes, 2 * batch.stride, BCAST, mac(1), 5);
    batch.count = 3;
    expect(a.send(batch)).toBe(1);
    expect(a.stats.txDropped).toBe(2);
    expect(recvSeqs(b)).toEqual([5]);
  });

  test("opening a port on something that is not a switch fails with a clear error", () => {
    const b = createFrameBatch(1, 4096);
    try {
      expect(() => new SwitchPeer(b.base, "x")).toThrow(/not a live switch/);
    } finally {
      freeFrameBatch(b);
    }
  });
});

type Reply = { ok: boolean; error?: string; [k: string]: unknown };
function spawn() {
  const w = new Worker(new URL("./switch-worker.ts", import.meta.url).href);
  const queue: ((r: Reply) => void)[] = [];
  w.onmessage = (ev: MessageEvent<Reply>) => queue.shift()!(ev.data);
  const call = (msg: object): Promise<Reply> =>
    new Promise((resolve, reject) => {
      queue.push((r) => (r.ok ? resolve(r) : reject(new Error(r.error))));
      w.postMessage(msg);
    });
  cleanups.push(async () => {
    await call({ op: "close" }).catch(() => {});
    w.terminate();
  });
  return call;
}

describe("learning switch across two worker threads", () => {
  test("frames from a port on worker A reach a port on worker B intact, and learning stops flooding", async () => {
    const f = new SwitchFabric({ ports: 4, ringBytes: 1 << 18 });
    const A = spawn(), B = spawn();
    const c = port(f, "c"); // a third port on the main thread sees the floods
    await A({ op: "open", fabric: f.address, name: "vif1.0" });
    await B({ op: "open", fabric: f.address, name: "vif2.0" });
    cleanups.unshift(() => f.destroy()); // after the workers closed their ports
    expect((await A({ op: "send", dst: 2, src: 1, seqs: [1, 2, 3] })).sent).toBe(3);
    const got = (await B({ op: "recv" })).frames as Uint8Array[];
    expect(got.map((fr) => checkFrame(fr, fr.length))).toEqual([1, 2, 3]);
    expect(recvSeqs(c)).toEqual([1, 2, 3]); // unknown: flooded
    await B({ op: "send", dst: 1, src: 2, seqs: [4] }); // B's MAC learned; A's already known
    expect(recvSeqs(c)).toEqual([]);
    await A({ op: "send", dst: 2, src: 1, seqs: [5, 6] });
    expect(((await B({ op: "recv" })).frames as Uint8Array[]).map((fr) => checkFrame(fr, fr.length))).toEqual([5, 6]);
    expect(recvSeqs(c)).toEqual([]);
  });

  test("no torn, lost-without-count or reordered frames while A sends and B drains concurrently", async () => {
    const f = new SwitchFabric({ ports: 4, ringBytes: 1 << 17 }); // small: the ring wraps constantly and fills
    const A = spawn(), B = spawn();
    await A({ op: "open", fabric: f.address, name: "a" });
    await B({ op: "open", fabric: f.address, name: "b" });
    cleanups.unshift(() => f.destroy());
    // B learned on the first frame it sends; then everything from A is unicast to B.
    await B({ op: "send", dst: 0xff, src: 2, seqs: [0] });
    const total = 40000;
    const draining = B({ op: "drain", expect: total, idleMs: 500 });
    const blast = await A({ op: "blast", dst: 2, src: 1, count: total, per: 32 });
    const d = await draining;
    const st = (await B({ op: "stats" })) as Reply & { stats: { rxDropped: number; rxFrames: number } };
    expect(d.torn).toBe(0);
    expect(d.outOfOrder).toBe(0);
    expect(d.got).toBe(st.stats.rxFrames);
    expect(st.stats.rxFrames + st.stats.rxDropped).toBe(total);
    expect(blast.sent).toBe(st.stats.rxFrames);
  });

  test("two workers sending to one port at once: every frame intact, each sender's order kept, every loss counted", async () => {
    const f = new SwitchFabric({ ports: 4, ringBytes: 1 << 17 });
    const A = spawn(), C = spawn(), B = spawn();
    await A({ op: "open", fabric: f.address, name: "a" });
    await C({ op: "open", fabric: f.address, name: "c" });
    await B({ op: "open", fabric: f.address, name: "b" });
    cleanups.unshift(() => f.destroy());
    await B({ op: "send", dst: 0xff, src: 2, seqs: [0] });
    const each = 20000;
    const draining = B({ op: "drain", expect: 2 * each, idleMs: 500 });
    const [sa, sc] = await Promise.all([A({ op: "blast", dst: 2, src: 1, count: each, per: 32 }), C({ op: "blast", dst: 2, src: 3, count: each, per: 16 })]);
    const d = await draining;
    const st = (await B({ op: "stats" })) as Reply & { stats: { rxDropped: number; rxFrames: number } };
    expect(d.torn).toBe(0);
    expect(d.outOfOrder).toBe(0);
    expect(d.got).toBe(st.stats.rxFrames);
    expect(st.stats.rxFrames + st.stats.rxDropped).toBe(2 * each);
    const per = d.perSender as Record<number, number>;
    expect(per[1] ?? 0).toBe(sa.sent as number);
    expect(per[3] ?? 0).toBe(sc.sent as number);
  });
});

describe("a multi-queue vif's ports (<vif> and <vif>:q<N>)", () => {
  test("a flooded frame reaches each vif once, on its queue 0's port, and never another queue of the sender; unicast follows learning to any queue", () => {
    const f = fabric();
    const a0 = port(f, "vif1.0");
    const a1 = port(f, "vif1.0:q1");
    const b = port(f, "vif2.0");
    const [A, B] = [mac(1), mac(2)];
    expect(send(b, BCAST, B, [1])).toBe(1);
    expect([recvSeqs(a0), recvSeqs(a1)]).toEqual([[1], []]);
    // From queue 1 of vif1.0: b gets it, vif1.0's own queue 0 does not.
    expect(send(a1, BCAST, A, [2])).toBe(1);
    expect([recvSeqs(b), recvSeqs(a0)]).toEqual([[2], []]);
    // A was learned on vif1.0:q1: unicast to A goes there.
    expect(send(b, A, B, [3])).toBe(1);
    expect([recvSeqs(a1), recvSeqs(a0)]).toEqual([[3], []]);
  });

  test("a port whose name only looks like a queue's is not one (an interface named like Linux's vif1.0-q1, or \":q\" without digits)", () => {
    const f = fabric();
    const x = port(f, "vif3.0-q1");
    const y = port(f, "vif4.0:q");
    const b = port(f, "vif2.0");
    expect(send(b, BCAST, mac(2), [9])).toBe(1);
    expect([recvSeqs(x), recvSeqs(y)]).toEqual([[9], [9]]);
  });
});
