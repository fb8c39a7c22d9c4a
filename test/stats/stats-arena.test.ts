import { describe, expect, test } from "bun:test";
import {
  StatsArena,
  StatsError,
  VIF_COUNTERS,
  VIF_COUNTER_NAMES,
  VifCounters,
  derivedFigures,
  readVifStats,
  sumVifStats,
  zeroVifStats,
} from "../../src/stats/index.ts";
import { S_READERS_WAITING, S_SEQ } from "../../src/stats/arena-layout.ts";

const arena = () => StatsArena.create({ workers: 2, slotsPerWorker: 3 });

describe("the counter table", () => {
  test("has every counter the data path and /vifs rely on, each once", () => {
    for (const name of [
      "tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "tx_errors", "rx_errors", "tx_drops", "rx_drops",
      "tx_batches", "rx_batches", "ffi_calls", "syscalls", "notifies_sent", "events_received", "rx_queue_bytes", "carrier",
    ]) {
      expect(VIF_COUNTER_NAMES).toContain(name as any);
    }
    expect(new Set(VIF_COUNTER_NAMES).size).toBe(VIF_COUNTER_NAMES.length);
    expect(VIF_COUNTERS.filter((c) => c.kind === "gauge").map((c) => c.name)).toEqual(["rx_queue_bytes", "carrier"]);
  });
});

describe("publishing and reading", () => {
  test("a flushed value reads back exactly, up to 2^53 - 1", () => {
    const a = arena();
    const c = new VifCounters(a, a.allocate(1));
    const values = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER];
    for (const [i, v] of values.entries()) c[VIF_COUNTER_NAMES[i]] = v;
    expect(c.flush()).toBe(true);
    const got = readVifStats(a, c.ref)!;
    expect(VIF_COUNTER_NAMES.slice(0, values.length).map((n) => got[n])).toEqual(values);
  });

  test("increments are invisible until flush", () => {
    const a = arena();
    const c = new VifCounters(a, a.allocate(0));
    c.tx_packets += 3;
    expect(readVifStats(a, c.ref)!.tx_packets).toBe(0);
    c.flush();
    expect(readVifStats(a, c.ref)!.tx_packets).toBe(3);
  });

  test("a new VifCounters continues from the slot's published totals (a vif moving worker)", () => {
    const a = arena();
    const ref = a.allocate(0);
    const first = new VifCounters(a, ref);
    first.rx_bytes = 1500;
    first.flush();
    const second = new VifCounters(a, ref);
    expect(second.rx_bytes).toBe(1500);
  });

  test("a worker attached from the buffer alone sees the same slots", () => {
    const a = arena();
    const c = new VifCounters(a, a.allocate(0));
    c.carrier = 1;
    c.flush();
    expect(readVifStats(StatsArena.attach(a.buffer), c.ref)!.carrier).toBe(1);
  });

  test("a buffer that is not an arena is refused on attach", () => {
    expect(() => StatsArena.attach(new SharedArrayBuffer(4096))).toThrow(StatsError);
    expect(() => StatsArena.attach(new SharedArrayBuffer(8))).toThrow(StatsError);
  });
});

describe("writers and readers sharing a slot", () => {
  test("a flush stands back while a reader is waiting for a gap, and resumes after", () => {
    const a = arena();
    const c = new VifCounters(a, a.allocate(0));
    const waiting = a.slotBase(c.ref.index) + S_READERS_WAITING;
    c.tx_packets = 1;
    Atomics.add(a.words, waiting, 1);
    expect(c.flush()).toBe(false);
    Atomics.sub(a.words, waiting, 1);
    expect(c.flush()).toBe(true);
    expect(readVifStats(a, c.ref)!.tx_packets).toBe(1);
  });

  test("a flush does not write while another writer holds the slot", () => {
    const a = arena();
    const c = new VifCounters(a, a.allocate(0));
    const seq = a.slotBase(c.ref.index) + S_SEQ;
    c.tx_packets = 1;
    Atomics.add(a.words, seq, 1); // odd: held
    expect(c.flush()).toBe(false);
    Atomics.add(a.words, seq, 1);
    expect(readVifStats(a, c.ref)!.tx_packets).toBe(0);
    expect(c.attached).toBe(true);
  });
});

describe("slots and generations", () => {
  test("each worker allocates from its own slots until they run out", () => {
    const a = arena();
    const refs = [a.allocate(1), a.allocate(1), a.allocate(1)];
    expect(refs.map((r) => a.workerOf(r))).toEqual([1, 1, 1]);
    expect(new Set(refs.map((r) => r.index)).size).toBe(3);
    expect(() => a.allocate(1)).toThrow("worker 1 has no free slot");
    expect(a.workerOf(a.allocate(0))).toBe(0);
    expect(() => a.allocate(2)).toThrow("no worker 2");
  });

  test("a released slot reads as gone through the old ref", () => {
    const a = arena();
    const ref = a.allocate(0);
    a.release(ref);
    expect(readVifStats(a, ref)).toBeNull();
  });

  test("a reused slot is zeroed and never read through the previous tenant's ref", () => {
    const a = StatsArena.create({ workers: 1, slotsPerWorker: 1 });
    const old = a.allocate(0);
    const c = new VifCounters(a, old);
    c.tx_packets = 99;
    c.flush();
    a.release(old);
    const fresh = a.allocate(0);
    expect(fresh.index).toBe(old.index);
    expect(fresh.generation).not.toBe(old.generation);
    expect(readVifStats(a, old)).toBeNull();
    expect(readVifStats(a, fresh)!.tx_packets).toBe(0);
  });

  test("a stale writer's flush does not touch the slot's new tenant", () => {
    const a = StatsArena.create({ workers: 1, slotsPerWorker: 1 });
    const old = a.allocate(0);
    const stale = new VifCounters(a, old);
    a.release(old);
    const fresh = a.allocate(0);
    stale.tx_packets = 1234;
    expect(stale.flush()).toBe(false);
    expect(stale.attached).toBe(false);
    expect(readVifStats(a, fresh)!.tx_packets).toBe(0);
  });

  test("VifCounters refuses a ref that is not allocated", () => {
    const a = arena();
    const ref = a.allocate(0);
    a.release(ref);
    expect(() => new VifCounters(a, ref)).toThrow(StatsError);
  });

  test("resetWorker frees a slot its dead writer left locked mid-flush", () => {
    const a = arena();
    const ref = a.allocate(1);
    const base = a.slotBase(ref.index);
    Atomics.add(a.words, base + S_SEQ, 1); // the seqlock is now odd, as if the worker died mid-flush
    a.resetWorker(1);
    expect(readVifStats(a, ref)).toBeNull();
    expect(a.allocate(1).index).toBe(ref.index);
  });

  test("slotsInUse lists exactly the allocated slots", () => {
    const a = arena();
    const x = a.allocate(0);
    const y = a.allocate(1);
    a.release(a.allocate(0));
    expect(a.slotsInUse()).toEqual([x, y]);
  });
});

describe("sums and derived figures", () => {
  test("sumVifStats adds counters and gauges element-wise", () => {
    const one = { ...zeroVifStats(), tx_packets: 2, carrier: 1 };
    const two = { ...zeroVifStats(), tx_packets: 3, carrier: 1, rx_queue_bytes: 100 };
    expect(sumVifStats([one, two])).toEqual({ ...zeroVifStats(), tx_packets: 5, carrier: 2, rx_queue_bytes: 100 });
    expect(sumVifStats([])).toEqual(zeroVifStats());
  });

  test("costs per packet and per MiB count both directions, and are 0 before any packet", () => {
    const s = { ...zeroVifStats(), tx_packets: 30, rx_packets: 10, tx_bytes: 3 * 1048576, rx_bytes: 1048576, ffi_calls: 4, syscalls: 2, notifies_sent: 8, events_received: 6 };
    expect(derivedFigures(s)).toEqual({
      ffi_calls_per_packet: 0.1,
      syscalls_per_packet: 0.05,
      notifies_sent_per_packet: 0.2,
      events_received_per_packet: 0.15,
      ffi_calls_per_mb: 1,
      syscalls_per_mb: 0.5,
      notifies_sent_per_mb: 2,
      events_received_per_mb: 1.5,
    });
    const none = derivedFigures(zeroVifStats());
    expect(Object.values(none).every((v) => v === 0)).toBe(true);
    expect(Object.keys(none)).toHaveLength(8);
  });
});
