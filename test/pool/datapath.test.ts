// The data path through the pool on the simulated host, fake frontends as guests, switch peers:
// every hostile request a guest can write, each time checking that the OTHER vifs keep forwarding
// with nothing lost; the rx queue and carrier of a guest that never refills; FFI calls and syscalls
// per packet falling as batches grow.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";
import { createWorkerPool, Pool, type ConnectedVif, type VifFault } from "../../src/pool/index.ts";
import { createDomain } from "../../src/sim/hypervisor/index.ts";
import { readVifStats, StatsArena, type VifStats } from "../../src/stats/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data } from "../../src/xen/netif.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";
import { readFileSync } from "node:fs";
import { collect, FakeFrontend, forwards, frames, macOf, workerThreads } from "./fake-frontend.ts";

let host: ReturnType<typeof freshHost>;
beforeAll(() => {
  host = freshHost("datapath");
});
afterAll(() => host.cleanup());

interface Rig {
  pool: Pool;
  stats: StatsArena;
  lines: string[];
  faults: VifFault[];
  close(): Promise<void>;
  guest(n: number, over?: Partial<ReturnType<FakeFrontend["spec"]>>): Promise<{ fe: FakeFrontend; c: ConnectedVif; mac: Uint8Array }>;
}

async function rig(o: { workers?: number; rxStallMs?: number; rxQueueBytes?: number; budget?: number } = {}): Promise<Rig> {
  const workers = o.workers ?? 2;
  const stats = StatsArena.create({ workers, slotsPerWorker: 8 });
  const lines: string[] = [];
  const pool = (await createWorkerPool({
    platform: { kind: "sim", dir: host.dir, domid: 0 },
    workers,
    stats,
    budget: o.budget,
    rxStallMs: o.rxStallMs,
    rxQueueBytes: o.rxQueueBytes,
    log: createLogger({ level: "debug", format: "text", write: (l) => lines.push(l) }),
  })) as Pool;
  const faults: VifFault[] = [];
  pool.onFault((f) => faults.push(f));
  const fes: FakeFrontend[] = [];
  return {
    pool,
    stats,
    lines,
    faults,
    async guest(n, over = {}) {
      const fe = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }));
      fes.push(fe);
      const c = await pool.connect(fe.spec({ key: `g${n}`, name: `vif${fe.domid}.0`, peer: { kind: "switch", name: `g${n}`, fd: -1 }, ...over }));
      return { fe, c, mac: macOf(n) };
    },
    async close() {
      await pool.close();
      for (const fe of fes) fe.close();
    },
  };
}

async function stat(r: Rig, c: ConnectedVif, done: (s: VifStats) => boolean): Promise<VifStats> {
  for (let i = 0; i < 3000; i++) {
    const s = readVifStats(r.stats, c.statsSlot);
    if (s && done(s)) return s;
    await Bun.sleep(1);
  }
  return readVifStats(r.stats, c.statsSlot)!;
}

/** Waits for a log line containing `text` (worker events reach the main thread asynchronously). */
async function line(r: Rig, text: string): Promise<void> {
  for (let i = 0; i < 2000 && !r.lines.some((l) => l.includes(text)); i++) await Bun.sleep(1);
  expect(r.lines.filter((l) => l.includes(text)).length).toBe(1);
}

describe("a hostile guest leaves the others forwarding, nothing lost", () => {
  const cases: [string, (h: FakeFrontend) => Promise<void> | void, { fault?: RegExp; responses?: { id: number; status: number }[] }][] = [
    ["tx req_prod far ahead", (h) => h.setReqProd(0x1300), { fault: /^tx req_prod 0x1300 is more than a ring ahead of 0x0$/ }],
    ["rx req_prod far ahead", (h) => h.setRxReqProd(0x900), { fault: /^rx req_prod 0x900 is more than a ring ahead of 0x0$/ }],
    ["a bad gref", (h) => void h.postRawTx([{ id: 1, gref: 60000, size: 60 }]), { responses: [{ id: 1, status: NETIF_RSP_ERROR }] }],
    [
      "a grant to another domain",
      (h) => {
        const f = h.guest.allocPage();
        void h.postRawTx([{ id: 2, gref: h.guest.grantAccess(h.domid + 1000, f, true), size: 60 }]);
      },
      { responses: [{ id: 2, status: NETIF_RSP_ERROR }] },
    ],
    // Fatal, as netback's "Cross page boundary" (xenvif_fatal_tx_err).
    ["a first slot crossing its page (offset 4000, size 200)", (h) => void h.postRawTx([{ id: 3, offset: 4000, size: 200 }]), { fault: /^tx packet at 0x0: its first slot at offset 4000 with 200 bytes crosses its page$/ }],
    ["size under 14", (h) => void h.postRawTx([{ id: 4, size: 13 }]), { responses: [{ id: 4, status: NETIF_RSP_ERROR }] }],
    [
      "more_data without feature-sg",
      (h) => void h.postRawTx([{ id: 5, size: 2000, flags: NETTXF_more_data }, { id: 6, size: 500 }]),
      { responses: [{ id: 5, status: NETIF_RSP_ERROR }, { id: 6, status: NETIF_RSP_ERROR }] },
    ],
    [
      "extra_info without GSO",
      (h) => h.postTx([7], { extra: true }),
      { responses: [{ id: 7, status: NETIF_RSP_ERROR }, { id: 0, status: NETIF_RSP_NULL }] },
    ],
  ];
  for (const [what, act, want] of cases) {
    test(what, async () => {
      const r = await rig();
      try {
        const h = await r.guest(1); // worker 0
        const g1 = await r.guest(2); // worker 1
        const g2 = await r.guest(3); // worker 0, beside the hostile one
        expect([h.c.worker, g1.c.worker, g2.c.worker]).toEqual([0, 1, 0]);
        g2.fe.postRx(256);
        await forwards(g1, g2, 50, 1);
        await act(h.fe);
        if (want.fault) {
          for (let i = 0; i < 500 && r.faults.length === 0; i++) await Bun.sleep(2);
          expect(r.faults).toEqual([{ key: "g1", errno: 71, message: expect.stringMatching(want.fault) }]);
        } else {
          const got = await h.fe.responses(want.responses!.length);
          expect(got.map((x) => (x.status === NETIF_RSP_NULL ? { id: 0, status: x.status } : x))).toEqual(want.responses!);
          const s = await stat(r, h.c, (s) => s.tx_errors > 0);
          expect(s.tx_errors).toBe(want.responses!.filter((x) => x.status === NETIF_RSP_ERROR).length);
          expect(r.faults).toEqual([]);
        }
        await forwards(g1, g2, 200, 2, 50);
        const s2 = await stat(r, g2.c, (s) => s.rx_packets >= 250);
        expect(s2.rx_drops).toBe(0);
        expect(s2.rx_errors).toBe(0);
      } finally {
        await r.close();
      }
    });
  }

  test("copy once: a request the guest rewrites after its response is never read again; what went out is what was first posted", async () => {
    const r = await rig();
    try {
      const h = await r.guest(1);
      const g1 = await r.guest(2);
      const g2 = await r.guest(3);
      g2.fe.postRx(256);
      const [f] = frames(h.mac, 1, 9, () => 300);
      const at = h.fe.sendFrames([f], 40);
      expect(await h.fe.responses(1)).toEqual([{ id: 40, status: NETIF_RSP_OKAY }]);
      // Rewrite the answered slot (and poke the backend) before the next batch: a backend reading
      // slots twice, or reading past req_cons, would send a 13-byte frame or answer id 999.
      h.fe.rewriteTx(at, { size: 13, id: 999, flags: NETTXF_more_data });
      h.fe.guest.evtchn.notify(h.fe.txPort);
      const [f2] = frames(h.mac, 1, 10, () => 200);
      h.fe.sendFrames([f2], 41);
      expect(await h.fe.responses(1)).toEqual([{ id: 41, status: NETIF_RSP_OKAY }]);
      expect(await collect(g2.fe, h.mac, 2)).toEqual([f, f2]);
      await forwards(g1, g2, 20, 3);
    } finally {
      await r.close();
    }
  });

  test("an rx ring never refilled: the queue stays within its bytes, drops are counted, the carrier goes off after the stall time and back on when it posts", async () => {
    const r = await rig({ rxStallMs: 300, rxQueueBytes: 32 * 1024 });
    try {
      const h = await r.guest(1); // posts no rx buffers
      const g1 = await r.guest(2);
      const g2 = await r.guest(3);
      g2.fe.postRx(256);
      await forwards(g1, g2, 200, 4); // flooded to h too: 200 frames of ~60..1460 bytes
      const s = await stat(r, h.c, (s) => s.rx_drops > 0);
      expect(s.rx_queue_bytes).toBeLessThanOrEqual(32 * 1024);
      expect(s.rx_queue_bytes).toBeGreaterThan(32 * 1024 - 1500);
      expect(s.rx_packets).toBe(0);
      expect(s.carrier).toBe(1);
      const queued = s.rx_queue_bytes;
      // No frames and no event: the worker wakes at the deadline by itself.
      const off = await stat(r, h.c, (s) => s.carrier === 0);
      expect(off.carrier).toBe(0);
      expect(off.rx_queue_bytes).toBe(0);
      expect(off.rx_drops).toBe(200); // everything: the queue went with the carrier
      await line(r, `vif${h.fe.domid}.0: guest rx stalled`);
      expect(queued).toBeGreaterThan(0);
      await forwards(g1, g2, 20, 5, 200);
      // The guest posts again: carrier on, and new frames are delivered.
      h.fe.postRx(64);
      const on = await stat(r, h.c, (s) => s.carrier === 1);
      expect(on.carrier).toBe(1);
      await line(r, `vif${h.fe.domid}.0: guest rx ready: carrier on`);
      await forwards(g1, g2, 10, 6, 220);
      expect((await collect(h.fe, g1.mac, 10)).length).toBe(10);
    } finally {
      await r.close();
    }
  });
});

describe("peers", () => {
  test("disconnect closes the vif's switch port (a reconnect reopens it); a killed worker's ports are closed for it and its vifs forward again elsewhere", async () => {
    const r = await rig();
    try {
      const a = await r.guest(1); // worker 0
      const b = await r.guest(2); // worker 1
      b.fe.postRx(256);
      await forwards(a, b, 10, 1);
      await r.pool.disconnect("g1");
      const again = await r.pool.connect(a.fe.spec({ key: "g1", name: `vif${a.fe.domid}.0`, peer: { kind: "switch", name: "g1", fd: -1 } }));
      expect(again.worker).toBe(0);
      await forwards(a, b, 10, 2, 10);
      const moved = new Promise<number>((res) => r.pool.onWorkerLost((_, m) => res(m.length)));
      r.pool.killWorker(0);
      expect(await moved).toBe(1);
      expect(r.faults).toEqual([]);
      expect(r.pool.snapshot().vifs).toEqual({ g1: 1, g2: 1 });
      await forwards(a, b, 20, 3, 20);
    } finally {
      await r.close();
    }
  });
});

describe("notification suppression", () => {
  test("a frontend that leaves rsp_event behind gets its responses pushed but no further events; req_event set at req_cons + 1", async () => {
    const r = await rig({ workers: 1 });
    try {
      const a = await r.guest(1, { peer: { kind: "null", name: "null", fd: -1 } });
      // rsp_event stays 1: only the push that passes index 1 may notify.
      for (let k = 0; k < 10; k++) {
        a.fe.sendFrames(frames(a.mac, 5, k, () => 60), k * 5);
        for (let i = 0; i < 2000 && a.fe.headers().tx.rspProd !== (k + 1) * 5; i++) await Bun.sleep(1);
        expect(a.fe.headers().tx.rspProd).toBe((k + 1) * 5);
      }
      const s = await stat(r, a.c, (s) => s.tx_packets === 50);
      expect(s.notifies_sent).toBe(1);
      expect(a.fe.headers().tx.reqEvent).toBe(51);
      // Now it asks again: the next push notifies.
      const before = s.notifies_sent;
      expect(a.fe.takeResponses().length).toBe(50); // sets rsp_event = 51
      a.fe.sendFrames(frames(a.mac, 1, 99, () => 60), 50);
      expect(await a.fe.responses(1)).toEqual([{ id: 50, status: NETIF_RSP_OKAY }]);
      expect((await stat(r, a.c, (s) => s.notifies_sent > before)).notifies_sent).toBe(before + 1);
    } finally {
      await r.close();
    }
  });
});

/** CPU ticks (utime + stime) used so far by the pool's worker threads. */
function workerTicks(): number {
  let t = 0;
  for (const w of workerThreads()) {
    try {
      const f = readFileSync(`/proc/self/task/${w.tid}/stat`, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
      t += Number(rest[11]) + Number(rest[12]);
    } catch {}
  }
  return t;
}

describe("idle", () => {
  test("a vif waiting out its rx stall costs no CPU: the worker sleeps in poll() until the deadline", async () => {
    const r = await rig({ rxStallMs: 1500 });
    try {
      const h = await r.guest(1); // never posts rx buffers
      const g1 = await r.guest(2);
      const g2 = await r.guest(3);
      g2.fe.postRx(256);
      await forwards(g1, g2, 20, 1);
      expect((await stat(r, h.c, (s) => s.rx_queue_bytes > 0)).carrier).toBe(1);
      const t0 = workerTicks();
      await Bun.sleep(700);
      expect(workerTicks() - t0).toBeLessThan(10); // ticks of 10 ms: a spinning worker would use ~70
      expect(workerThreads().every((t) => t.state === "S")).toBe(true);
      expect((await stat(r, h.c, (s) => s.carrier === 0)).carrier).toBe(0);
    } finally {
      await r.close();
    }
  });
});

describe("event channels", () => {
  test("split event channels: tx completions notify the tx port, rx deliveries the rx port", async () => {
    const r = await rig({ workers: 1 });
    const fe = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }), { split: true });
    const peerFe = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }));
    try {
      const stats = r.stats;
      const a = await r.pool.connect(fe.spec({ key: "s1", peer: { kind: "switch", name: "s1", fd: -1 } }));
      await r.pool.connect(peerFe.spec({ key: "s2", name: `vif${peerFe.domid}.0`, peer: { kind: "switch", name: "s2", fd: -1 } }));
      expect(fe.txPort).not.toBe(fe.rxPort);
      fe.postRx(8);
      // tx: only the tx port fires
      fe.sendFrames(frames(macOf(1), 1, 1), 1);
      expect(await fe.waitEvent()).toEqual([fe.txPort]);
      expect(fe.takeResponses()).toEqual([{ id: 1, status: NETIF_RSP_OKAY }]);
      // rx: a frame from the other vif fires only the rx port
      const [f] = frames(macOf(2), 1, 2);
      peerFe.sendFrames([f], 1);
      expect(await fe.waitEvent()).toEqual([fe.rxPort]);
      expect(fe.takeRx().map((x) => x.frame)).toEqual([f]);
      const s = readVifStats(stats, a.statsSlot)!;
      expect(s.notifies_sent).toBeGreaterThanOrEqual(2);
    } finally {
      await r.close();
      fe.close();
      peerFe.close();
    }
  });
});

describe("batching", () => {
  test("FFI calls and syscalls per packet fall as the batch grows (< 0.1 per packet at 64)", async () => {
    const r = await rig({ workers: 1, budget: 64 });
    try {
      const a = await r.guest(1, { peer: { kind: "null", name: "null", fd: -1 } });
      const ratios: number[] = [];
      let id = 0;
      for (const n of [1, 8, 64]) {
        const before = await stat(r, a.c, () => true);
        const rounds = 10;
        for (let k = 0; k < rounds; k++) {
          // All n posted before one notify: the worker finds them in one wake-up.
          const fs = frames(a.mac, n, k, () => 60);
          a.fe.sendFrames(fs, id);
          id += n;
          await a.fe.responses(n);
        }
        const after = await stat(r, a.c, (s) => s.tx_packets === before.tx_packets + n * rounds);
        const pk = after.tx_packets - before.tx_packets;
        ratios.push((after.ffi_calls - before.ffi_calls) / pk, (after.syscalls - before.syscalls) / pk);
      }
      const [f1, s1, f8, s8, f64, s64] = ratios;
      expect(f8).toBeLessThan(f1);
      expect(f64).toBeLessThan(f8);
      expect(s8).toBeLessThan(s1);
      expect(s64).toBeLessThan(s8);
      expect(f64).toBeLessThan(0.1);
      expect(s64).toBeLessThan(0.1);
    } finally {
      await r.close();
    }
  });
});
