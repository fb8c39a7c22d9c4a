import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createDomain, ECS_INTERDOMAIN, ECS_UNBOUND } from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { createWorkerPool, Pool, type ConnectedVif, type VifFault, type WorkerPool } from "../../src/pool/index.ts";
import { readVifStats, StatsArena } from "../../src/stats/index.ts";
import { NETIF_RSP_NULL, NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";
import { FakeFrontend, fdCount, fdTargets, simMappings, workerThreads } from "./fake-frontend.ts";

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

async function pool(workers: number, slotsPerWorker = 8): Promise<{ pool: Pool; stats: StatsArena }> {
  const stats = StatsArena.create({ workers, slotsPerWorker });
  const p = (await createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 0 }, workers, stats })) as Pool;
  return { pool: p, stats };
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
      expect(r[0]).toEqual({ id: 7, status: NETIF_RSP_OKAY });
      expect(r[1].status).toBe(NETIF_RSP_NULL);
      const s = readVifStats(stats, c.statsSlot)!;
      expect(s.tx_drops).toBe(4);
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
