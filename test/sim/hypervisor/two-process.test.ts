// A separate guest process grants pages and offers a port; this process is the backend.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { createDomain } from "../../../src/sim/hypervisor/index.ts";
import { GrantCopyBatch, openPlatform, type Platform } from "../../../src/platform/index.ts";
import { GNTST_general_error, GNTST_okay } from "../../../src/xen/grant-table.ts";
import { patternByte } from "./fixtures/pattern.ts";
import { Child, freshHost } from "./helpers.ts";

let host: ReturnType<typeof freshHost>;
let platform: Platform;
let child: Child;
let domid: number;
let setup: { grefs: number[]; frames: number[]; port: number; pid: number };
const PAGES = 8;
const SEED = 17;

beforeAll(async () => {
  host = freshHost("twoproc");
  domid = createDomain(host.dir, { memoryPages: 64 });
  platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  child = new Child();
  setup = await child.call({ op: "setup", dir: host.dir, domid, backend: 0, pages: PAGES, seed: SEED, lastReadonly: true });
});
afterAll(async () => {
  await child.exit();
  platform.close();
  host.cleanup();
});

test("the guest really is another process", () => {
  expect(setup.pid).not.toBe(process.pid);
  expect(setup.grefs.length).toBe(PAGES);
});

test("grant copies from the guest process carry its payload exactly", () => {
  const gnt = platform.openGrantDevice();
  const local = new Uint8Array(PAGES * 4096);
  const batch = new GrantCopyBatch(64);
  for (let p = 0; p < PAGES; p++) batch.setGrantToLocal(p, domid, setup.grefs[p], 0, ptr(local) + p * 4096, 4096);
  expect(gnt.copy(batch, PAGES)).toBe(0);
  for (let p = 0; p < PAGES; p++)
    for (let i = 0; i < 4096; i++)
      if (local[p * 4096 + i] !== patternByte(SEED, p, i)) throw new Error(`page ${p} byte ${i}: ${local[p * 4096 + i]} != ${patternByte(SEED, p, i)}`);
  batch.free();
  gnt.close();
});

test("grant copies into the guest process land exactly where asked, and a read-only grant refuses them", async () => {
  const gnt = platform.openGrantDevice();
  const NEW = 99;
  const local = new Uint8Array(4096);
  const batch = new GrantCopyBatch(8);
  // page 1: bytes [300, 1800) get pattern NEW; page 2: the whole page; last page is read-only.
  for (let i = 0; i < 1500; i++) local[i] = patternByte(NEW, 1, i);
  batch.setLocalToGrant(0, ptr(local), domid, setup.grefs[1], 300, 1500);
  const local2 = new Uint8Array(4096);
  for (let i = 0; i < 4096; i++) local2[i] = patternByte(NEW, 2, i);
  batch.setLocalToGrant(1, ptr(local2), domid, setup.grefs[2], 0, 4096);
  batch.setLocalToGrant(2, ptr(local2), domid, setup.grefs[PAGES - 1], 0, 64);
  expect(gnt.copy(batch, 3)).toBe(1);
  expect([batch.status(0), batch.status(1), batch.status(2)]).toEqual([GNTST_okay, GNTST_okay, GNTST_general_error]);
  expect(await child.call({ op: "check", page: 1, offset: 300, len: 1500, seed: NEW, origSeed: SEED })).toEqual({ ok: true });
  expect(await child.call({ op: "check", page: 2, offset: 0, len: 4096, seed: NEW, origSeed: SEED })).toEqual({ ok: true });
  expect(await child.call({ op: "check", page: PAGES - 1, offset: 0, len: 0, seed: NEW, origSeed: SEED })).toEqual({ ok: true });
  batch.free();
  gnt.close();
});

test("a mapping of the guest's page sees what the guest process wrote", () => {
  const gnt = platform.openGrantDevice();
  const m = gnt.map(domid, [setup.grefs[3], setup.grefs[4]], true);
  const v = new Uint8Array(m.buffer);
  expect(v[0]).toBe(patternByte(SEED, 3, 0));
  expect(v[4096 + 4095]).toBe(patternByte(SEED, 4, 4095));
  m.unmap();
  gnt.close();
});

test("event-channel ping-pong across processes", async () => {
  const ev = platform.openEventChannelDevice();
  const bp = ev.bindInterdomain(domid, setup.port);
  const out = new Uint32Array(16);
  // drain the conservative bind-time event
  expect(ev.readPending(out)).toBe(1);
  ev.unmask(out, 1);
  const ROUNDS = 200;
  child.send({ op: "pingpong", rounds: ROUNDS, port: setup.port });
  expect(await child.next()).toEqual({ ready: true });
  const wait = (ev as unknown as { wait(ms: number): boolean }).wait.bind(ev);
  for (let r = 0; r < ROUNDS; r++) {
    ev.notify(bp);
    let got = false;
    while (!got) {
      if (!wait(10000)) throw new Error(`no pong in round ${r}`);
      const n = ev.readPending(out);
      for (let i = 0; i < n; i++) if (out[i] === bp) got = true;
      ev.unmask(out, n);
    }
  }
  expect(await child.next()).toEqual({ done: ROUNDS });
  ev.close();
});
