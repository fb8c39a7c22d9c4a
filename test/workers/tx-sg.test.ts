// The tx path with feature-sg / feature-gso-tcpv4 negotiated, on a plain ring page with a fake grant
// device: multi-slot packets become one frame each (bytes compared), GSO extras become the frame's
// meta word for a peer that offloads, and every way a hostile guest can write a multi-slot packet is
// either answered with errors (tolerable) or disables the vif (a protocol violation).
import { toArrayBuffer } from "bun:ffi";
import { afterAll, describe, expect, test } from "bun:test";
import { buildUdpFrame, parseMac } from "../../src/net/frames.ts";
import type { FrameBatch } from "../../src/net/index.ts";
import { FRAME_META_CSUM, FRAME_META_GSO_TYPE_SHIFT } from "../../src/net/peer.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data } from "../../src/xen/netif.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { SeedTxPath } from "../../workers/seed-tx.ts";
import { TxPath } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 9;
const sg = new WorkerScratch(64, { scatterGather: true });
const small = new WorkerScratch(64);
afterAll(() => (sg.free(), small.free()));

const GSO = 1; // XEN_NETIF_EXTRA_TYPE_GSO
/** An extra-info slot's response: a status only (netback writes no id for it either). */
const NULL_RSP = { id: expect.any(Number), status: NETIF_RSP_NULL };
const TCPV4 = 1;

/** A recording peer that also keeps each frame's meta word; `offloads` as a vnet TAP. */
class MetaPeer extends RecordingPeer {
  readonly metas: number[] = [];
  constructor(readonly offloads: boolean) {
    super("tap");
  }
  override send(batch: FrameBatch): number {
    for (let i = 0; i < batch.count; i++) this.metas.push(batch.meta[i]);
    return super.send(batch);
  }
}

/** A guest whose tx ring carries multi-slot packets: each slot's bytes in its own granted page. */
function guest(features = { sg: true, gso: true }) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  let prod = 0;
  let ref = 100;
  const slot = (i: number) => 64 + (i & 255) * 12;
  const raw = (gref: number, offset: number, flags: number, id: number, size: number) => {
    const o = slot(prod++);
    r.dv.setUint32(o, gref, true);
    r.dv.setUint16(o + 4, offset, true);
    r.dv.setUint16(o + 6, flags, true);
    r.dv.setUint16(o + 8, id, true);
    r.dv.setUint16(o + 10, size, true);
  };
  return {
    ...r,
    gnt,
    tx: new TxPath(r.buf, DOM, features),
    raw,
    /** One packet: `chunks` bytes per slot at `offsets`, ids from `id`, an optional GSO extra. */
    packet(f: Uint8Array, chunks: number[], o: { id?: number; flags?: number; offsets?: number[]; gso?: { size: number; type: number }; extraType?: number } = {}) {
      let at = 0;
      let id = o.id ?? 1;
      for (let k = 0; k < chunks.length; k++) {
        const off = o.offsets?.[k] ?? 0;
        const page = gnt.grant(ref);
        page.set(f.subarray(at, at + chunks[k]), off);
        const more = k < chunks.length - 1 ? NETTXF_more_data : 0;
        const extra = k === 0 && (o.gso || o.extraType !== undefined) ? NETTXF_extra_info : 0;
        raw(ref++, off, (k === 0 ? (o.flags ?? 0) : 0) | more | extra, id++, k === 0 ? f.length : chunks[k]);
        at += chunks[k];
        if (k === 0 && o.extraType !== undefined) this.extra(o.extraType, 0, 0);
        else if (k === 0 && o.gso) this.extra(GSO, o.gso.size, o.gso.type);
      }
    },
    extra(type: number, size: number, gtype: number, more = false) {
      const o = slot(prod++);
      r.dv.setUint8(o, type);
      r.dv.setUint8(o + 1, more ? 1 : 0);
      r.dv.setUint16(o + 2, size, true);
      r.dv.setUint8(o + 4, gtype);
    },
    publish() {
      Atomics.store(r.w, 0, prod);
    },
    get prod() {
      return prod;
    },
    responses(from: number, to: number) {
      const out: { id: number; status: number }[] = [];
      for (let i = from; i !== to; i++) out.push({ id: r.dv.getUint16(slot(i), true), status: r.dv.getInt16(slot(i) + 2, true) });
      return out;
    },
  };
}

/** A TCP/IPv4 frame with `payload` bytes after the headers (checksum field left as the guest would). */
function tcpFrame(payload: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20 + payload);
  const dv = new DataView(f.buffer);
  f.set(parseMac("00:16:3e:00:00:02"), 0);
  f.set(parseMac("00:16:3e:00:00:01"), 6);
  dv.setUint16(12, 0x0800);
  f[14] = 0x45;
  dv.setUint16(16, 20 + 20 + payload);
  f[22] = 64;
  f[23] = 6;
  f.set([10, 0, 0, 1], 26);
  f.set([10, 0, 0, 2], 30);
  f[14 + 20 + 12] = 5 << 4;
  for (let i = 54; i < f.length; i++) f[i] = (i * 31) & 0xff;
  return f;
}

describe("tx with feature-sg: multi-slot packets", () => {
  test("a multi-slot packet arrives intact as one frame; one OKAY per slot, in request order; one copy and one send", () => {
    const g = guest();
    const peer = new RecordingPeer("null");
    const big = frame(9000, 3);
    g.packet(big, [1000, 4096, 7, 0, 3897], { id: 10, offsets: [3000, 0, 4089, 5, 199] });
    const after = frame(60, 4);
    g.packet(after, [60], { id: 20 });
    const odd = frame(1514, 5);
    g.packet(odd, [14, 500, 1000], { id: 30, offsets: [4082, 17, 3096] });
    g.publish();
    const c = counters();
    const pass = g.tx.service(64, sg, g.gnt, peer, c);
    expect(pass.fault).toBeNull();
    expect(pass.packets).toBe(3);
    expect(g.gnt.calls).toBe(1);
    expect(peer.sends).toBe(1);
    expect(peer.sent).toEqual([big, after, odd]);
    expect(g.responses(0, g.prod)).toEqual([10, 11, 12, 13, 14, 20, 30, 31, 32].map((id) => ({ id, status: NETIF_RSP_OKAY })));
    expect(c.tx_packets).toBe(3);
    expect(c.tx_bytes).toBe(9000 + 60 + 1514);
  });

  test("single-slot packets after multi-slot ones, in the same pass and in the next, each land in their own frame", () => {
    const g = guest();
    const peer = new RecordingPeer("null");
    const want: Uint8Array[] = [];
    const pass = (sizes: number[][]) => {
      for (const [k, chunks] of sizes.entries()) {
        const f = frame(chunks.reduce((a, b) => a + b, 0), want.length + k);
        want.push(f);
        g.packet(f, chunks, { id: want.length });
      }
      g.publish();
      expect(g.tx.service(64, sg, g.gnt, peer, counters()).fault).toBeNull();
    };
    pass([[60], [3000, 3000, 10], [100], [1514], [20, 20, 20], [200]]);
    pass([[61], [62], [63], [64], [65]]);
    pass([[4096, 4096], [66]]);
    expect(peer.sent).toEqual(want);
  });

  test("18 slots (XEN_NETIF_NR_SLOTS_MIN) of a 65535-byte packet are accepted", () => {
    const g = guest();
    const peer = new RecordingPeer("null");
    const f = frame(65535, 8);
    const chunks = [4095, ...Array.from({ length: 14 }, () => 4096), 1000, 1000];
    chunks.push(65535 - chunks.reduce((a, b) => a + b, 0));
    expect(chunks.length).toBe(18);
    g.packet(f, chunks);
    g.publish();
    const pass = g.tx.service(64, sg, g.gnt, peer, counters());
    expect(pass.fault).toBeNull();
    expect(peer.sent).toEqual([f]);
  });

  test("a failed grant in any slot answers the whole packet ERROR; the packets around it go out", () => {
    const g = guest();
    const peer = new RecordingPeer("null");
    g.packet(frame(100, 1), [100], { id: 1 });
    g.packet(frame(5000, 2), [3000, 2000], { id: 2 });
    g.gnt.pages.delete(102); // the second packet's fragment: not granted
    g.packet(frame(100, 3), [40, 60], { id: 4 });
    g.publish();
    const c = counters();
    g.tx.service(64, sg, g.gnt, peer, c);
    expect(g.responses(0, 5)).toEqual([
      { id: 1, status: NETIF_RSP_OKAY },
      { id: 2, status: NETIF_RSP_ERROR },
      { id: 3, status: NETIF_RSP_ERROR },
      { id: 4, status: NETIF_RSP_OKAY },
      { id: 5, status: NETIF_RSP_OKAY },
    ]);
    expect(peer.sent).toEqual([frame(100, 1), frame(100, 3)]);
    expect(c.tx_errors).toBe(2);
  });

  test("tolerable: a runt, a packet over the frame slot: ERROR for every slot (NULL for extras), the vif keeps working", () => {
    const g = guest();
    const peer = new RecordingPeer("null");
    g.packet(frame(13, 1), [6, 7], { id: 1 }); // 13 bytes: less than an Ethernet header
    // A runt whose head also crosses its page: too small is checked first, as in netback (an error).
    g.gnt.grant(500);
    g.gnt.grant(501);
    g.raw(500, 4090, NETTXF_more_data | NETTXF_extra_info, 3, 12);
    g.extra(GSO, 100, TCPV4);
    g.raw(501, 0, 0, 4, 2);
    g.publish();
    const c = counters();
    const p = g.tx.service(64, sg, g.gnt, peer, c);
    expect(p.fault).toBeNull();
    expect(g.responses(0, 5)).toEqual([
      { id: 1, status: NETIF_RSP_ERROR },
      { id: 2, status: NETIF_RSP_ERROR },
      { id: 3, status: NETIF_RSP_ERROR },
      NULL_RSP,
      { id: 4, status: NETIF_RSP_ERROR },
    ]);
    expect(c.tx_errors).toBe(4);
    // A worker without 64 KiB frame slots answers a packet larger than its slot with errors too.
    const h = guest();
    h.packet(frame(6000, 3), [3000, 3000], { id: 7 });
    h.packet(frame(60, 4), [60], { id: 9 });
    h.publish();
    const p2 = h.tx.service(64, small, h.gnt, peer, counters());
    expect(p2.fault).toBeNull();
    expect(h.responses(0, 3).map((r) => r.status)).toEqual([NETIF_RSP_ERROR, NETIF_RSP_ERROR, NETIF_RSP_OKAY]);
    // And the vif goes on: the next pass serves a good multi-slot packet.
    const f = frame(3000, 5);
    g.packet(f, [1000, 2000], { id: 11 });
    g.publish();
    peer.sent.length = 0;
    expect(g.tx.service(64, sg, g.gnt, peer, counters()).fault).toBeNull();
    expect(peer.sent).toEqual([f]);
  });

  test("not negotiated: with feature-sg but no GSO an extra-info packet, and without feature-sg a multi-slot one, are answered ERROR whole", () => {
    const g = guest({ sg: true, gso: false });
    const peer = new RecordingPeer("null");
    g.packet(frame(200, 1), [100, 100], { id: 1, gso: { size: 50, type: TCPV4 } });
    g.packet(frame(60, 2), [60], { id: 3 });
    g.publish();
    g.tx.service(64, sg, g.gnt, peer, counters());
    expect(g.responses(0, 4)).toEqual([
      { id: 1, status: NETIF_RSP_ERROR },
      NULL_RSP,
      { id: 2, status: NETIF_RSP_ERROR },
      { id: 3, status: NETIF_RSP_OKAY },
    ]);
    const h = guest({ sg: false, gso: false });
    h.packet(frame(200, 1), [100, 100], { id: 1 });
    h.publish();
    h.tx.service(64, sg, h.gnt, peer, counters());
    expect(h.responses(0, 2).map((r) => r.status)).toEqual([NETIF_RSP_ERROR, NETIF_RSP_ERROR]);
    expect(peer.sent).toEqual([frame(60, 2)]);
  });
});

describe("tx: one slot walk for every packet, Linux's limits", () => {
  // A packet of 20 slots (the first and 19 fragments) behind one GSO extra: 21 ring slots. The
  // extra does not count toward the 20 (netback's xenvif_count_requests counts the more_data chain
  // only), whether the extra was negotiated or the packet is refused for using it.
  const post = (g: ReturnType<typeof guest>) => {
    g.packet(frame(20 * 60, 1), Array.from({ length: 20 }, () => 60), { id: 1, gso: { size: 1448, type: TCPV4 } });
    g.publish();
    expect(g.prod).toBe(21);
  };

  test("negotiated: 20 slots and an extra are one packet", () => {
    const g = guest();
    post(g);
    const peer = new RecordingPeer("null");
    const p = g.tx.service(64, sg, g.gnt, peer, counters());
    expect(p.fault).toBeNull();
    expect(peer.sent).toEqual([frame(20 * 60, 1)]);
    expect(g.responses(0, 21).map((r) => r.status)).toEqual([NETIF_RSP_OKAY, NETIF_RSP_NULL, ...Array.from({ length: 19 }, () => NETIF_RSP_OKAY)]);
  });

  for (const path of ["batched", "seed"] as const) {
    test(`not negotiated (${path} path): 20 slots and an extra are answered ERROR whole (NULL for the extra), not a fault`, () => {
      const g = guest({ sg: true, gso: false });
      post(g);
      const tx = path === "batched" ? g.tx : new SeedTxPath(g.buf, DOM);
      const c = counters();
      const p = tx.service(64, sg, g.gnt, new RecordingPeer("null"), c);
      expect(p.fault).toBeNull();
      expect(tx.reqCons).toBe(21);
      expect(g.responses(0, 21)).toEqual([{ id: 1, status: NETIF_RSP_ERROR }, NULL_RSP, ...Array.from({ length: 19 }, (_, k) => ({ id: 2 + k, status: NETIF_RSP_ERROR }))]);
      expect(c.tx_packets).toBe(0);
    });
  }

  test("not negotiated: 21 slots behind an extra are a fault on both paths, nothing consumed", () => {
    for (const path of ["batched", "seed"] as const) {
      const g = guest({ sg: true, gso: false });
      g.packet(frame(21 * 60, 1), Array.from({ length: 21 }, () => 60), { id: 1, gso: { size: 1448, type: TCPV4 } });
      g.publish();
      const tx = path === "batched" ? g.tx : new SeedTxPath(g.buf, DOM);
      const p = tx.service(64, sg, g.gnt, new RecordingPeer("null"), counters());
      expect(p.fault).toBe("tx packet at 0x0 spans more than 20 slots");
      expect(tx.reqCons).toBe(0);
      expect(Atomics.load(g.w, 2)).toBe(0);
    }
  });
});

describe("tx with feature-gso-tcpv4: the GSO extra", () => {
  test("a GSO packet's frame carries gso size, type and checksum-partial as its meta word; the extra slot is answered NULL", () => {
    const g = guest();
    const peer = new MetaPeer(true);
    const f = tcpFrame(20000);
    g.packet(f, [2000, 4096, 4096, 4096, 4096, f.length - 2000 - 4 * 4096], { id: 1, gso: { size: 1448, type: TCPV4 } });
    const plain = frame(60, 9);
    g.packet(plain, [60], { id: 7 });
    const blank = buildUdpFrame({ size: 300, srcMac: parseMac("00:16:3e:00:00:01"), dstMac: parseMac("00:16:3e:00:00:02"), srcIp: [10, 0, 0, 1], dstIp: [10, 0, 0, 2], srcPort: 5, dstPort: 6 });
    blank[14 + 20 + 6] = 0xee; // left for the host side to complete
    g.packet(blank, [300], { id: 8, flags: NETTXF_csum_blank });
    g.publish();
    const c = counters();
    const p = g.tx.service(64, sg, g.gnt, peer, c);
    expect(p.fault).toBeNull();
    expect(g.responses(0, g.prod)).toEqual([
      { id: 1, status: NETIF_RSP_OKAY },
      NULL_RSP,
      ...[2, 3, 4, 5, 6].map((id) => ({ id, status: NETIF_RSP_OKAY })),
      { id: 7, status: NETIF_RSP_OKAY },
      { id: 8, status: NETIF_RSP_OKAY },
    ]);
    expect(peer.sent).toEqual([f, plain, blank]); // no software checksum: the peer completes it
    expect(peer.metas).toEqual([FRAME_META_CSUM | (TCPV4 << FRAME_META_GSO_TYPE_SHIFT) | 1448, 0, FRAME_META_CSUM]);
    expect(c.ffi_calls).toBe(2); // copy, send: no checksum call
  });

  test("a TCPv6 GSO extra gives the frame GSO type 2 in its meta word", () => {
    const g = guest();
    const peer = new MetaPeer(true);
    g.packet(frame(5000, 1), [1000, 4000], { id: 1, gso: { size: 1200, type: 2 } });
    g.publish();
    expect(g.tx.service(64, sg, g.gnt, peer, counters()).fault).toBeNull();
    expect(peer.metas).toEqual([FRAME_META_CSUM | (2 << FRAME_META_GSO_TYPE_SHIFT) | 1200]);
  });

  test("a peer without offloads gets a multi-slot csum_blank frame's checksum filled in software", () => {
    const g = guest();
    const peer = new MetaPeer(false);
    const good = buildUdpFrame({ size: 300, srcMac: parseMac("00:16:3e:00:00:01"), dstMac: parseMac("00:16:3e:00:00:02"), srcIp: [10, 0, 0, 1], dstIp: [10, 0, 0, 2], srcPort: 5, dstPort: 6 });
    const blank = good.slice();
    blank[14 + 20 + 6] = 0xee;
    g.packet(blank, [100, 200], { id: 1, flags: NETTXF_csum_blank });
    g.publish();
    g.tx.service(64, sg, g.gnt, peer, counters());
    expect(peer.sent).toEqual([good]); // (meta words are for peers with offloads only)
  });
});

describe("tx with feature-sg: protocol violations disable the vif", () => {
  // The bad packet starts at ring index 2, after a good two-slot packet.
  const cases: [string, (g: ReturnType<typeof guest>) => void, string][] = [
    ["more than 20 slots", (g) => g.packet(frame(21 * 60, 1), Array.from({ length: 21 }, () => 60), { id: 5 }), "tx packet at 0x2 spans more than 20 slots"],
    ["fragments past req_prod", (g) => g.raw(300, 0, NETTXF_more_data, 5, 100), "tx packet at 0x2 continues past req_prod 0x3"],
    ["extras past req_prod", (g) => g.raw(300, 0, NETTXF_extra_info, 5, 100), "tx packet at 0x2 continues past req_prod 0x3"],
    ["a fragment larger than what is left", (g) => (g.raw(300, 0, NETTXF_more_data, 5, 1000), g.raw(301, 0, NETTXF_more_data, 6, 600), g.raw(302, 0, 0, 7, 401)), "tx packet at 0x2: a fragment of 401 bytes is larger than the 400 left of its size"],
    ["a fragment crossing its page", (g) => (g.raw(300, 0, NETTXF_more_data, 5, 1000), g.raw(301, 4000, 0, 6, 97)), "tx packet at 0x2: a fragment at offset 4000 of 97 bytes crosses its page"],
    // netback's "Cross page boundary": the head's own bytes (size less the fragments') past the page.
    ["a first slot crossing its page", (g) => (g.raw(300, 4000, NETTXF_more_data, 5, 200), g.raw(301, 0, 0, 6, 50)), "tx packet at 0x2: its first slot at offset 4000 with 150 bytes crosses its page"],
    ["a first slot crossing its page, with a GSO extra", (g) => (g.raw(300, 4000, NETTXF_more_data | NETTXF_extra_info, 5, 200), g.extra(GSO, 100, TCPV4), g.raw(301, 0, 0, 6, 50)), "tx packet at 0x2: its first slot at offset 4000 with 150 bytes crosses its page"],
    ["a single-slot packet crossing its page", (g) => (g.gnt.grant(300), g.raw(300, 4000, 0, 5, 200)), "tx packet at 0x2: its first slot at offset 4000 with 200 bytes crosses its page"],
    ["an unknown extra type", (g) => g.packet(frame(100, 1), [100], { id: 5, extraType: 5 }), "tx extra info type 5 is unknown"],
    ["extra type 0", (g) => g.packet(frame(100, 1), [100], { id: 5, extraType: 0 }), "tx extra info type 0 is unknown"],
    ["GSO size 0", (g) => g.packet(frame(100, 1), [100], { id: 5, gso: { size: 0, type: TCPV4 } }), "tx packet at 0x2: GSO size is 0"],
    ["an unknown GSO type", (g) => g.packet(frame(100, 1), [100], { id: 5, gso: { size: 1000, type: 3 } }), "tx packet at 0x2: GSO type 3 is unknown"],
  ];
  for (const [name, bad, msg] of cases) {
    test(`${name}: a fault naming it; the packet before it is answered and sent, the faulty one is not`, () => {
      const g = guest();
      const peer = new RecordingPeer("null");
      const ok = frame(3000, 2);
      g.packet(ok, [1000, 2000], { id: 1 });
      bad(g);
      g.publish();
      const p = g.tx.service(64, sg, g.gnt, peer, counters());
      expect(p.fault).toBe(msg);
      expect(peer.sent).toEqual([ok]);
      expect(Atomics.load(g.w, 2)).toBe(2); // only the good packet's two slots were answered
      expect(g.tx.reqCons).toBe(2);
    });
  }
});

test("the frame batch keeps meta words in native memory next to the lengths", () => {
  const b = sg.txFrames;
  expect(b.metaAddr).toBe(b.lensAddr + (b.base - b.lensAddr) / 2);
  b.meta[3] = 0x1234;
  expect(new Uint32Array(toArrayBuffer(b.metaAddr, 0, 16))[3]).toBe(0x1234);
  b.meta[3] = 0;
});

test("hostile rings (seeded random slots: any flags, sizes, offsets, extras): never a throw; every consumed slot answered once, or a fault that consumes nothing more", () => {
  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const pick = <T,>(xs: T[]) => xs[rnd(xs.length)]!;
  let faults = 0;
  let okays = 0;
  for (let round = 0; round < 300; round++) {
    const g = guest();
    const peer = new MetaPeer(round % 2 === 0);
    for (let ref = 100; ref < 140; ref++) g.gnt.grant(ref).fill(ref);
    const n = 1 + rnd(255);
    for (let i = 0; i < n; i++) {
      if (rnd(8) === 0) g.extra(pick([0, 1, 1, 1, 2, 3, 4, 5, 200]), pick([0, 1, 1448, 65535]), pick([0, 1, 2, 3]), rnd(3) === 0);
      else g.raw(100 + rnd(45), pick([0, 0, 1, 2000, 4095, 4096, 60000]), rnd(16), rnd(65536), pick([0, 1, 13, 14, 60, 1514, 4096, 4097, 9000, 65535]));
    }
    g.publish();
    let prevCons = g.tx.reqCons;
    for (let pass = 0; pass < 10; pass++) {
      const p = g.tx.service(1 + rnd(64), sg, g.gnt, peer, counters());
      // Every slot consumed in this pass is answered exactly once, in order.
      expect(Atomics.load(g.w, 2)).toBe(g.tx.reqCons);
      expect(p.slots).toBe((g.tx.reqCons - prevCons) >>> 0);
      for (const r of g.responses(prevCons, g.tx.reqCons)) expect([NETIF_RSP_OKAY, NETIF_RSP_ERROR, NETIF_RSP_NULL]).toContain(r.status);
      prevCons = g.tx.reqCons;
      if (p.fault !== null) {
        faults++;
        expect(p.fault).toMatch(/^tx (packet at 0x[0-9a-f]+|extra info type \d+ is unknown)/);
        break;
      }
      if (g.tx.reqCons === g.prod) break;
    }
    okays += g.responses(0, g.tx.reqCons).filter((r) => r.status === NETIF_RSP_OKAY).length;
    for (const f of peer.sent) expect(f.length).toBeGreaterThanOrEqual(14);
  }
  // The mix exercises both outcomes.
  expect(faults).toBeGreaterThan(0);
  expect(okays).toBeGreaterThan(0);
});
