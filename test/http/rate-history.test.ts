// The dashboard's rate history: rates from counter deltas per second, a window that stays bounded,
// vifs forgotten once gone, `since` returning only newer points, and an idle vif costing no reads.
import { expect, test } from "bun:test";
import { RateHistory, type RateSource } from "../../src/http/rate-history.ts";
import { StatsArena, VifCounters, type SlotRef, type VifCounterName } from "../../src/stats/index.ts";

/** An arena with named vifs whose counters the test sets, as a worker's flush would. */
function rig(workers = 1, slotsPerWorker = 4) {
  const arena = StatsArena.create({ workers, slotsPerWorker });
  const held = new Map<string, { ref: SlotRef; c: VifCounters }>();
  let namesCalls = 0;
  const source: RateSource = {
    arena,
    names: () => {
      namesCalls++;
      return new Map([...held].map(([name, v]) => [v.ref.index, { generation: v.ref.generation, name }]));
    },
  };
  return {
    arena,
    source,
    get namesCalls() {
      return namesCalls;
    },
    add(name: string, worker = 0) {
      const ref = arena.allocate(worker);
      held.set(name, { ref, c: new VifCounters(arena, ref) });
    },
    set(name: string, values: Partial<Record<VifCounterName, number>>) {
      const v = held.get(name)!;
      for (const [k, n] of Object.entries(values)) v.c[k as VifCounterName] = n;
      expect(v.c.flush()).toBe(true);
    },
    remove(name: string) {
      arena.release(held.get(name)!.ref);
      held.delete(name);
    },
    /** The vif moves to another slot with its totals, as when its worker dies. */
    move(name: string, worker: number) {
      const old = held.get(name)!;
      const ref = arena.allocate(worker);
      const c = new VifCounters(arena, ref);
      c.tx_packets = old.c.tx_packets;
      c.tx_bytes = old.c.tx_bytes;
      expect(c.flush()).toBe(true);
      held.set(name, { ref, c });
      arena.release(old.ref);
    },
  };
}

test("rates are counter deltas per second each way, bits from bytes, drops from both directions; the total sums the vifs", () => {
  const r = rig();
  const h = new RateHistory(1000, 60);
  r.add("vif1.0");
  r.add("vif2.0");
  r.set("vif1.0", { tx_packets: 100, tx_bytes: 1000 });
  h.sample(10_000, r.source);
  r.set("vif1.0", { tx_packets: 300, tx_bytes: 3000, rx_packets: 10, rx_bytes: 640, tx_drops: 4, rx_drops: 2 });
  r.set("vif2.0", { rx_packets: 50 });
  h.sample(12_000, r.source);
  const v = h.view();
  expect(v.vifs["vif1.0"]).toEqual({ t: [12_000], tx_pps: [100], rx_pps: [5], tx_bps: [8000], rx_bps: [2560], drops_ps: [3] });
  expect(v.vifs["vif2.0"]!.rx_pps).toEqual([25]);
  expect(v.total).toEqual({ t: [12_000], tx_pps: [100], rx_pps: [30], tx_bps: [8000], rx_bps: [2560], drops_ps: [3] });
  expect(v.direction).toContain("tx = sent by the guest");
});

test("the window keeps its last windowSeconds of points; since= returns newer points only; a vif that is gone is forgotten", () => {
  const r = rig();
  r.add("vif1.0");
  const h = new RateHistory(1000, 10);
  for (let i = 0; i <= 50; i++) {
    r.set("vif1.0", { tx_packets: i * 7 });
    h.sample(i * 1000, r.source);
  }
  const all = h.view().vifs["vif1.0"]!;
  expect(all.t.length).toBe(10);
  expect(all.t[0]).toBe(41_000);
  expect(all.tx_pps.every((x) => x === 7)).toBe(true);
  expect(h.view(48_000).vifs["vif1.0"]!.t).toEqual([49_000, 50_000]);
  expect(h.view().total.t.length).toBe(10);
  r.remove("vif1.0");
  h.sample(51_000, r.source);
  expect(h.view().vifs).toEqual({});
});

test("an idle vif reads as zero every second, without its counters being read or its points kept", () => {
  const r = rig(1, 2);
  r.add("busy");
  r.add("idle");
  r.set("idle", { tx_packets: 5 });
  const h = new RateHistory(1000, 5);
  let reads = 0;
  const readInto = r.arena.readInto.bind(r.arena);
  r.arena.readInto = (i, out) => {
    reads++;
    return readInto(i, out);
  };
  h.sample(1000, r.source); // every slot read once on first sight
  expect(reads).toBe(2);
  for (let i = 2; i <= 8; i++) {
    r.set("busy", { tx_packets: i * 10 });
    h.sample(i * 1000, r.source);
  }
  expect(reads).toBe(2 + 7); // the busy vif once a sample; the idle one never again
  expect(r.namesCalls).toBe(1); // who holds which slot is asked only when a slot changes hands
  const v = h.view();
  expect(v.vifs.idle).toEqual({ t: [4000, 5000, 6000, 7000, 8000], tx_pps: [0, 0, 0, 0, 0], rx_pps: [0, 0, 0, 0, 0], tx_bps: [0, 0, 0, 0, 0], rx_bps: [0, 0, 0, 0, 0], drops_ps: [0, 0, 0, 0, 0] });
  expect(v.vifs.busy!.tx_pps).toEqual([10, 10, 10, 10, 10]);
  expect(v.total.tx_pps).toEqual([10, 10, 10, 10, 10]);
  // Traffic again after a pause: the rate is over the last second only.
  r.set("idle", { tx_packets: 25 });
  h.sample(9000, r.source);
  expect(h.view(8000).vifs.idle!.tx_pps).toEqual([20]);
});

test("a vif that moves to another worker's slot keeps its history and shows no spike", () => {
  const r = rig(2, 2);
  r.add("vif1.0", 0);
  const h = new RateHistory(1000, 60);
  r.set("vif1.0", { tx_packets: 1000 });
  h.sample(1000, r.source);
  r.set("vif1.0", { tx_packets: 1100 });
  h.sample(2000, r.source);
  r.move("vif1.0", 1);
  h.sample(3000, r.source);
  r.set("vif1.0", { tx_packets: 1150 });
  h.sample(4000, r.source);
  expect(h.view().vifs["vif1.0"]!.tx_pps).toEqual([100, 0, 50]);
});

test("a slot allocated before its vif is named is picked up once it is", () => {
  const r = rig();
  const h = new RateHistory(1000, 60);
  const ref = r.arena.allocate(0); // the pool allocates, then the worker connects
  h.sample(1000, r.source);
  expect(h.view().vifs).toEqual({});
  r.arena.release(ref);
  r.add("vif3.0");
  h.sample(2000, r.source);
  r.set("vif3.0", { rx_packets: 4 });
  h.sample(3000, r.source);
  expect(h.view().vifs["vif3.0"]!.rx_pps).toEqual([4]);
});
