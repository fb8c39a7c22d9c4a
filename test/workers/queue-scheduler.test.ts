// The scheduler serves only the directions that have work: a split queue's tx port runs its tx
// path only, its rx port its rx path only, a shared port both; a peer's frames run rx only; the
// final check brings back a queue whose frontend posted meanwhile; one unmask per wake-up.
import { expect, test } from "bun:test";
import { QueueScheduler, type QueueReporter } from "../../workers/queue-scheduler.ts";
import type { ServedQueue } from "../../workers/served-queue.ts";
import { Timers } from "../../workers/timers.ts";

interface Fake {
  q: ServedQueue;
  calls: string[];
  postedTx: boolean;
}

function fakeQueue(txPort: number, rxPort: number): Fake {
  const calls: string[] = [];
  const f: Fake = { q: null as never, calls, postedTx: false };
  const pass = { packets: 0, slots: 0, notify: false, more: false, fault: null, carrier: 0 };
  const counters = new Proxy({ flush: () => calls.push("flush"), ref: { index: 0, generation: 1 } } as Record<string, unknown>, {
    get: (o, k) => (k in o ? o[k as string] : 0),
    set: (o, k, v) => ((o[k as string] = v), true),
  });
  f.q = {
    name: "vif1.0",
    localTxPort: txPort,
    localRxPort: rxPort,
    disabled: false,
    peer: { kind: "null", wake: "none" },
    peerReady: false,
    txPending: false,
    rxPending: false,
    scheduled: false,
    stallTimer: null,
    creditTimer: null,
    creditDueIn: () => -1,
    creditDue: () => false,
    ctrl: null,
    counters,
    tx: {
      service: () => (calls.push("tx"), pass),
      finalCheck: () => {
        const posted = f.postedTx;
        f.postedTx = false;
        return posted;
      },
    },
    rx: { service: (peer: unknown) => (calls.push(peer ? "rx+peer" : "rx"), pass), stalled: false, stallDueIn: () => 0 },
  } as unknown as ServedQueue;
  return f;
}

function rig() {
  let pending: number[] = [];
  const unmasked: number[][] = [];
  const ev = {
    readPending: (into: Uint32Array) => {
      pending.forEach((p, i) => (into[i] = p));
      const n = pending.length;
      pending = [];
      return n;
    },
    unmask: (ports: Uint32Array, n: number) => unmasked.push([...ports.subarray(0, n)]),
    notify: () => {},
  };
  const report: QueueReporter = { disable: () => {}, carrierChanged: () => {}, hashChanged: () => {}, mcastChanged: () => {} };
  const timers = new Timers();
  const s = new QueueScheduler(ev as never, {} as never, {} as never, 64, timers, null, report);
  return { s, timers, fire: (...ports: number[]) => (pending = ports), unmasked };
}

test("split event channels: a tx kick serves tx only, an rx kick rx only", () => {
  const { s, fire, unmasked } = rig();
  const f = fakeQueue(7, 8);
  s.add(f.q, "vif1.0");
  s.serve(); // the first serve after connect looks at both rings
  expect(f.calls.filter((c) => c !== "flush")).toEqual(["tx", "rx"]);
  f.calls.length = 0;
  fire(7);
  s.portsFired();
  s.serve();
  expect(f.calls.filter((c) => c !== "flush")).toEqual(["tx"]);
  f.calls.length = 0;
  fire(8);
  s.portsFired();
  s.serve();
  expect(f.calls.filter((c) => c !== "flush")).toEqual(["rx"]);
  expect(unmasked).toEqual([[7], [8]]);
});

test("one event channel for both rings: its kick serves both directions", () => {
  const { s, fire } = rig();
  const f = fakeQueue(9, 9);
  s.add(f.q, "vif1.0");
  s.serve();
  f.calls.length = 0;
  fire(9);
  s.portsFired();
  s.serve();
  expect(f.calls.filter((c) => c !== "flush")).toEqual(["tx", "rx"]);
});

test("a peer with frames serves rx with the peer, never tx", () => {
  const { s } = rig();
  const f = fakeQueue(7, 8);
  s.add(f.q, "vif1.0");
  s.serve();
  f.calls.length = 0;
  s.peerWoke(f.q);
  s.serve();
  expect(f.calls.filter((c) => c !== "flush")).toEqual(["rx+peer"]);
  expect(s.busy).toBe(false);
});

test("the final check reschedules tx when the frontend posted after the pass", () => {
  const { s } = rig();
  const f = fakeQueue(7, 8);
  s.add(f.q, "vif1.0");
  f.postedTx = true;
  s.serve();
  expect(s.busy).toBe(true);
  f.calls.length = 0;
  s.serve();
  expect(f.calls.filter((c) => c !== "flush")).toEqual(["tx"]);
  expect(s.busy).toBe(false);
});

test("a removed queue's ports fire into nothing", () => {
  const { s, fire, unmasked } = rig();
  const f = fakeQueue(7, 8);
  s.add(f.q, "vif1.0");
  s.remove(f.q);
  fire(7, 8);
  s.portsFired();
  s.serve();
  expect(f.calls).toEqual([]);
  expect(unmasked).toEqual([]);
});

test("a counter flush skipped while /vifs read the slot is retried shortly, so an idle queue's last batch still gets published", () => {
  const { s, timers } = rig();
  const f = fakeQueue(7, 8);
  // The slot was busy for the flush after the first pass, free afterwards.
  const results = [false, true];
  const flushes: boolean[] = [];
  Object.assign(f.q.counters, {
    attached: true,
    flush: () => {
      const r = results.shift() ?? true;
      flushes.push(r);
      return r;
    },
  });
  s.add(f.q, "vif1.0");
  s.serve();
  expect(flushes).toEqual([false]);
  // Nothing else happens on this queue: only the retry publishes what the skipped flush did not.
  const due = timers.timeout(performance.now());
  expect(due).toBeGreaterThanOrEqual(0);
  expect(due).toBeLessThanOrEqual(5);
  timers.fireDue(performance.now() + 10);
  expect(flushes).toEqual([false, true]);
  expect(timers.timeout(performance.now())).toBe(-1);
});
