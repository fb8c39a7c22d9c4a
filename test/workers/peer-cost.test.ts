// The data path charges a vif what its peer says it spent (Peer.ffiCalls, Peer.syscalls), read the
// same way whatever the peer is: the difference across each send() and receive() batch.
import { afterAll, describe, expect, test } from "bun:test";
import type { FrameBatch } from "../../src/net/index.ts";
import { RxPath } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 9;
const scratch = new WorkerScratch(64);
afterAll(() => scratch.free());

/** A peer that reports `sys` syscalls and `ffi` native calls per batch, whatever its kind says. */
class CostlyPeer extends RecordingPeer {
  constructor(private readonly sys: number, private readonly ffi: number) {
    super("null"); // a kind the paths once charged nothing for: only the counters may decide
  }
  override send(batch: FrameBatch): number {
    this.syscalls += this.sys;
    this.ffiCalls += this.ffi;
    return super.send(batch);
  }
  override receive(batch: FrameBatch): number {
    this.syscalls += this.sys;
    this.ffiCalls += this.ffi;
    return super.receive(batch);
  }
}

function txPass(peer: RecordingPeer) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  for (let i = 0; i < 3; i++) {
    gnt.grant(i + 1).set(frame(4096, i + 1));
    const s = 64 + i * 12;
    r.dv.setUint32(s, i + 1, true);
    r.dv.setUint16(s + 8, i, true);
    r.dv.setUint16(s + 10, 60, true);
  }
  Atomics.store(r.w, 0, 3);
  const c = counters();
  const pass = new TxPath(r.buf, DOM, { sg: false, gso: false }).service(64, scratch, gnt, peer, c);
  expect([pass.fault, pass.packets, c.tx_packets]).toEqual([null, 3, 3]);
  return c;
}

function rxPass(peer: RecordingPeer) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  for (let i = 0; i < 3; i++) {
    gnt.grant(100 + i);
    r.dv.setUint16(64 + i * 8, i, true);
    r.dv.setUint32(64 + i * 8 + 4, 100 + i, true);
  }
  Atomics.store(r.w, 0, 3);
  peer.give(frame(60, 1), frame(60, 2), frame(60, 3));
  const c = counters();
  const rx = new RxPath(r.buf, DOM, 1 << 19, 60_000);
  try {
    rx.service(peer, 4, scratch, gnt, c);
  } finally {
    rx.close();
  }
  expect(c.rx_packets).toBe(3);
  return c;
}

describe("peer cost", () => {
  test("tx: one send batch charges exactly the peer's reported syscalls and native calls", () => {
    const base = txPass(new RecordingPeer("null"));
    const costly = txPass(new CostlyPeer(5, 2));
    expect([costly.syscalls - base.syscalls, costly.ffi_calls - base.ffi_calls]).toEqual([5, 2]);
  });

  test("rx: each receive batch charges exactly the peer's reported syscalls and native calls", () => {
    const base = rxPass(new RecordingPeer("null"));
    const costly = rxPass(new CostlyPeer(3, 1));
    // One receive() batch took all three frames (fewer than a batch's capacity: no second round).
    expect([costly.syscalls - base.syscalls, costly.ffi_calls - base.ffi_calls]).toEqual([3, 1]);
  });
});
