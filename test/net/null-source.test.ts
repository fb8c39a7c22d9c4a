// The benchmark peers: null takes and counts everything; source hands out valid frames.
import { afterEach, expect, test } from "bun:test";
import { fillChecksum } from "../../src/net/checksum.ts";
import { createFrameBatch, frameView, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { NullPeer } from "../../src/net/null-peer.ts";
import { SourcePeer } from "../../src/net/source-peer.ts";

const batch = createFrameBatch(32, 2048);
afterEach(() => void (batch.count = 0));

test("the null peer takes every frame, counts it and never has frames to give", () => {
  const p = new NullPeer("null0");
  batch.count = 20;
  expect(p.send(batch)).toBe(20);
  expect(p.send(batch)).toBe(20);
  expect(p.frames).toBe(40);
  expect(p.drops).toBe(0);
  expect(p.receive(batch)).toBe(0);
  expect(batch.count).toBe(0);
  expect(p.pollFd).toBe(-1);
});

test("the source peer fills the whole batch with a valid UDP frame of the configured size", () => {
  const p = new SourcePeer("src0", { size: 64, dstMac: "00:16:3e:01:02:03" });
  expect(p.receive(batch)).toBe(32);
  expect(batch.count).toBe(32);
  for (let i = 0; i < 32; i++) {
    const f = frameView(batch, i);
    expect(f.length).toBe(64);
    expect([...f.subarray(0, 6)]).toEqual([0x00, 0x16, 0x3e, 0x01, 0x02, 0x03]);
    // Valid checksums: refilling them changes nothing.
    const again = f.slice();
    fillChecksum(again);
    expect(Buffer.from(again).equals(Buffer.from(f))).toBe(true);
  }
  expect(p.generated).toBe(32);
});

test("the source peer stops at its limit and refuses frames that do not fit the stride", () => {
  const p = new SourcePeer("src1", { size: 1500, limit: 40 });
  expect(p.receive(batch)).toBe(32);
  expect(p.receive(batch)).toBe(8);
  expect(p.receive(batch)).toBe(0);
  const small = createFrameBatch(4, 1024);
  try {
    expect(() => new SourcePeer("src2", { size: 1500 }).receive(small)).toThrow(/do not fit a 1024 B batch stride/);
  } finally {
    freeFrameBatch(small);
  }
});
