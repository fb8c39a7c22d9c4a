import { describe, expect, test } from "bun:test";
import { ByteRing } from "../../src/pool/byte-ring.ts";

describe("ByteRing", () => {
  test("records come out whole and in order, across the wrap", () => {
    const sab = new SharedArrayBuffer(64 + 64);
    const w = new ByteRing(sab, 0, 1, 64, 64);
    const r = new ByteRing(sab, 0, 1, 64, 64);
    const seen: number[][] = [];
    for (let i = 0; i < 40; i++) {
      const rec = Uint8Array.from({ length: (i % 13) + 1 }, (_, j) => (i + j) & 255);
      expect(w.write(rec)).toBe(true);
      seen.push(Array.from(rec));
      if (i % 3 === 2) for (let m = r.read(); m; m = r.read()) expect(Array.from(m)).toEqual(seen.shift()!);
    }
    for (let m = r.read(); m; m = r.read()) expect(Array.from(m)).toEqual(seen.shift()!);
    expect(seen).toEqual([]);
    expect(r.read()).toBeNull();
  });

  test("a full ring refuses a write without writing anything, and accepts it once read", () => {
    const sab = new SharedArrayBuffer(64 + 32);
    const ring = new ByteRing(sab, 0, 1, 64, 32);
    expect(ring.write(new Uint8Array(20))).toBe(true);
    expect(ring.write(new Uint8Array(20))).toBe(false);
    expect(ring.read()!.length).toBe(20);
    expect(ring.write(new Uint8Array(20))).toBe(true);
    expect(() => ring.write(new Uint8Array(40))).toThrow(/can never fit/);
  });
});
