import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dlopen, FFIType } from "bun:ffi";
import { createLogger } from "../../src/log.ts";
import { createDomain, destroyDomain, ECS_INTERDOMAIN, ECS_UNBOUND } from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { createWorkerPool, Pool, type ConnectedVif, type VifFault, type WorkerPool } from "../../src/pool/index.ts";
import { readVifStats, StatsArena } from "../../src/stats/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";
import { FakeFrontend, fdTargets, ringPagesMapped, simMappings, workerThreads } from "./fake-frontend.ts";

const ENOENT = 2;
const EINVAL = 22;
const EPROTO = 71;

let host: ReturnType<typeof freshHost>;
let shmDir: string;

beforeAll(() => {
  host = freshHost("pool");
  shmDir = simPaths(host.dir).shmDir;
});
afterAll(() => host.cleanup());

function frontend(opts: { split?: boolean } = {}): FakeFrontend {
  return new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 16 }), opts);
}

async function pool(workers: number, slotsPerWorker = 8, budget?: number): Promise<{ pool: Pool; stats: StatsArena }> {
  const stats = StatsArena.create({ workers, slotsPerWorker });
  const p = (await createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 0 }, workers, stats, budget })) as Pool;
  return { pool: p, stats };
}

/** Counters are published once per batch, after the responses: wait for the flush before reading them. */
async function flushed(stats: StatsArena, slot: ConnectedVif["statsSlot"], done: (s: NonNullable<ReturnType<typeof readVifStats>>) => boolean) {
  for (let i = 0; i < 5000; i++) {
    const s = readVifStats(stats, slot);
    if (s && done(s)) return s;
    await Bun.sleep(1);
  }
  return readVifStats(stats, slot)!;
}

describe("serving a vif", () => {
  test("tx requests posted by the frontend are answered, one response per slot, with a notification", async () => {
    const { pool: p, stats } = await pool(1);
    const fe = frontend();
    try {
      const c = await p.connect(fe.spec());
      expect(c.worker).toBe(0);
      expect(fe.portState(fe.txPort)).toBe(ECS_INTERDOMAIN);
      fe.postTx([1, 2, 3]);
      expect(await fe.responses(3)).toEqual([1, 2, 3].map((id) => ({ id, status: NETIF_RSP_OKAY })));
      fe.postTx([7], { extra: true });
      const r = await fe.responses(2);
      // extra-info is not negotiated (no GSO offered): the packet is refused, its extra slot answered NULL
      expect(r[0]).toEqual({ id: 7, status: NETIF_RSP_ERROR });
      expect(r[1].status).toBe(NETIF_RSP_NULL);
      const s = await flushed(stats, c.statsSlot, (s) => s.tx_packets === 3 && s.tx_errors === 1);
      expect(s.tx_packets).toBe(3);
      expect(s.tx_bytes).toBe(180);
      expect(s.tx_errors).toBe(1);
      expect(s.tx_batches).toBeGreaterThanOrEqual(2);
      expect(s.events_received).toBeGreaterThanOrEqual(2);
      expect(s.notifies_sent).toBeGreaterThanOrEqual(2);
      expect(s.ffi_calls).toBeGreaterThan(0);
      expect(s.syscalls).toBeGreaterThan(0);
      expect(s.carrier).toBe(1);
    } finally {
      await p.close();
      fe.close();
    }
  });
});

describe("batches and budgets", () => {
  test("more requests than one wake-up's budget are all answered, in order, across wake-ups and ring wraps", async () => {
    const { pool: p, stats } = await pool(1, 4, 4);
    const busy = frontend();
    const quiet = frontend();
    try {
      const c = await p.connect(busy.spec());
      await p.connect(quiet.spec());
      const got: number[] = [];
      for (let round = 0; round < 6; round++) {
        const ids = Array.from({ length: 200 }, (_, i) => round * 200 + i);
        busy.postTx(ids);
        quiet.postTx([round]);
        expect(await quiet.responses(1)).toEqual([{ id: round, status: NETIF_RSP_OKAY }]);
        got.push(...(await busy.responses(200)).map((r) => r.id));
      }
      expect(got).toEqual(Array.from({ length: 1200 }, (_, i) => i & 0xffff));
      const s = await flushed(stats, c.statsSlot, (s) => s.tx_packets === 1200);
      expect(s.tx_packets).toBe(1200);
      // a budget of 4 packets per wake-up: at least 300 batches
      expect(s.tx_batches).toBeGreaterThanOrEqual(300);
    } finally {
      await p.close();
      busy.close();
      quiet.close();
    }
  });
});

describe("connect and disconnect", () => {
  test("the rx ring is mapped too, and with split event channels both ports are bound", async () => {
    const { pool: p } = await pool(1);
    const fe = frontend({ split: true });
    try {
      const c = await p.connect(fe.spec());
      expect(fe.mapped(fe.txRef)).toBe(true);
      expect(fe.mapped(fe.rxRef)).toBe(true);
      expect(c.localRxPort).not.toBe(c.localTxPort);
      expect(fe.portState(fe.txPort)).toBe(ECS_INTERDOMAIN);
      expect(fe.portState(fe.rxPort)).toBe(ECS_INTERDOMAIN);
    } finally {
      await p.close();
      fe.close();
    }
  });

  test("disconnect unbinds the ports (the frontend's return to unbound), unmaps the rings and frees the slot; twice is fine", async () => {
    const { pool: p, stats } = await pool(1);
    const fe = frontend({ split: true });
    try {
      const c = await p.connect(fe.spec());
      await p.disconnect(c.key);
      expect(fe.portState(fe.txPort)).toBe(ECS_UNBOUND);
      expect(fe.portState(fe.rxPort)).toBe(ECS_UNBOUND);
      expect(fe.mapped(fe.txRef)).toBe(false);
      expect(fe.mapped(fe.rxRef)).toBe(false);
      expect(readVifStats(stats, c.statsSlot)).toBeNull();
      expect(stats.slotsInUse()).toEqual([]);
      expect(p.snapshot()).toEqual({ workers: [{ index: 0, alive: true, vifs: 0 }], vifs: {} });
      await p.disconnect(c.key);
      await p.disconnect("never-connected");
      // the same frontend can connect again (a reconnect gets a new key)
      const again = await p.connect(fe.spec({ key: "vif-again" }));
      expect(again.worker).toBe(0);
    } finally {
      await p.close();
      fe.close();
    }
  });

  test("each connect goes to the least-loaded worker", async () => {
    const { pool: p } = await pool(3);
    const fes = Array.from({ length: 7 }, () => frontend());
    try {
      const cs: ConnectedVif[] = [];
      for (const fe of fes.slice(0, 6)) cs.push(await p.connect(fe.spec()));
      expect(cs.map((c) => c.worker).sort()).toEqual([0, 0, 1, 1, 2, 2]);
      expect(p.snapshot().workers.map((w) => w.vifs)).toEqual([2, 2, 2]);
      for (const c of cs.filter((c) => c.worker === 1)) await p.disconnect(c.key);
      expect((await p.connect(fes[6].spec())).worker).toBe(1);
      expect(p.snapshot().workers.map((w) => w.vifs)).toEqual([2, 1, 2]);
    } finally {
      await p.close();
      for (const fe of fes) fe.close();
    }
  });

  test("a vif key can be connected once", async () => {
    const { pool: p } = await pool(2);
    const fe = frontend();
    try {
      await p.connect(fe.spec());
      await expect(p.connect(fe.spec())).rejects.toThrow(/^vif\d+\.0: key .* is already connected$/);
    } finally {
      await p.close();
      fe.close();
    }
  });
});

describe("connect failures release what they set up", () => {
  /** `errno`: what the vif's error node will say (Linux netback's, never a blanket EIO). */
  async function failsCleanly(over: (fe: FakeFrontend) => object, message: RegExp, errno: number): Promise<void> {
    const { pool: p, stats } = await pool(1);
    const fe = frontend({ split: true });
    try {
      const err = await p.connect(fe.spec(over(fe))).then(() => null, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toMatch(message);
      expect((err as Error & { errno?: number }).errno).toBe(errno);
      expect(err!.message).not.toContain("\n");
      expect(fe.mapped(fe.txRef)).toBe(false);
      expect(fe.mapped(fe.rxRef)).toBe(false);
      expect(fe.portState(fe.txPort)).toBe(ECS_UNBOUND);
      expect(fe.portState(fe.rxPort)).toBe(ECS_UNBOUND);
      expect(stats.slotsInUse()).toEqual([]);
      expect(p.snapshot().workers[0].vifs).toBe(0);
      // and the worker still serves the vif once the frontend's nodes are right
      const c = await p.connect(fe.spec());
      fe.postTx([5]);
      expect(await fe.responses(1)).toEqual([{ id: 5, status: NETIF_RSP_OKAY }]);
      expect(c.worker).toBe(0);
    } finally {
      await p.close();
      fe.close();
    }
  }

  // A ring that will not map is ENOENT whatever the GNTST status, as Linux's __xenbus_map_ring returns.
  test("a tx-ring-ref beyond the grant table", () => failsCleanly(() => ({ txRingRef: 70000 }), /^vif\d+\.0: failed to map tx-ring-ref 70000: bad_gntref$/, ENOENT));

  test("a tx-ring-ref the frontend never granted", () => failsCleanly(() => ({ txRingRef: 9999 }), /^vif\d+\.0: failed to map tx-ring-ref 9999: general_error$/, ENOENT));

  test("a bad rx-ring-ref, after the tx ring was mapped", () => failsCleanly(() => ({ rxRingRef: 70000 }), /^vif\d+\.0: failed to map rx-ring-ref 70000: bad_gntref$/, ENOENT));

  test("a tx event channel that is not offered to dom0", () => failsCleanly((fe) => ({ txEvtchn: fe.rxPort + 5 }), /^vif\d+\.0: failed to bind event-channel \d+ of dom\d+: EINVAL$/, EINVAL));

  test("an rx event channel that is not offered, after the tx port was bound", () =>
    failsCleanly((fe) => ({ rxEvtchn: fe.rxPort + 5 }), /^vif\d+\.0: failed to bind event-channel \d+ of dom\d+: EINVAL$/, EINVAL));
});

describe("a hostile frontend", () => {
  test("a tx ring already more than a ring ahead at connect is refused, with nothing left mapped or bound", async () => {
    const { pool: p, stats } = await pool(1);
    const fe = frontend();
    try {
      fe.setReqProd(0x500);
      const err = await p.connect(fe.spec()).then(() => null, (e: Error & { errno?: number }) => e);
      expect(err?.message).toMatch(/^vif\d+\.0: tx req_prod 0x500 is more than a ring ahead of 0x0$/);
      expect(err?.errno).toBe(EPROTO);
      expect(fe.mapped(fe.txRef)).toBe(false);
      expect(fe.mapped(fe.rxRef)).toBe(false);
      expect(fe.portState(fe.txPort)).toBe(ECS_UNBOUND);
      expect(stats.slotsInUse()).toEqual([]);
    } finally {
      await p.close();
      fe.close();
    }
  });

  test("req_prod more than a ring ahead faults that vif with EPROTO, and the worker keeps serving the others", async () => {
    const { pool: p, stats } = await pool(1);
    const bad = frontend();
    const good = frontend();
    const faults: VifFault[] = [];
    p.onFault((f) => faults.push(f));
    try {
      const cb = await p.connect(bad.spec());
      const cg = await p.connect(good.spec());
      expect(cb.worker).toBe(cg.worker);
      bad.setReqProd(0x1300);
      good.postTx([1, 2]);
      expect(await good.responses(2)).toEqual([1, 2].map((id) => ({ id, status: NETIF_RSP_OKAY })));
      while (faults.length === 0) await Bun.sleep(1);
      expect(faults).toEqual([{ key: cb.key, errno: 71, message: "tx req_prod 0x1300 is more than a ring ahead of 0x0" }]);
      expect(bad.takeResponses()).toEqual([]);
      expect((await flushed(stats, cb.statsSlot, (s) => s.carrier === 0)).carrier).toBe(0);
      // still served after the fault
      good.postTx([3]);
      expect(await good.responses(1)).toEqual([{ id: 3, status: NETIF_RSP_OKAY }]);
      // the backend then tears the faulted vif down as usual
      await p.disconnect(cb.key);
      expect(bad.portState(bad.txPort)).toBe(ECS_UNBOUND);
      expect(bad.mapped(bad.txRef)).toBe(false);
    } finally {
      await p.close();
      bad.close();
      good.close();
    }
  });
});

describe("a frontend domain that goes away", () => {
  test("destroying a connected guest leaves the worker serving the others, and its vif still disconnects cleanly", async () => {
    const { pool: p } = await pool(1);
    const doomed = frontend();
    const other = frontend();
    try {
      const cd = await p.connect(doomed.spec());
      await p.connect(other.spec());
      doomed.postTx([1]);
      await doomed.responses(1);
      doomed.close();
      destroyDomain(host.dir, doomed.domid);
      other.postTx([2]);
      expect(await other.responses(1)).toEqual([{ id: 2, status: NETIF_RSP_OKAY }]);
      // its ring pages stay mapped (and valid) until the backend unmaps them, as on Xen
      expect(ringPagesMapped(shmDir, doomed.domid)).toBe(2);
      await p.disconnect(cd.key);
      expect(ringPagesMapped(shmDir, doomed.domid)).toBe(0);
      other.postTx([3]);
      expect(await other.responses(1)).toEqual([{ id: 3, status: NETIF_RSP_OKAY }]);
    } finally {
      await p.close();
      other.close();
    }
  });
});

describe("worker death", () => {
  test("a killed worker's vifs move to another worker and are served there; nothing it held leaks", async () => {
    const { pool: p, stats } = await pool(2);
    const a = frontend();
    const b = frontend();
    const lost: { worker: number; moved: ConnectedVif[] }[] = [];
    p.onWorkerLost((worker, moved) => lost.push({ worker, moved }));
    try {
      const ca = await p.connect(a.spec());
      const cb = await p.connect(b.spec());
      expect([ca.worker, cb.worker]).toEqual([0, 1]);
      a.postTx([1]);
      expect(await a.responses(1)).toEqual([{ id: 1, status: NETIF_RSP_OKAY }]);
      expect(ringPagesMapped(shmDir, a.domid)).toBe(2);
      // Counters are published after the responses (once per batch): a crash before that loses the batch's counts.
      await flushed(stats, ca.statsSlot, (s) => s.tx_packets === 1);

      p.killWorker(0);
      while (lost.length === 0) await Bun.sleep(1);
      expect(lost[0].worker).toBe(0);
      expect(lost[0].moved.map((m) => [m.key, m.worker])).toEqual([[ca.key, 1]]);
      expect(p.snapshot()).toEqual({
        workers: [
          { index: 0, alive: false, vifs: 0 },
          { index: 1, alive: true, vifs: 2 },
        ],
        vifs: { [ca.key]: 1, [cb.key]: 1 },
      });
      // served by worker 1 now, resuming where the ring was, with its counters carried over
      a.postTx([2, 3]);
      expect(await a.responses(2)).toEqual([2, 3].map((id) => ({ id, status: NETIF_RSP_OKAY })));
      expect((await flushed(stats, lost[0].moved[0].statsSlot, (s) => s.tx_packets === 3)).tx_packets).toBe(3);
      b.postTx([4]);
      expect(await b.responses(1)).toEqual([{ id: 4, status: NETIF_RSP_OKAY }]);
      // the dead worker's mappings went with it: the same rings are mapped once, by worker 1
      expect(ringPagesMapped(shmDir, a.domid)).toBe(2);
      expect(ringPagesMapped(shmDir, b.domid)).toBe(2);
      expect(workerThreads().length).toBe(1);
    } finally {
      await p.close();
      a.close();
      b.close();
    }
  });
});

describe("close()", () => {
  test("leaves no fds, mappings, bound ports or worker threads behind", async () => {
    // Warm up: the first pool loads libraries and starts Bun's own helper threads and fds.
    await (await pool(1)).pool.close();
    const fdsBefore = fdTargets();
    const fes = [frontend({ split: true }), frontend(), frontend()];
    const mapsBefore = simMappings(shmDir);
    const { pool: p } = await pool(3);
    for (const fe of fes) await p.connect(fe.spec());
    for (const fe of fes) {
      fe.postTx([1]);
      await fe.responses(1);
    }
    expect(workerThreads().length).toBe(3);
    p.killWorker(2); // a dead worker's leftovers are released too
    while (p.snapshot().workers[2].alive) await Bun.sleep(1);
    await p.close();
    await p.close();
    for (const fe of fes) {
      expect(fe.portState(fe.txPort)).toBe(ECS_UNBOUND);
      expect(fe.portState(fe.rxPort)).toBe(ECS_UNBOUND);
      expect(fe.mapped(fe.txRef)).toBe(false);
      expect(fe.mapped(fe.rxRef)).toBe(false);
    }
    for (const fe of fes) expect(ringPagesMapped(shmDir, fe.domid)).toBe(0);
    expect(simMappings(shmDir)).toBe(mapsBefore);
    expect(workerThreads()).toEqual([]);
    await expect(p.connect(fes[0].spec())).rejects.toThrow(/pool is closed/);
    for (const fe of fes) fe.close();
    // the frontends' own fds (their doorbell sockets to the workers' devices) closed with them
    expect(fdTargets().sort()).toEqual(fdsBefore.sort());
  });
});

describe("idle", () => {
  test("idle workers sleep in poll() instead of spinning", async () => {
    const { pool: p } = await pool(2);
    const fe = frontend();
    try {
      await p.connect(fe.spec());
      fe.postTx([1]);
      await fe.responses(1);
      // A busy-polling thread is always running (R); a poll()ing one is sleeping (S).
      let allAsleep = false;
      for (let i = 0; i < 50 && !allAsleep; i++) {
        await Bun.sleep(2);
        const ts = workerThreads();
        allAsleep = ts.length === 2 && ts.every((t) => t.state === "S");
      }
      expect(allAsleep).toBe(true);
    } finally {
      await p.close();
      fe.close();
    }
  });
});

describe("worker death, harder cases", () => {
  test("a worker that throws (its control fd hung up) is detected through its error, and its vifs move", async () => {
    const lines: string[] = [];
    const stats = StatsArena.create({ workers: 2, slotsPerWorker: 4 });
    const log = createLogger({ level: "debug", format: "text", write: (l) => lines.push(l) });
    const p = (await createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 0 }, workers: 2, stats, log })) as Pool;
    const fe = frontend();
    const lost: ConnectedVif[][] = [];
    p.onWorkerLost((_, moved) => lost.push(moved));
    try {
      const c = await p.connect(fe.spec());
      expect(c.worker).toBe(0);
      // Put a pipe whose writer is closed where worker 0's eventfd was: its poll() reports POLLHUP.
      const libc = dlopen("libc.so.6", { pipe: { args: [FFIType.ptr], returns: FFIType.i32 }, dup2: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 }, close: { args: [FFIType.i32], returns: FFIType.i32 } }).symbols;
      const fds = new Int32Array(2);
      expect(libc.pipe(fds)).toBe(0);
      libc.close(fds[1]);
      const efd = (p as unknown as { workers: { eventfd: number }[] }).workers[0].eventfd;
      expect(libc.dup2(fds[0], efd)).toBe(efd);
      libc.close(fds[0]);
      // The poll() in progress still waits on the old eventfd: a tx request wakes it, and the next poll() fails.
      fe.postTx([1]);
      while (lost.length === 0) await Bun.sleep(1);
      expect(lost[0].map((m) => [m.key, m.worker])).toEqual([[c.key, 1]]);
      expect(lines.some((l) => /worker 0 died: worker 0: control eventfd is broken \(revents 0x[0-9a-f]+\); released grant device \(2 mappings\), event-channel device, 5 data-path buffers; moving 1 vifs$/.test(l))).toBe(true);
      fe.postTx([2]);
      // each request answered once, whichever worker served it
      expect(await fe.responses(2)).toEqual([1, 2].map((id) => ({ id, status: NETIF_RSP_OKAY })));
    } finally {
      await p.close();
      fe.close();
    }
  });

  test("a connect in flight when its worker dies is retried on another worker", async () => {
    const { pool: p } = await pool(2);
    const fe = frontend();
    try {
      p.killWorker(0);
      // worker 0 has not stopped yet, so it is still the least loaded: the connect goes there first
      const c = await p.connect(fe.spec());
      expect(c.worker).toBe(1);
      fe.postTx([1]);
      expect(await fe.responses(1)).toEqual([{ id: 1, status: NETIF_RSP_OKAY }]);
      expect(ringPagesMapped(shmDir, fe.domid)).toBe(2);
    } finally {
      await p.close();
      fe.close();
    }
  });

  test("when the last worker dies its vifs fault with EIO, their resources are released, and connect says why it cannot", async () => {
    const { pool: p, stats } = await pool(1);
    const fe = frontend();
    const faults: VifFault[] = [];
    const lost: number[] = [];
    p.onFault((f) => faults.push(f));
    p.onWorkerLost((w, moved) => lost.push(w, moved.length));
    try {
      const c = await p.connect(fe.spec());
      p.killWorker(0);
      while (lost.length === 0) await Bun.sleep(1);
      expect(lost).toEqual([0, 0]);
      expect(faults).toEqual([{ key: c.key, errno: 5, message: `worker 0 died and no other worker took the vif: ${fe.spec().name}: no live worker with a free slot to serve it` }]);
      expect(fe.portState(fe.txPort)).toBe(ECS_UNBOUND);
      expect(fe.mapped(fe.txRef)).toBe(false);
      expect(stats.slotsInUse()).toEqual([]);
      expect(p.snapshot()).toEqual({ workers: [{ index: 0, alive: false, vifs: 0 }], vifs: {} });
      await p.disconnect(c.key);
      await expect(p.connect(fe.spec({ key: "k2" }))).rejects.toThrow(/^vif\d+\.0: no live worker with a free slot to serve it$/);
    } finally {
      await p.close();
      fe.close();
    }
    expect(workerThreads()).toEqual([]);
  });
});

describe("createWorkerPool", () => {
  test("a platform the workers cannot open rejects with the worker's one-line error and leaves no thread", async () => {
    const stats = StatsArena.create({ workers: 2, slotsPerWorker: 2 });
    const err = await createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 99 }, workers: 2, stats }).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^worker \d: sim platform: dom99 does not exist/);
    expect(err?.message).not.toContain("\n");
    expect(workerThreads()).toEqual([]);
  });

  test("a stats arena with room for fewer workers is refused", async () => {
    const stats = StatsArena.create({ workers: 1, slotsPerWorker: 2 });
    await expect(createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 0 }, workers: 2, stats })).rejects.toThrow(/slots for 1 workers/);
  });
});
