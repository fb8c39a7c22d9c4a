// B/rate and F/request-multicast-control: parsed as netback parses them, read at connect into the
// spec the worker gets, and watched while the vif runs (a change reaches the pool as an update; a
// malformed rate is unlimited with one warning, however often its watch fires).
import { afterEach, describe, expect, test } from "bun:test";
import { parseMcastRequest, parseRateNode } from "../../src/backend/vif-settings.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startBackendHarness, type BackendHarness } from "./harness.ts";
import { until } from "./sim-host.ts";

describe("parseRateNode (netback's xen_net_read_rate, strict)", () => {
  test("bytes,usecs as libxl writes it", () => {
    expect(parseRateNode("20000,20000")).toEqual({ rate: { bytes: 20000, usecs: 20000 }, problem: null });
    expect(parseRateNode("100000,50000").rate).toEqual({ bytes: 100000, usecs: 50000 });
    expect(parseRateNode(undefined)).toEqual({ rate: null, problem: null });
  });
  test("anything else is unlimited, with the reason", () => {
    for (const bad of ["abc", "", "20000", "20000,", ",20000", " 1,2", "1,2 ", "1, 2", "-1,2", "1,-2", "1.5,2", "1,2,3", "0x10,2", "1;2"]) {
      const r = parseRateNode(bad);
      expect(r.rate).toBeNull();
      expect(r.problem).toContain("is not");
    }
    expect(parseRateNode("1000,0")).toEqual({ rate: null, problem: '"1000,0" has an interval of 0 us' });
  });
  test("numbers past 2^53 are clamped (netback's are u64: as unlimited)", () => {
    expect(parseRateNode("18446744073709551615,50000").rate).toEqual({ bytes: Number.MAX_SAFE_INTEGER, usecs: 50000 });
  });
  test("request-multicast-control: a positive number asks, anything else does not", () => {
    expect([parseMcastRequest("1"), parseMcastRequest("2"), parseMcastRequest("0"), parseMcastRequest(undefined), parseMcastRequest("yes"), parseMcastRequest(" 1"), parseMcastRequest("-1")]).toEqual([true, true, false, false, false, false, false]);
  });
});

describe("watched from connect", () => {
  let h: BackendHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function connected(rate?: string, mcast?: string) {
    h = await startBackendHarness();
    const { fronts } = await h.guest("alice");
    const f = fronts[0]!;
    if (rate !== undefined) await h.host.xs.write(`${f.B}/rate`, rate);
    await f.writeRings({ extra: mcast === undefined ? {} : { "request-multicast-control": mcast } });
    await f.setState(S.Connected);
    await f.waitBackend(S.Connected);
    return { f, spec: h.pool.specs[0]! };
  }

  test("read at connect: the spec carries B/rate and request-multicast-control", async () => {
    const { spec } = await connected("20000,20000", "1");
    expect(spec.settings).toEqual({ rate: { bytes: 20000, usecs: 20000 }, multicastControl: true });
  });

  test("no nodes: unlimited, not requested", async () => {
    const { spec } = await connected();
    expect(spec.settings).toEqual({ rate: null, multicastControl: false });
  });

  test("a runtime write of B/rate reaches the pool; so does the guest flipping request-multicast-control", async () => {
    const { f, spec } = await connected("20000,20000");
    const pool = h!.pool;
    await h!.host.xs.write(`${f.B}/rate`, "100000,50000");
    await until("rate update", () => pool.updates.some((u) => u.settings.rate?.bytes === 100000), 5000);
    expect(pool.updates.at(-1)).toEqual({ key: spec.key, settings: { rate: { bytes: 100000, usecs: 50000 }, multicastControl: false } });
    await f.xs.write(`${f.F}/request-multicast-control`, "1");
    await until("mcast update", () => pool.updates.at(-1)?.settings.multicastControl === true, 5000);
    expect(pool.updates.at(-1)!.settings.rate).toEqual({ bytes: 100000, usecs: 50000 });
    await h!.host.xs.rm(`${f.B}/rate`);
    await until("unlimited", () => pool.updates.at(-1)?.settings.rate === null, 5000);
  });

  test("a malformed B/rate: unlimited with one warning, even when its watch fires again", async () => {
    const { f, spec } = await connected("abc");
    expect(spec.settings!.rate).toBeNull();
    // Other writes fire the watches again (the mcast one, and the same value rewritten).
    await h!.host.xs.write(`${f.B}/rate`, "abc");
    await f.xs.write(`${f.F}/request-multicast-control`, "1");
    await until("mcast update", () => h!.pool.updates.at(-1)?.settings.multicastControl === true, 5000);
    const warnings = h!.logs.filter((l) => l.includes("failed to parse its rate limit"));
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toContain('B/rate "abc" is not "bytes,usecs"; guest tx unlimited');
  });

  test("a guest rewriting request-multicast-control in a loop costs a few re-reads, not one each", async () => {
    const { f } = await connected();
    const before = h!.requests.filter((r) => r.includes("request-multicast-control")).length;
    await Promise.all(Array.from({ length: 200 }, (_, i) => f.xs.write(`${f.F}/request-multicast-control`, String(i % 2))));
    await f.xs.write(`${f.F}/request-multicast-control`, "1");
    await until("settled on 1", () => h!.pool.updates.at(-1)?.settings.multicastControl === true, 5000);
    await Bun.sleep(200);
    const reads = h!.requests.filter((r) => r.includes("request-multicast-control")).length - before;
    expect(reads).toBeLessThan(100);
  });

  test("disconnect drops the watches: later writes reach nobody", async () => {
    const { f } = await connected("20000,20000");
    await f.setState(S.Closing);
    await f.waitBackend(S.Closing);
    const n = h!.pool.updates.length;
    await h!.host.xs.write(`${f.B}/rate`, "1,1000");
    await Bun.sleep(200);
    expect(h!.pool.updates.length).toBe(n);
  });
});
