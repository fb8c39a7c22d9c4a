// xl's rate=RATE[@INTERVAL] parsed as libxl parses it: the cases of Xen's own
// tools/xl/check-xl-vif-parse, the octal quirk of its strtoull(..., 0), and the B/rate node written.
import { describe, expect, test } from "bun:test";
import { parseVifRate, rateNode, VifRateError } from "../../../src/sim/toolstack/vif-rate.ts";

const ok = (rate: string) => {
  const r = parseVifRate(rate);
  return [r.bytesPerInterval, r.intervalUsecs];
};

describe("parseVifRate: check-xl-vif-parse's cases", () => {
  test("b/s and B/s, each unit prefix, with and without the default @50ms", () => {
    for (const r of ["16000000b/s", "16000000b/s@50ms", "2000000B/s", "2000000B/s@50ms"]) expect(ok(r)).toEqual([100000n, 50000]);
    for (const r of ["16Kb/s", "16Kb/s@50ms", "2KB/s", "2KB/s@50ms"]) expect(ok(r)).toEqual([100n, 50000]);
    for (const r of ["16Mb/s", "16Mb/s@50ms", "2MB/s", "2MB/s@50ms"]) expect(ok(r)).toEqual([100000n, 50000]);
    for (const r of ["8Gb/s", "8Gb/s@50ms", "1GB/s", "1GB/s@50ms"]) expect(ok(r)).toEqual([50000000n, 50000]);
    for (const r of ["80Mb/s@1s", "10MB/s@1s"]) expect(ok(r)).toEqual([10000000n, 1000000]);
  });

  test("refused, with libxl's words", () => {
    const cases: [string, string][] = [
      ["foo", "invalid rate"],
      ["10MB", "invalid rate"],
      ["10MB/m", "invalid rate"],
      ["10ZB", "invalid rate"],
      ["10ZB/s", "invalid rate"],
      ["4294967296b/s", "rate overflow"],
      ["4294967296Kb/s", "rate overflow"],
      ["4294967296Mb/s", "rate overflow"],
      ["4294967296Gb/s", "rate overflow"],
      ["0B/s", "rate overflow"],
      ["10Mb/s@foo", "invalid replenishment interval"],
      ["10Mb/s@10h", "invalid replenishment interval"],
      ["10MB/s@foo", "invalid replenishment interval"],
      ["1B/s@4294967296us", "replenishment interval overflow"],
      ["1B/s@4294968ms", "replenishment interval overflow"],
      ["1B/s@4295s", "replenishment interval overflow"],
      ["1B/s@0us", "replenishment interval overflow"],
      ["4294967295GB/s@5us", "rate overflow"],
      ["4296MB/s@4294s", "rate overflow"],
      ["@", "no rate specified"],
    ];
    for (const [rate, what] of cases) {
      let err: unknown;
      try {
        parseVifRate(rate);
      } catch (e) {
        err = e;
      }
      expect(err, rate).toBeInstanceOf(VifRateError);
      expect((err as Error).message, rate).toStartWith(`config parsing error in vif: ${what} in \``);
    }
  });
});

describe("parseVifRate: the rest of libxl's behaviour", () => {
  test("the issue's examples and the node libxl writes", () => {
    expect(rateNode(parseVifRate("1MB/s@20ms"))).toBe("20000,20000");
    expect(rateNode(parseVifRate("16Mb/s"))).toBe("100000,50000");
    expect(rateNode(parseVifRate("10Mb/s"))).toBe("62500,50000");
  });
  test("intervals: bare numbers and 's' are seconds, 'm' ms, 'u' us", () => {
    expect(ok("1MB/s@2")).toEqual([2000000n, 2000000]);
    expect(ok("1MB/s@20m")).toEqual([20000n, 20000]);
    expect(ok("1MB/s@500us")).toEqual([500n, 500]);
    expect(ok("1MB/s@500u")).toEqual([500n, 500]);
  });
  test("a leading 0 is octal (strtoull base 0): 010MB/s is 8 MB/s, 08MB/s stops at the 8 and is 0", () => {
    expect(ok("010MB/s")).toEqual([400000n, 50000]);
    expect(() => parseVifRate("08MB/s")).toThrow("rate overflow");
  });
  test("the u64 product stays exact past 2^53, and past 2^64 it is an overflow", () => {
    // 4294967295 x 10^9 x 4 = 17179869180000000000 (> 2^63, < 2^64).
    expect(ok("4294967295GB/s@4us")).toEqual([17179869180000n, 4]);
    expect(() => parseVifRate("4294967295GB/s@1s")).toThrow("rate overflow");
  });
});
