// The seed data path (--datapath seed, workers/seed-tx.ts and seed-rx.ts): QEMU qnic's per-packet
// algorithm, the baseline bench/scenarios/seed.ts measures batching against. It must be correct
// before its figures mean anything: frames intact both ways through the pool's workers and the
// switch, one response per request, hostile requests answered (or the vif disabled) exactly as on
// the batched path, and its per-packet costs (a map and an unmap per frame, a push per response)
// visible in the counters.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";
import { createWorkerPool, Pool, type ConnectedVif, type VifFault } from "../../src/pool/index.ts";
import { createDomain } from "../../src/sim/hypervisor/index.ts";
import type { EventChannelDevice, GrantMapping } from "../../src/platform/types.ts";
import { readVifStats, StatsArena, type VifStats } from "../../src/stats/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data } from "../../src/xen/netif.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { SeedRxPath } from "../../workers/seed-rx.ts";
import { SeedTxPath } from "../../workers/seed-tx.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";
import { collect, FakeFrontend, forwards, frames, macOf } from "../pool/fake-frontend.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

// ---- unit level: the per-packet shape ----

// FakeGrants' map() only throws ("not used" by the batched path): replaced here, not overridden.
const GrantsWithoutMap = FakeGrants as unknown as new (domid: number) => Omit<FakeGrants, "map">;

/** FakeGrants that also maps (one ref at a time, as the seed does), counting maps and unmaps. */
class MappingGrants extends GrantsWithoutMap {
  maps = 0;
  unmaps = 0;
  map(domid: number, refs: readonly number[], _writable: boolean): GrantMapping {
    if (refs.length !== 1) throw new Error(`the seed maps one ref at a time, not ${refs.length}`);
    const page = this.pages.get(refs[0]!);
    if (domid !== this.domid || !page || this.foreign.has(refs[0]!)) throw new Error(`ref ${refs[0]} not granted`);
    this.maps++;
    return { addr: 0, buffer: page.buffer as ArrayBuffer, pages: 1, unmap: () => void this.unmaps++ };
  }
}

function fakeEv(): EventChannelDevice & { sent: number[] } {
  const sent: number[] = [];
  return { sent, fd: -1, reclaimId: -1, bindInterdomain: () => 0, bindUnboundPort: () => 0, unbind() {}, notify: (p: number) => void sent.push(p), readPending: () => 0, unmask() {}, close() {} };
}

describe("seed path, unit", () => {
  const scratch = new WorkerScratch(64);
  afterAll(() => scratch.free());
  const DOM = 9;

  test("tx: one map and unmap and one send per packet; each response pushed on its own and notified when the frontend asks", () => {
    const r = ringPage();
    const gnt = new MappingGrants(DOM);
    const tx = new SeedTxPath(r.buf, DOM);
    const ev = fakeEv();
    tx.notifyTarget = { ev, port: 5 };
    const peer = new RecordingPeer();
    const want = [60, 1514, 14, 333].map((n, i) => frame(n, i));
    want.forEach((f, i) => {
      gnt.grant(100 + i).set(f, 10);
      const off = 64 + i * 12;
      r.dv.setUint32(off, 100 + i, true);
      r.dv.setUint16(off + 4, 10, true);
      r.dv.setUint16(off + 8, 40 + i, true);
      r.dv.setUint16(off + 10, f.length, true);
    });
    Atomics.store(r.w, 0, want.length);
    const c = counters();
    const pass = tx.service(64, scratch, gnt, peer, c);
    expect([pass.packets, pass.slots, pass.notify, pass.more, pass.fault]).toEqual([4, 4, false, false, null]);
    expect([gnt.maps, gnt.unmaps, gnt.calls, peer.sends]).toEqual([4, 4, 0, 4]);
    expect(peer.sent).toEqual(want);
    expect(Atomics.load(r.w, 2)).toBe(4);
    for (let i = 0; i < 4; i++) expect([r.dv.getUint16(64 + i * 12, true), r.dv.getInt16(64 + i * 12 + 2, true)]).toEqual([40 + i, NETIF_RSP_OKAY]);
    expect(ev.sent).toEqual([5]); // rsp_event 1: only the push past index 1 notifies
    expect(c.notifies_sent).toBe(1);
    expect(c.syscalls).toBe(4 * 4 + 1); // map (2) + unmap (2) per packet, one notify
    expect(c.ffi_calls).toBe(4 * 3 + 1); // map, unmap, send per packet, one notify
  });

  test("rx: one frame received at a time, one map per frame, written at offset 2 in the request's slot", () => {
    const r = ringPage();
    const gnt = new MappingGrants(DOM);
    const rx = new SeedRxPath(r.buf, DOM, 64 * 1024, 60_000);
    const ev = fakeEv();
    rx.notifyTarget = { ev, port: 6 };
    const pages = [0, 1, 2].map((i) => gnt.grant(200 + i));
    for (let i = 0; i < 3; i++) {
      r.dv.setUint16(64 + i * 8, 70 + i, true);
      r.dv.setUint32(64 + i * 8 + 4, 200 + i, true);
    }
    Atomics.store(r.w, 0, 3);
    const peer = new RecordingPeer();
    const want = [frame(60, 1), frame(1500, 2), frame(4094, 3), frame(900, 4)];
    peer.give(...want);
    const c = counters();
    const pass = rx.service(peer, 4, scratch, gnt, c);
    expect(pass.fault).toBeNull();
    expect([gnt.maps, gnt.unmaps]).toEqual([3, 3]);
    for (let i = 0; i < 3; i++) {
      const h = 64 + i * 8;
      expect([r.dv.getUint16(h, true), r.dv.getUint16(h + 2, true), r.dv.getUint16(h + 4, true), r.dv.getInt16(h + 6, true)]).toEqual([70 + i, 2, 0, want[i]!.length]);
      expect(pages[i]!.subarray(2, 2 + want[i]!.length)).toEqual(want[i]!);
    }
    expect(c.rx_packets).toBe(3);
    expect(rx.queue.length).toBe(1); // the fourth waits for a buffer
    expect(ev.sent).toEqual([6]);
    rx.close();
  });

  test("rx: a guest that leaves frames waiting past the stall timeout loses its carrier, counted as on the batched path", async () => {
    const r = ringPage();
    const rx = new SeedRxPath(r.buf, DOM, 64 * 1024, 250);
    const peer = new RecordingPeer();
    peer.give(frame(60, 1), frame(60, 2));
    const c = counters();
    rx.service(peer, 4, scratch, new MappingGrants(DOM), c);
    expect(rx.queue.length).toBe(2); // no buffer posted
    expect(rx.stalled).toBe(true);
    expect(Atomics.load(r.w, 1)).toBe(1); // req_event: woken by the first request posted
    await Bun.sleep(260);
    const pass = rx.service(null, 4, scratch, new MappingGrants(DOM), c);
    expect(pass.carrier).toBe(-1);
    expect([c.rx_stalls, c.rx_drops_stall_purge, c.rx_drops, c.carrier, rx.queue.length]).toEqual([1, 2, 2, 0, 0]);
    rx.close();
  });
});

// ---- through the pool: the same workers, platform and switch as the batched path ----

let host: ReturnType<typeof freshHost>;
beforeAll(() => {
  host = freshHost("seedpath");
});
afterAll(() => host.cleanup());

interface Rig {
  pool: Pool;
  stats: StatsArena;
  faults: VifFault[];
  close(): Promise<void>;
  guest(n: number, over?: Partial<ReturnType<FakeFrontend["spec"]>>): Promise<{ fe: FakeFrontend; c: ConnectedVif; mac: Uint8Array }>;
}

async function rig(o: { workers?: number; rxQueueBytes?: number } = {}): Promise<Rig> {
  const workers = o.workers ?? 2;
  const stats = StatsArena.create({ workers, slotsPerWorker: 8 });
  const pool = (await createWorkerPool({
    platform: { kind: "sim", dir: host.dir, domid: 0 },
    workers,
    stats,
    rxQueueBytes: o.rxQueueBytes,
    datapath: "seed",
    log: createLogger({ level: "debug", format: "text", write: () => {} }),
  })) as Pool;
  const faults: VifFault[] = [];
  pool.onFault((f) => faults.push(f));
  const fes: FakeFrontend[] = [];
  return {
    pool,
    stats,
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

describe("seed path through the pool", () => {
  test("frames of 60..1460 B arrive intact both ways, one response per request; a map and an unmap per packet in the counters", async () => {
    const r = await rig();
    try {
      const a = await r.guest(1);
      const b = await r.guest(2);
      expect([a.c.worker, b.c.worker]).toEqual([0, 1]);
      a.fe.postRx(256);
      b.fe.postRx(256);
      await forwards(a, b, 300, 1);
      await forwards(b, a, 300, 2);
      await forwards(a, b, 100, 3, 300);
      const sa = await stat(r, a.c, (s) => s.tx_packets === 400 && s.rx_packets === 300);
      const sb = await stat(r, b.c, (s) => s.tx_packets === 300 && s.rx_packets === 400);
      expect([sa.tx_packets, sa.rx_packets, sb.tx_packets, sb.rx_packets]).toEqual([400, 300, 300, 400]);
      for (const s of [sa, sb]) {
        expect([s.tx_errors, s.rx_errors, s.rx_drops, s.tx_drops]).toEqual([0, 0, 0, 0]);
        // Per packet in either direction: map + mmap, munmap + unmap (4 system calls counted as on Xen).
        expect(s.syscalls / (s.tx_packets + s.rx_packets)).toBeGreaterThanOrEqual(4);
      }
      expect(r.faults).toEqual([]);
    } finally {
      await r.close();
    }
  });

  test("frames arriving before the guest posts rx buffers wait in the queue and are delivered in order once it posts", async () => {
    const r = await rig({ workers: 1 });
    try {
      const a = await r.guest(1);
      const b = await r.guest(2); // no rx buffers yet
      const fs = frames(a.mac, 20, 7);
      a.fe.sendFrames(fs, 0);
      expect((await a.fe.responses(20)).length).toBe(20);
      const s = await stat(r, b.c, (s) => s.rx_queue_bytes > 0);
      expect(s.rx_packets).toBe(0);
      b.fe.postRx(8); // fewer than waiting: the rest follow as it reposts
      expect(await collect(b.fe, a.mac, 20)).toEqual(fs);
      expect((await stat(r, b.c, (s) => s.rx_queue_bytes === 0)).rx_queue_bytes).toBe(0);
    } finally {
      await r.close();
    }
  });

  test("a frontend that leaves rsp_event behind gets every response pushed but one event only", async () => {
    const r = await rig({ workers: 1 });
    try {
      const a = await r.guest(1, { peer: { kind: "null", name: "null", fd: -1 } });
      for (let k = 0; k < 10; k++) {
        a.fe.sendFrames(frames(a.mac, 5, k, () => 60), k * 5);
        for (let i = 0; i < 2000 && a.fe.headers().tx.rspProd !== (k + 1) * 5; i++) await Bun.sleep(1);
        expect(a.fe.headers().tx.rspProd).toBe((k + 1) * 5);
      }
      const s = await stat(r, a.c, (s) => s.tx_packets === 50);
      expect(s.notifies_sent).toBe(1);
      expect(a.fe.headers().tx.reqEvent).toBe(51);
    } finally {
      await r.close();
    }
  });
});

describe("seed path: a hostile guest is answered as on the batched path, the others keep forwarding", () => {
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
    ["extra_info without GSO", (h) => h.postTx([7], { extra: true }), { responses: [{ id: 7, status: NETIF_RSP_ERROR }, { id: 0, status: NETIF_RSP_NULL }] }],
    ["more_data past req_prod", (h) => void h.postRawTx([{ id: 8, size: 2000, flags: NETTXF_more_data }]), { fault: /^tx packet at 0x0 continues past req_prod 0x1$/ }],
    ["an unknown extra-info type", (h) => void h.postRawTx([{ id: 9, size: 60, flags: NETTXF_extra_info }, { id: 0, size: 0, gref: 0 }]), { fault: /^tx extra info type 0 is unknown$/ }],
  ];
  for (const [what, act, want] of cases) {
    test(what, async () => {
      const r = await rig();
      try {
        const h = await r.guest(1); // worker 0
        const g1 = await r.guest(2); // worker 1
        const g2 = await r.guest(3); // worker 0, beside the hostile one
        g2.fe.postRx(256);
        await forwards(g1, g2, 30, 1);
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
        await forwards(g1, g2, 100, 2, 30);
        const s2 = await stat(r, g2.c, (s) => s.rx_packets >= 130);
        expect([s2.rx_packets, s2.rx_drops, s2.rx_errors]).toEqual([130, 0, 0]);
      } finally {
        await r.close();
      }
    });
  }
});
