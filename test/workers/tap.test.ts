// A vif whose peer is a real TAP (root only): frames the host transmits on the interface reach
// the guest's rx ring intact; frames from the guest's tx ring appear on the interface intact.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createWorkerPool, Pool, type WorkerPool } from "../../src/pool/index.ts";
import { createDomain } from "../../src/sim/hypervisor/index.ts";
import { StatsArena } from "../../src/stats/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { canUseTap, createTestTap, PacketSocket, uniqueIfName, type TestTap } from "../net/tap-helper.ts";
import { FakeFrontend, fdTargets } from "../pool/fake-frontend.ts";
import { freshHost } from "../sim/hypervisor/helpers.ts";

const SRC = Uint8Array.from([0x02, 0, 0, 0, 0x42, 0x42]);
const GUEST = Uint8Array.from([0x00, 0x16, 0x3e, 0, 0x42, 0x43]);

function sized(size: number, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const f = new Uint8Array(size);
  for (let i = 12; i < size; i++) f[i] = (i * 11 + size) & 0xff;
  f.set(dst, 0);
  f.set(src, 6);
  if (size >= 14) f[12] = 0x88, f[13] = 0xb5; // local experimental ethertype: no stack wants it
  return f;
}

describe.skipIf(!canUseTap())("TAP peer", () => {
  let host: ReturnType<typeof freshHost>;
  let tap: TestTap;
  let sock: PacketSocket;
  let pool: WorkerPool;
  let fe: FakeFrontend;
  beforeAll(async () => {
    host = freshHost("tapdp");
    tap = createTestTap(uniqueIfName("dp"));
    sock = new PacketSocket(tap.name);
    const stats = StatsArena.create({ workers: 1, slotsPerWorker: 4 });
    pool = await createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 0 }, workers: 1, stats });
    fe = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }));
    await pool.connect(fe.spec({ peer: { kind: "tap", name: tap.name, fd: tap.fd } }));
  });
  afterAll(async () => {
    await pool?.close();
    fe?.close();
    sock?.close();
    tap?.close();
    host?.cleanup();
  });

  test("host -> guest: frames of every size 14..1514 arrive intact and in order", async () => {
    fe.postRx(256);
    const want: Uint8Array[] = [];
    const got: Uint8Array[] = [];
    for (let size = 14; size <= 1514; size += 100) {
      const chunk = Array.from({ length: Math.min(100, 1515 - size) }, (_, i) => sized(size + i, SRC, GUEST));
      for (const f of chunk) sock.send(f);
      want.push(...chunk);
      const deadline = Date.now() + 5000;
      while (got.length < want.length && Date.now() < deadline) {
        const r = fe.takeRx();
        if (r.length) fe.postRx(r.length);
        for (const x of r) if (x.frame && x.frame.subarray(6, 12).every((b, i) => b === SRC[i])) got.push(x.frame);
        await Bun.sleep(1);
      }
    }
    expect(got.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(got[i]).toEqual(want[i]);
  });

  test("guest -> host: frames of every size 14..1514 appear on the interface intact", async () => {
    sock.drain();
    const want = Array.from({ length: 1501 }, (_, i) => sized(14 + i, GUEST, SRC));
    const seen: Uint8Array[] = [];
    for (let i = 0; i < want.length; i += 48) {
      const chunk = want.slice(i, i + 48);
      fe.sendFrames(chunk, i);
      expect((await fe.responses(chunk.length)).every((r) => r.status === NETIF_RSP_OKAY)).toBe(true);
      const deadline = Date.now() + 5000;
      while (seen.length < i + chunk.length && Date.now() < deadline) {
        for (const f of sock.drain()) if (f.length >= 12 && f.subarray(6, 12).every((b, k) => b === GUEST[k])) seen.push(f);
        await Bun.sleep(1);
      }
    }
    expect(seen.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(seen[i]).toEqual(want[i]);
  });
});

describe.skipIf(!canUseTap())("TAP peer and worker death", () => {
  test("a killed worker's TAP context (io_uring fd) is released by the pool, and the vif's TAP works from its new worker", async () => {
    const host = freshHost("tapdeath");
    const tap = createTestTap(uniqueIfName("dd"));
    const sock = new PacketSocket(tap.name);
    const stats = StatsArena.create({ workers: 2, slotsPerWorker: 4 });
    const pool = (await createWorkerPool({ platform: { kind: "sim", dir: host.dir, domid: 0 }, workers: 2, stats, tapIo: "uring" })) as Pool;
    const fe = new FakeFrontend(host.dir, createDomain(host.dir, { memoryPages: 400 }));
    const urings = () => fdTargets().filter((t) => t.includes("io_uring")).length;
    try {
      const before = urings();
      const c = await pool.connect(fe.spec({ peer: { kind: "tap", name: tap.name, fd: tap.fd } }));
      expect(urings()).toBe(before + 1);
      const moved = new Promise<void>((res) => pool.onWorkerLost(() => res()));
      pool.killWorker(c.worker);
      await moved;
      expect(pool.snapshot().vifs[fe.spec().key]).toBe(1 - c.worker);
      expect(urings()).toBe(before + 1); // the dead worker's ring closed, the new worker's open
      fe.postRx(16);
      const f = sized(100, SRC, GUEST);
      sock.send(f);
      const got = await fe.received(1);
      expect(got[0]!.frame).toEqual(f);
    } finally {
      await pool.close();
      fe.close();
      sock.close();
      tap.close();
      host.cleanup();
    }
  });
});
