// The `rate` limit's arithmetic (netback's tx_credit_exceeded / tx_add_credit /
// xen_net_rate_changed) on a fake clock, and the tx path holding a packet back unconsumed, without
// a final check, until the credit timer fires.
import { afterAll, describe, expect, test } from "bun:test";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TX_CREDIT_BURST_MIN, TxCredit } from "../../workers/tx-credit.ts";
import { TxPath } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

function clock(start = 1000) {
  let t = start;
  return { now: () => t, at: (ms: number) => (t = ms), add: (ms: number) => (t += ms) };
}

describe("TxCredit: netback's credit arithmetic", () => {
  test("unlimited (no B/rate): nothing is ever held back", () => {
    const k = clock();
    const c = new TxCredit(k.now);
    c.set(null, true);
    expect(c.remaining).toBe(Infinity);
    for (let i = 0; i < 1000; i++) {
      expect(65535 > c.remaining).toBe(false);
      c.remaining -= 65535;
    }
    expect(c.throttled).toBe(false);
    expect(c.timerDueIn(k.now())).toBe(-1);
  });

  test("1MB/s@20ms: 20000 bytes per 20 ms window; a packet over what is left waits for the window's end", () => {
    const k = clock(1000);
    const c = new TxCredit(k.now);
    c.set({ bytes: 20000, usecs: 20000 }, true);
    expect(c.remaining).toBe(20000);
    // 13 x 1500 = 19500 fit; the 14th does not.
    for (let i = 0; i < 13; i++) c.remaining -= 1500;
    expect(c.remaining).toBe(500);
    k.add(5);
    expect(c.exceeded(1500)).toBe(true);
    expect(c.throttled).toBe(true);
    // The window began at 1000 (construction), so the timer is at 1020.
    expect(c.timerDueIn(k.now())).toBe(15);
    expect(c.holds).toBe(1);
    // Asked again while the timer is pending: still held, no new hold counted.
    expect(c.exceeded(1500)).toBe(true);
    expect(c.holds).toBe(1);
    k.at(1019.9);
    expect(c.due(k.now())).toBe(false);
    k.at(1020);
    expect(c.due(k.now())).toBe(true);
    // tx_add_credit: 500 + 20000, capped at max(128 KiB, 20000).
    expect(c.remaining).toBe(20500);
    expect(c.throttled).toBe(false);
    expect(c.heldUs).toBe(15000);
  });

  test("a passed window refills at once: the check itself starts a new window at now", () => {
    const k = clock(0);
    const c = new TxCredit(k.now);
    c.set({ bytes: 1000, usecs: 50000 }, true);
    c.remaining = 0;
    k.at(120); // well past 0 + 50
    expect(c.exceeded(900)).toBe(false);
    expect(c.remaining).toBe(1000);
    // The new window began at 120: the next refill is due at 170.
    c.remaining -= 900;
    k.at(150);
    expect(c.exceeded(900)).toBe(true);
    expect(c.timerDueIn(k.now())).toBe(20);
  });

  test("a 64 KiB packet always gets through, however low the rate: credit accumulates up to 128 KiB", () => {
    const k = clock(0);
    const c = new TxCredit(k.now);
    c.set({ bytes: 1000, usecs: 10000 }, true); // 100 KB/s in 10 ms windows
    let windows = 0;
    for (;;) {
      if (!(65535 > c.remaining) || !c.exceeded(65535)) break;
      const due = c.timerDueIn(k.now());
      k.add(due);
      expect(c.due(k.now())).toBe(true);
      windows++;
    }
    // 1000 at connect + 65 refills of 1000 = 66000 >= 65535.
    expect(windows).toBe(65);
    c.remaining -= 65535;
    // Idle for a long time: one interval's bytes are added, not one per interval missed.
    k.add(1_000_000);
    expect(c.exceeded(65535)).toBe(true);
    expect(c.remaining).toBe(66000 - 65535 + 1000);
    // Held back window after window, the credit stops at max(128 KiB, bytes), never more.
    for (let i = 0; i < 200; i++) {
      k.add(c.timerDueIn(k.now()));
      c.due(k.now());
      c.exceeded(200_000);
    }
    expect(c.remaining).toBe(TX_CREDIT_BURST_MIN);
  });

  test("bytes per interval above 128 KiB: the cap is the interval's bytes", () => {
    const k = clock(0);
    const c = new TxCredit(k.now);
    c.set({ bytes: 500_000, usecs: 50000 }, true);
    c.remaining = 400_000;
    k.add(100);
    expect(c.exceeded(450_000)).toBe(false);
    expect(c.remaining).toBe(500_000);
  });

  test("an interval under 1 ms (truncated to 0, as netback does) refills once per ms: the timer is never due at once", () => {
    const k = clock(0);
    const c = new TxCredit(k.now);
    c.set({ bytes: 100, usecs: 999 }, true);
    let sent = 0;
    for (let ms = 0; ms < 1000; ) {
      if (1000 > c.remaining && c.exceeded(1000)) {
        const due = c.timerDueIn(k.now());
        expect(due).toBeGreaterThanOrEqual(1);
        ms += due;
        k.add(due);
        c.due(k.now());
        continue;
      }
      c.remaining -= 1000;
      sent += 1000;
    }
    // Twice 100 bytes per ms, as in netback: the timer refills, then the check finds its 0 ms
    // window passed and refills again. Bounded, and the worker sleeps in between.
    expect(sent).toBeGreaterThanOrEqual(196_000);
    expect(sent).toBeLessThanOrEqual(201_000);
  });

  test("a change of B/rate: a pending timer fires at once; otherwise what is left is cut to the new bytes", () => {
    const k = clock(0);
    const c = new TxCredit(k.now);
    c.set({ bytes: 1000, usecs: 100_000 }, true);
    c.remaining = 0;
    k.add(1);
    expect(c.exceeded(1500)).toBe(true);
    k.add(10);
    c.set({ bytes: 200_000, usecs: 100_000 });
    expect(c.throttled).toBe(false);
    expect(c.remaining).toBe(200_000);
    expect(c.heldUs).toBe(10_000);
    // No timer pending: remaining is clamped down, never raised.
    c.set({ bytes: 5000, usecs: 100_000 });
    expect(c.remaining).toBe(5000);
    c.set({ bytes: 8000, usecs: 100_000 });
    expect(c.remaining).toBe(5000);
    // Back to unlimited.
    c.set(null);
    expect(c.exceeded(1500)).toBe(false);
    expect(c.remaining).toBe(Infinity);
  });
});

describe("tx path with a rate limit", () => {
  const DOM = 7;
  const scratch = new WorkerScratch(64);
  afterAll(() => scratch.free());

  test("a packet over the credit stays unconsumed (no response, no final check) until the timer fires; throttled time is counted", () => {
    const k = clock(0);
    const r = ringPage();
    const gnt = new FakeGrants(DOM);
    const tx = new TxPath(r.buf, DOM, { sg: false, gso: false }, null, { rate: { bytes: 3000, usecs: 20000 }, clock: k.now });
    const peer = new RecordingPeer();
    const c = counters();
    const slot = (i: number) => 64 + (i & 255) * 12;
    for (let i = 0; i < 5; i++) {
      gnt.grant(100 + i).set(frame(1000, i));
      r.dv.setUint32(slot(i), 100 + i, true);
      r.dv.setUint16(slot(i) + 8, i, true);
      r.dv.setUint16(slot(i) + 10, 1000, true);
    }
    Atomics.store(r.w, 0, 5);
    k.at(2);
    let p = tx.service(64, scratch, gnt, peer, c);
    expect([p.packets, p.slots, p.throttled, p.more]).toEqual([3, 3, true, false]);
    expect(tx.reqCons).toBe(3);
    expect(tx.finalCheck()).toBe(false);
    expect(tx.credit.timerDueIn(k.now())).toBe(18);
    // A notify while held: nothing is consumed.
    k.at(10);
    p = tx.service(64, scratch, gnt, peer, c);
    expect([p.packets, p.slots, p.throttled]).toEqual([0, 0, true]);
    k.at(20);
    expect(tx.credit.due(k.now())).toBe(true);
    p = tx.service(64, scratch, gnt, peer, c);
    expect([p.packets, p.slots, p.throttled]).toEqual([2, 2, false]);
    expect(peer.sent.map((f) => f.length)).toEqual([1000, 1000, 1000, 1000, 1000]);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push(r.dv.getInt16(slot(i) + 2, true));
    expect(statuses).toEqual([NETIF_RSP_OKAY, NETIF_RSP_OKAY, NETIF_RSP_OKAY, NETIF_RSP_OKAY, NETIF_RSP_OKAY]);
    expect([c.tx_throttles, c.tx_throttled_usecs]).toEqual([1, 18000]);
    expect(tx.finalCheck()).toBe(false); // nothing left to do, events back on
  });
});
