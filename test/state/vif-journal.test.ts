// What a vif's journal keeps for a successor beyond the rings' state: the control ring's hash
// configuration and the multicast list, each whole or "none" (a crash while one is written must not
// leave a half-written one to be taken for the guest's).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HASH_OFFSET, MappedJournal, MCAST_OFFSET, RX_STAGING_OFFSET, writeFreshJournal } from "../../src/state/vif-journal.ts";
import { NETIF_RX_RING_SIZE, NETIF_RX_SLOT_SIZE } from "../../src/xen/netif.ts";
import { RING_HEADER_SIZE } from "../../src/xen/ring.ts";

const dir = mkdtempSync(join(tmpdir(), "qnicd-journal-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function fresh(): MappedJournal {
  const path = join(dir, `vif1.${n++}.journal`);
  writeFreshJournal(path, { backendPath: "/b", domid: 1, devid: 0, txRingRef: 8, rxRingRef: 9, txEvtchn: 3, rxEvtchn: 3, queueRefs: [[8, 9, 3, 3]], peer: { kind: "null", name: "vif1.0" }, features: {} });
  return MappedJournal.open(path);
}

test("a fresh journal holds no hash configuration and no multicast list", () => {
  const j = fresh();
  expect(j.loadHash()).toBeNull();
  expect(j.loadMcast()).toBeNull();
});

test("the hash configuration and the multicast list come back as saved, and a later save replaces them whole", () => {
  const j = fresh();
  const key = Array.from({ length: 40 }, (_, i) => i * 7 & 0xff);
  j.saveHash({ alg: 1, flags: 0xf, key, size: 4, mapping: [1, 0, 1, 1] });
  j.saveMcast(["01:00:5e:00:00:fb", "33:33:00:00:00:01"]);
  expect(j.loadHash()).toEqual({ alg: 1, flags: 0xf, key, size: 4, mapping: [1, 0, 1, 1] });
  expect(j.loadMcast()).toEqual(["01:00:5e:00:00:fb", "33:33:00:00:00:01"]);
  j.saveHash({ alg: 0, flags: 0, key: [], size: 0, mapping: [] });
  j.saveMcast([]);
  expect(j.loadHash()).toEqual({ alg: 0, flags: 0, key: new Array(40).fill(0), size: 0, mapping: [] });
  expect(j.loadMcast()).toEqual([]);
});

test("one caught while being written (its whole-word still 0) reads as none", () => {
  const j = fresh();
  j.saveMcast(["01:00:5e:00:00:fb"]);
  j.saveHash({ alg: 1, flags: 1, key: [1], size: 1, mapping: [0] });
  j.words[HASH_OFFSET / 4] = 0;
  new Uint32Array(j.stagingBytes("rx").buffer, j.stagingBytes("rx").byteOffset + (MCAST_OFFSET - RX_STAGING_OFFSET), 1)[0] = 0;
  expect(j.loadHash()).toBeNull();
  expect(j.loadMcast()).toBeNull();
});

test("the multicast list lies past every octet a staged rx response can take, and the hash before the counters", () => {
  expect(RX_STAGING_OFFSET + RING_HEADER_SIZE + NETIF_RX_RING_SIZE * NETIF_RX_SLOT_SIZE).toBeLessThanOrEqual(MCAST_OFFSET);
  expect(MCAST_OFFSET + 8 + 64 * 6).toBeLessThanOrEqual(RX_STAGING_OFFSET + 4096);
  expect(HASH_OFFSET + 8 + 40 + 128).toBeLessThanOrEqual(256);
});
