// The control ring on a plain ring page with a fake grant device: every operation of netback's
// hash.c with each of its statuses, the double-buffered mapping table, NOT_SUPPORTED for the
// staging-grant operations 8-10 and unknown types, one grant-copy call per pass, and req_prod
// bounded (netback does not bound it; qnicd must).
import { afterEach, describe, expect, test } from "bun:test";
import * as C from "../../src/xen/ctrl-netif.ts";
import { CTRL_COPIES_PER_PASS, CtrlRing } from "../../workers/ctrl-ring.ts";
import { VifHash } from "../../workers/vif-hash.ts";
import { ipFrame, RSS_KEY, VECTORS } from "../net/hash-frames.ts";
import { FakeGrants, ringPage } from "./helpers.ts";

const DOM = 9;
const S_OK = C.XEN_NETIF_CTRL_STATUS_SUCCESS;
const S_NS = C.XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED;
const S_INV = C.XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER;
const T = {
  getFlags: C.XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS,
  setFlags: C.XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS,
  setKey: C.XEN_NETIF_CTRL_TYPE_SET_HASH_KEY,
  getMapSize: C.XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE,
  setMapSize: C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE,
  setMap: C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING,
  setAlg: C.XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM,
};
const TOEPLITZ = C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ;

const rings: CtrlRing[] = [];
afterEach(() => {
  for (const r of rings.splice(0)) r.close();
});

/** A frontend's control ring: requests posted by hand, grants in a FakeGrants. */
function frontend(o: { queues?: number; at?: number } = {}) {
  const r = ringPage(o.at ?? 0);
  const gnt = new FakeGrants(DOM);
  const hash = new VifHash(o.queues ?? 1);
  const ring = new CtrlRing(r.buf, DOM, hash);
  rings.push(ring);
  let prod = (o.at ?? 0) >>> 0;
  let nextId = 1;
  const slot = (i: number) => 64 + (i & 127) * 16;
  return {
    ...r,
    gnt,
    hash,
    ring,
    /** Posts one request (not yet published); returns its id. */
    post(type: number, d0 = 0, d1 = 0, d2 = 0) {
      const off = slot(prod);
      const id = nextId++ & 0xffff;
      r.dv.setUint16(off, id, true);
      r.dv.setUint16(off + 2, type, true);
      r.dv.setUint32(off + 4, d0 >>> 0, true);
      r.dv.setUint32(off + 8, d1 >>> 0, true);
      r.dv.setUint32(off + 12, d2 >>> 0, true);
      prod = (prod + 1) >>> 0;
      return id;
    },
    publish() {
      Atomics.store(r.w, 0, prod);
    },
    /** A granted page holding `bytes` at offset 0; returns its ref. */
    grant(ref: number, bytes: Uint8Array) {
      gnt.grant(ref).set(bytes);
      return ref;
    },
    responses(from: number, to: number) {
      const out: { id: number; type: number; status: number; data: number }[] = [];
      for (let i = from; i !== to; i = (i + 1) >>> 0) out.push({ id: r.dv.getUint16(slot(i), true), type: r.dv.getUint16(slot(i) + 2, true), status: r.dv.getUint32(slot(i) + 4, true), data: r.dv.getUint32(slot(i) + 8, true) });
      return out;
    },
    get rspProd() {
      return r.w[2];
    },
  };
}

const u32s = (xs: number[]) => new Uint8Array(Uint32Array.from(xs).buffer);

describe("ctrl ring: what the Windows PV drivers send", () => {
  test("algorithm, mapping size, mapping, 40-byte key, flags: all SUCCESS in one pass with ONE grant-copy call", () => {
    const f = frontend({ queues: 4 });
    const table = Array.from({ length: 128 }, (_, i) => i % 4);
    f.grant(500, u32s(table));
    f.grant(501, RSS_KEY);
    f.post(T.setAlg, TOEPLITZ);
    f.post(T.getMapSize);
    f.post(T.setMapSize, 128);
    f.post(T.setMap, 500, 128, 0);
    f.post(T.setKey, 501, 40);
    f.post(T.setFlags, C.XEN_NETIF_CTRL_HASH_TYPES_ALL);
    f.post(T.getFlags);
    f.publish();
    const calls = f.gnt.calls;
    const pass = f.ring.service(f.gnt);
    expect(pass.fault).toBeNull();
    expect([pass.answered, pass.more, f.gnt.calls - calls]).toEqual([7, false, 1]);
    expect(f.responses(0, 7)).toEqual([
      { id: 1, type: T.setAlg, status: S_OK, data: 0 },
      { id: 2, type: T.getMapSize, status: S_OK, data: 128 },
      { id: 3, type: T.setMapSize, status: S_OK, data: 0 },
      { id: 4, type: T.setMap, status: S_OK, data: 0 },
      { id: 5, type: T.setKey, status: S_OK, data: 0 },
      { id: 6, type: T.setFlags, status: S_OK, data: 0 },
      { id: 7, type: T.getFlags, status: S_OK, data: 0xf },
    ]);
    expect(f.rspProd).toBe(7);
    expect(Array.from(f.hash.key)).toEqual(Array.from(RSS_KEY));
    expect(Array.from(f.hash.mapping.subarray(0, 128))).toEqual(table);
    // The configured hash is the vectors' hash, and picks the queue through the table.
    const v4tcp = ipFrame({ v6: false });
    expect(f.hash.hashFrame(v4tcp, 0, v4tcp.length) && f.hash.value).toBe(VECTORS.ipv4Tcp);
    expect(f.hash.type).toBe(C._XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
    expect(f.hash.selectQueue(v4tcp, 0, v4tcp.length)).toBe(table[VECTORS.ipv4Tcp % 128]);
  });
});

describe("ctrl ring: each operation's statuses (hash.c)", () => {
  test("SET_HASH_ALGORITHM: NONE and TOEPLITZ accepted, anything else INVALID_PARAMETER", () => {
    const f = frontend();
    f.post(T.setAlg, 2);
    f.post(T.setAlg, TOEPLITZ);
    f.post(T.setAlg, 0xffffffff);
    f.post(T.setAlg, 0);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.responses(0, 4).map((r) => r.status)).toEqual([S_INV, S_OK, S_INV, S_OK]);
    expect(f.hash.alg).toBe(0);
  });

  test("flags: GET with no algorithm NOT_SUPPORTED; SET before ALGORITHM INVALID; unknown bits INVALID; then SUCCESS", () => {
    const f = frontend();
    f.post(T.getFlags);
    f.post(T.setFlags, 1);
    f.post(T.setAlg, TOEPLITZ);
    f.post(T.setFlags, 0x10);
    f.post(T.setFlags, C.XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    f.post(T.getFlags);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.responses(0, 6).map((r) => [r.status, r.data])).toEqual([[S_NS, 0], [S_INV, 0], [S_OK, 0], [S_INV, 0], [S_OK, 0], [S_OK, 0xf]]);
    expect(f.hash.flags).toBe(C.XEN_NETIF_CTRL_HASH_TYPE_IPV4);
  });

  test("SET_HASH_KEY: 41 bytes INVALID with nothing copied; a short key zero-filled; length 0 clears it; a bad grant INVALID, key kept", () => {
    const f = frontend();
    f.grant(600, RSS_KEY);
    f.grant(601, Uint8Array.from([1, 2, 3]));
    f.post(T.setKey, 600, 40);
    f.publish();
    f.ring.service(f.gnt);
    const calls = f.gnt.calls;
    f.post(T.setKey, 600, 41);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.gnt.calls).toBe(calls); // refused before any copy
    expect(Array.from(f.hash.key)).toEqual(Array.from(RSS_KEY));
    f.post(T.setKey, 999, 8); // never granted
    f.publish();
    f.ring.service(f.gnt);
    expect(Array.from(f.hash.key)).toEqual(Array.from(RSS_KEY));
    f.post(T.setKey, 601, 3);
    f.publish();
    f.ring.service(f.gnt);
    expect(Array.from(f.hash.key)).toEqual([1, 2, 3, ...new Array(37).fill(0)]);
    f.grant(602, RSS_KEY);
    f.post(T.setKey, 602, 40);
    f.post(T.setKey, 0, 0);
    f.publish();
    f.ring.service(f.gnt);
    expect(Array.from(f.hash.key)).toEqual(new Array(40).fill(0));
    expect(f.responses(0, 6).map((r) => r.status)).toEqual([S_OK, S_INV, S_INV, S_OK, S_OK, S_OK]);
  });

  test("mapping size: GET says 128; SET over 128 INVALID; SET zeroes the active table", () => {
    const f = frontend({ queues: 3 });
    f.grant(700, u32s([2, 1, 2, 1]));
    f.post(T.setMapSize, 4);
    f.post(T.setMap, 700, 4, 0);
    f.post(T.setMapSize, 129);
    f.publish();
    f.ring.service(f.gnt);
    expect(Array.from(f.hash.mapping.subarray(0, 4))).toEqual([2, 1, 2, 1]);
    f.post(T.setMapSize, 4);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.responses(0, 4).map((r) => r.status)).toEqual([S_OK, S_OK, S_INV, S_OK]);
    expect(Array.from(f.hash.mapping.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(f.hash.size).toBe(4);
  });

  test("SET_HASH_MAPPING bounds: past the size, wrapping, over a page of entries: INVALID with nothing copied", () => {
    const f = frontend({ queues: 2 });
    f.grant(800, u32s(new Array(128).fill(1)));
    f.post(T.setMapSize, 8);
    f.publish();
    f.ring.service(f.gnt);
    const calls = f.gnt.calls;
    f.post(T.setMap, 800, 8, 1); // off + len = 9 > 8
    f.post(T.setMap, 800, 2, 0xffffffff); // off + len wraps to 1
    f.post(T.setMap, 800, 1025, 0); // more than a page of u32 entries
    f.publish();
    f.ring.service(f.gnt);
    expect(f.gnt.calls).toBe(calls);
    expect(f.responses(1, 4).map((r) => r.status)).toEqual([S_INV, S_INV, S_INV]);
    // A part of the table at an offset: the rest of the active table is kept.
    f.post(T.setMap, 800, 3, 5);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.responses(4, 5)[0]!.status).toBe(S_OK);
    expect(Array.from(f.hash.mapping.subarray(0, 8))).toEqual([0, 0, 0, 0, 0, 1, 1, 1]);
  });

  test("double-buffered: a table with an entry >= the queue count is INVALID and never goes live, the old one stays", () => {
    const f = frontend({ queues: 2 });
    f.grant(900, u32s([1, 0, 1, 0]));
    f.grant(901, u32s([0, 1, 2, 1])); // queue 2 does not exist
    f.grant(902, u32s([1, 1, 1, 1]));
    f.post(T.setAlg, TOEPLITZ);
    f.post(T.setMapSize, 4);
    f.post(T.setMap, 900, 4, 0);
    f.post(T.setMap, 901, 4, 0);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.responses(2, 4).map((r) => r.status)).toEqual([S_OK, S_INV]);
    expect(Array.from(f.hash.mapping.subarray(0, 4))).toEqual([1, 0, 1, 0]);
    // The rejected half is rebuilt from the live table on the next update, not reused as left.
    f.post(T.setMap, 902, 1, 3);
    f.publish();
    f.ring.service(f.gnt);
    expect(Array.from(f.hash.mapping.subarray(0, 4))).toEqual([1, 0, 1, 1]);
  });

  test("mapping from a grant that fails to copy: INVALID, old table kept", () => {
    const f = frontend({ queues: 2 });
    f.post(T.setMapSize, 2);
    f.post(T.setMap, 12345, 2, 0);
    f.publish();
    f.ring.service(f.gnt);
    expect(f.responses(0, 2).map((r) => r.status)).toEqual([S_OK, S_INV]);
    expect(Array.from(f.hash.mapping.subarray(0, 2))).toEqual([0, 0]);
  });

  test("NOT_SUPPORTED for INVALID (0), the staging-grant operations 8-10 and unknown types, id and type echoed", () => {
    const f = frontend();
    for (const t of [C.XEN_NETIF_CTRL_TYPE_INVALID, C.XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE, C.XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING, C.XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING, 11, 0xffff]) f.post(t, 1, 512, 0);
    f.publish();
    const calls = f.gnt.calls;
    f.ring.service(f.gnt);
    expect(f.gnt.calls).toBe(calls);
    expect(f.responses(0, 6)).toEqual([0, 8, 9, 10, 11, 0xffff].map((type, i) => ({ id: i + 1, type, status: S_NS, data: 0 })));
  });
});

describe("ctrl ring: the ring itself", () => {
  test("req_prod more than a ring ahead is a fault, nothing answered; exactly a ring (128) is answered", () => {
    const f = frontend();
    for (let i = 0; i < 128; i++) f.post(T.getMapSize);
    f.publish();
    expect(f.ring.service(f.gnt).answered).toBe(128);
    expect(f.rspProd).toBe(128);
    Atomics.store(f.w, 0, 128 + 129);
    const pass = f.ring.service(f.gnt);
    expect(pass.fault).toBe("ctrl req_prod 0x101 is more than a ring ahead of 0x80");
    expect(pass.answered).toBe(0);
    expect(f.rspProd).toBe(128);
  });

  test("a ring whose indices start near 2^32 wraps cleanly; at attach a far-ahead req_prod is reported", () => {
    const f = frontend({ at: 0xfffffffe });
    f.post(T.getMapSize);
    f.post(T.getMapSize);
    f.post(T.getMapSize);
    f.publish();
    expect(f.ring.attachError()).toBeNull();
    expect(f.ring.service(f.gnt).answered).toBe(3);
    expect(f.rspProd).toBe(1);
    const g = frontend();
    Atomics.store(g.w, 0, 0x1000);
    expect(g.ring.attachError()).toBe("ctrl req_prod 0x1000 is more than a ring ahead of 0x0");
  });

  test(`at most ${CTRL_COPIES_PER_PASS} grant copies per pass: the rest waits for the next pass, in order`, () => {
    const f = frontend();
    for (let i = 0; i < 20; i++) f.grant(1000 + i, Uint8Array.from([i + 1]));
    for (let i = 0; i < 20; i++) f.post(T.setKey, 1000 + i, 1);
    f.publish();
    const calls = f.gnt.calls;
    const p1 = f.ring.service(f.gnt);
    expect([p1.answered, p1.more, f.gnt.calls - calls]).toEqual([CTRL_COPIES_PER_PASS, true, 1]);
    expect(f.hash.key[0]).toBe(CTRL_COPIES_PER_PASS);
    const p2 = f.ring.service(f.gnt);
    expect([p2.answered, p2.more, f.gnt.calls - calls]).toEqual([20 - CTRL_COPIES_PER_PASS, false, 2]);
    expect(f.hash.key[0]).toBe(20);
    expect(f.responses(0, 20).every((r) => r.status === S_OK)).toBe(true);
  });

  test("req_event asks for the next request; notify only when rsp_event says so", () => {
    const f = frontend();
    f.post(T.getMapSize);
    f.publish();
    expect(f.ring.service(f.gnt).notify).toBe(true); // rsp_event 1 (SHARED_RING_INIT)
    expect(f.w[1]).toBe(2); // req_event = req_cons + 1
    f.w[3] = 10; // the frontend wants to hear only at the 10th response
    f.post(T.getMapSize);
    f.publish();
    expect(f.ring.service(f.gnt).notify).toBe(false);
  });

  test("a request rewritten after it was copied out is answered as it was read (XSA-155)", () => {
    const f = frontend();
    f.grant(1100, RSS_KEY);
    f.post(T.setKey, 1100, 40);
    f.publish();
    const seen: number[] = [];
    const gnt = f.gnt;
    const copy = gnt.copy.bind(gnt);
    // The guest rewrites the slot while the copy runs: the length the copy used is the one applied.
    gnt.copy = (b, n) => {
      f.dv.setUint32(64 + 8, 41, true);
      seen.push(n);
      return copy(b, n);
    };
    f.ring.service(gnt);
    expect(seen).toEqual([1]);
    expect(f.responses(0, 1)[0]!.status).toBe(S_OK);
    expect(Array.from(f.hash.key)).toEqual(Array.from(RSS_KEY));
  });
});

describe("VifHash: queue selection", () => {
  test("one queue: always 0; no hash configured: a flow stays on one queue; mapping size 0: hash % queues", () => {
    const one = new VifHash(1);
    const f = ipFrame({ v6: false });
    expect(one.selectQueue(f, 0, f.length)).toBe(0);
    const four = new VifHash(4);
    const q = four.selectQueue(f, 0, f.length);
    expect(q).toBe(VECTORS.ipv4Tcp % 4); // the default key is the vectors' key
    four.setAlgorithm(TOEPLITZ);
    four.setFlags(C.XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    four.setKey(RSS_KEY, 40);
    expect(four.selectQueue(f, 0, f.length)).toBe(VECTORS.ipv4 % 4);
  });
});
