// The tx data path on a plain ring page with a fake grant device and a recording peer: ring.h's
// index rules, one copy call and one send per pass, and every hostile request the guest can write.
import { afterAll, describe, expect, test } from "bun:test";
import { buildUdpFrame, parseMac } from "../../src/net/frames.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data } from "../../src/xen/netif.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 7;
const scratch = new WorkerScratch(64);
afterAll(() => scratch.free());

/** A guest's tx ring: posts requests, one granted page per request (ref = 100 + id by default). */
function guest(at = 0) {
  const r = ringPage(at);
  const gnt = new FakeGrants(DOM);
  let prod = at >>> 0;
  const slot = (i: number) => 64 + (i & 255) * 12;
  return {
    ...r,
    gnt,
    tx: new TxPath(r.buf, DOM),
    get prod() {
      return prod;
    },
    post(id: number, data: Uint8Array | null, o: { offset?: number; flags?: number; size?: number; gref?: number } = {}) {
      const gref = o.gref ?? 100 + id;
      const offset = o.offset ?? 0;
      if (data) gnt.grant(gref).set(data, offset);
      const off = slot(prod);
      r.dv.setUint32(off, gref, true);
      r.dv.setUint16(off + 4, offset, true);
      r.dv.setUint16(off + 6, o.flags ?? 0, true);
      r.dv.setUint16(off + 8, id, true);
      r.dv.setUint16(off + 10, o.size ?? data?.length ?? 60, true);
      prod = (prod + 1) >>> 0;
      return prod - 1;
    },
    extra(type: number, more = false) {
      const off = slot(prod);
      r.dv.setUint8(off, type);
      r.dv.setUint8(off + 1, more ? 1 : 0);
      prod = (prod + 1) >>> 0;
    },
    publish() {
      Atomics.store(r.w, 0, prod);
    },
    responses(from: number, to: number) {
      const out: { id: number; status: number }[] = [];
      for (let i = from; i !== to; i = (i + 1) >>> 0) out.push({ id: r.dv.getUint16(slot(i), true), status: r.dv.getInt16(slot(i) + 2, true) });
      return out;
    },
  };
}

describe("tx: frames to the peer", () => {
  test("frames of every size 14..1514 arrive intact, one grant-copy call and one send per pass, one OKAY per request", () => {
    const g = guest();
    const peer = new RecordingPeer();
    const c = counters();
    const want: Uint8Array[] = [];
    let id = 0;
    for (let size = 14; size <= 1514; ) {
      const batch: number[] = [];
      for (let k = 0; k < 64 && size <= 1514; k++, size++) {
        const f = frame(size, size);
        want.push(f);
        batch.push(id);
        g.post(id++ & 0xffff, f, { offset: (size * 3) % (4096 - size) });
      }
      g.publish();
      const from = g.tx.rspProdPvt;
      const calls = g.gnt.calls;
      const sends = peer.sends;
      const pass = g.tx.service(64, scratch, g.gnt, peer, c);
      expect(pass.fault).toBeNull();
      expect(pass.packets).toBe(batch.length);
      expect(g.gnt.calls - calls).toBe(1);
      expect(peer.sends - sends).toBe(1);
      expect(g.responses(from, g.tx.rspProdPvt)).toEqual(batch.map((i) => ({ id: i & 0xffff, status: NETIF_RSP_OKAY })));
      expect(Atomics.load(g.w, 2)).toBe(g.tx.rspProdPvt);
    }
    expect(peer.sent.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(peer.sent[i]).toEqual(want[i]);
    expect(c.tx_packets).toBe(1501);
    expect(c.tx_bytes).toBe(want.reduce((a, f) => a + f.length, 0));
    expect(c.tx_errors).toBe(0);
  });

  test("a whole page (offset 0, size 4096) is one frame", () => {
    const g = guest();
    const peer = new RecordingPeer();
    const f = frame(4096, 1);
    g.post(1, f);
    g.publish();
    g.tx.service(64, scratch, g.gnt, peer, counters());
    expect(peer.sent).toEqual([f]);
  });

  test("csum_blank frames leave with their UDP checksum filled; others untouched", () => {
    const g = guest();
    const peer = new RecordingPeer();
    const good = buildUdpFrame({ size: 200, srcMac: parseMac("00:16:3e:00:00:01"), dstMac: parseMac("00:16:3e:00:00:02"), srcIp: [10, 0, 0, 1], dstIp: [10, 0, 0, 2], srcPort: 5, dstPort: 6 });
    const blank = good.slice();
    blank[14 + 20 + 6] = 0x12; // a partial (pseudo-header) sum or garbage: the backend must compute it
    blank[14 + 20 + 7] = 0x34;
    g.post(1, blank, { flags: NETTXF_csum_blank });
    g.post(2, blank);
    g.publish();
    const c = counters();
    g.tx.service(64, scratch, g.gnt, peer, c);
    expect(peer.sent[0]).toEqual(good);
    expect(peer.sent[1]).toEqual(blank);
    expect(c.ffi_calls).toBe(3); // copy, checksums, send
  });
});

describe("tx: ring rules", () => {
  test("stops at the budget and says more work remains; the rest comes next pass, in order", () => {
    const g = guest();
    const peer = new RecordingPeer();
    for (let i = 0; i < 10; i++) g.post(i, frame(60, i));
    g.publish();
    const c = counters();
    const a = g.tx.service(4, scratch, g.gnt, peer, c);
    expect([a.packets, a.more]).toEqual([4, true]);
    const b = g.tx.service(64, scratch, g.gnt, peer, c);
    expect([b.packets, b.more]).toEqual([6, false]);
    expect(g.responses(0, 10).map((r) => r.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("notifies only when the frontend's rsp_event asks for it", () => {
    const g = guest();
    const peer = new RecordingPeer();
    g.post(1, frame(60, 1));
    g.publish();
    expect(g.tx.service(64, scratch, g.gnt, peer, counters()).notify).toBe(true); // rsp_event 1
    g.post(2, frame(60, 2));
    g.publish();
    // The frontend has not consumed: rsp_event still 1, the event for response 1 covers this one.
    expect(g.tx.service(64, scratch, g.gnt, peer, counters()).notify).toBe(false);
    Atomics.store(g.w, 3, 3);
    g.post(3, frame(60, 3));
    g.publish();
    expect(g.tx.service(64, scratch, g.gnt, peer, counters()).notify).toBe(true);
  });

  test("the final check arms req_event at req_cons + 1 and reports requests posted meanwhile", () => {
    const g = guest();
    const peer = new RecordingPeer();
    g.post(1, frame(60, 1));
    g.publish();
    g.tx.service(64, scratch, g.gnt, peer, counters());
    expect(g.tx.finalCheck()).toBe(false);
    expect(Atomics.load(g.w, 1)).toBe(2);
    g.post(2, frame(60, 2));
    g.publish();
    expect(g.tx.finalCheck()).toBe(true);
  });

  test("works across the u32 wrap of the indices", () => {
    const g = guest(0xfffffffe);
    const peer = new RecordingPeer();
    for (let i = 0; i < 5; i++) g.post(i, frame(60, i));
    g.publish();
    const p = g.tx.service(64, scratch, g.gnt, peer, counters());
    expect(p.packets).toBe(5);
    expect(g.tx.rspProdPvt).toBe(3);
    expect(g.responses(0xfffffffe, 3).map((r) => r.id)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe("tx: a hostile guest", () => {
  test("req_prod more than a ring ahead is a fault, and nothing is answered", () => {
    const g = guest();
    Atomics.store(g.w, 0, 257);
    const p = g.tx.service(64, scratch, g.gnt, new RecordingPeer(), counters());
    expect(p.fault).toBe("tx req_prod 0x101 is more than a ring ahead of 0x0");
    expect(Atomics.load(g.w, 2)).toBe(0);
  });

  test("bad requests get NETIF_RSP_ERROR alone; the good ones around them go out", () => {
    const g = guest();
    const peer = new RecordingPeer();
    const ok = [frame(60, 1), frame(100, 2), frame(1514, 3)];
    g.post(1, ok[0]);
    g.post(2, frame(13, 9)); // under an Ethernet header
    g.post(3, null, { gref: 5001, size: 13 }); // under an Ethernet header, ungranted: never copied
    g.post(4, null, { gref: 5000, size: 60 }); // never granted: bad gref
    g.post(5, ok[1]);
    g.gnt.grant(6000);
    g.gnt.foreign.add(6000);
    g.post(6, null, { gref: 6000, size: 60 }); // granted to another domain
    g.post(7, ok[2]);
    g.publish();
    const c = counters();
    const p = g.tx.service(64, scratch, g.gnt, peer, c);
    expect(p.fault).toBeNull();
    expect(g.responses(0, 7)).toEqual([
      { id: 1, status: NETIF_RSP_OKAY },
      { id: 2, status: NETIF_RSP_ERROR },
      { id: 3, status: NETIF_RSP_ERROR },
      { id: 4, status: NETIF_RSP_ERROR },
      { id: 5, status: NETIF_RSP_OKAY },
      { id: 6, status: NETIF_RSP_ERROR },
      { id: 7, status: NETIF_RSP_OKAY },
    ]);
    expect(peer.sent).toEqual(ok);
    expect(c.tx_errors).toBe(4);
    expect(c.tx_packets).toBe(3);
    expect(g.gnt.calls).toBe(1);
  });

  test("more_data (no feature-sg): every slot of the packet is answered ERROR and consumed, the next packet goes out", () => {
    const g = guest();
    const peer = new RecordingPeer();
    g.post(1, frame(3000, 1), { flags: NETTXF_more_data, size: 3000 });
    g.post(2, frame(500, 2), { flags: NETTXF_more_data });
    g.post(3, frame(100, 3));
    g.post(4, frame(60, 4));
    g.publish();
    const c = counters();
    g.tx.service(64, scratch, g.gnt, peer, c);
    expect(g.responses(0, 4)).toEqual([
      { id: 1, status: NETIF_RSP_ERROR },
      { id: 2, status: NETIF_RSP_ERROR },
      { id: 3, status: NETIF_RSP_ERROR },
      { id: 4, status: NETIF_RSP_OKAY },
    ]);
    expect(peer.sent).toEqual([frame(60, 4)]);
    expect(c.tx_errors).toBe(3);
  });

  test("extra_info (no GSO offered): ERROR for the packet, NULL for its extra slots; never read as requests", () => {
    const g = guest();
    const peer = new RecordingPeer();
    g.post(1, frame(60, 1), { flags: NETTXF_extra_info });
    g.extra(1, true);
    g.extra(2);
    g.post(2, frame(60, 2));
    g.publish();
    g.tx.service(64, scratch, g.gnt, peer, counters());
    const r = g.responses(0, 4);
    expect(r[0]).toEqual({ id: 1, status: NETIF_RSP_ERROR });
    expect([r[1].status, r[2].status]).toEqual([NETIF_RSP_NULL, NETIF_RSP_NULL]);
    expect(r[3]).toEqual({ id: 2, status: NETIF_RSP_OKAY });
    expect(peer.sent).toEqual([frame(60, 2)]);
  });

  test("a packet continuing past req_prod, an unknown extra type, more than 20 slots: faults, earlier packets answered", () => {
    const cases: [string, (g: ReturnType<typeof guest>) => void, RegExp][] = [
      ["past req_prod", (g) => g.post(9, frame(60, 9), { flags: NETTXF_more_data }), /^tx packet at 0x1 continues past req_prod 0x2$/],
      ["unknown extra", (g) => (g.post(9, frame(60, 9), { flags: NETTXF_extra_info }), g.extra(7)), /^tx extra info type 7 is unknown$/],
      ["21 slots", (g) => { for (let i = 0; i < 21; i++) g.post(9, frame(60, 9), { flags: NETTXF_more_data }); }, /^tx packet at 0x1 spans more than 20 slots$/],
    ];
    for (const [, bad, msg] of cases) {
      const g = guest();
      const peer = new RecordingPeer();
      g.post(1, frame(60, 1));
      bad(g);
      g.publish();
      const p = g.tx.service(64, scratch, g.gnt, peer, counters());
      expect(p.fault).toMatch(msg);
      expect(peer.sent).toEqual([frame(60, 1)]);
      expect(Atomics.load(g.w, 2)).toBe(1);
    }
  });

  test("copy once: a request rewritten after the backend read it changes nothing the backend does", () => {
    const g = guest();
    const peer = new RecordingPeer();
    const f = frame(300, 5);
    const at = g.post(42, f);
    g.publish();
    // The guest rewrites the slot while the copy is in flight (after the read, before the response).
    const copy = g.gnt.copy.bind(g.gnt);
    g.gnt.copy = (b, n) => {
      const off = 64 + (at & 255) * 12;
      g.dv.setUint16(off + 10, 4000, true); // size
      g.dv.setUint16(off + 8, 7, true); // id
      g.dv.setUint16(off + 6, NETTXF_more_data, true);
      return copy(b, n);
    };
    g.tx.service(64, scratch, g.gnt, peer, counters());
    expect(peer.sent).toEqual([f]);
    expect(g.responses(0, 1)).toEqual([{ id: 42, status: NETIF_RSP_OKAY }]);
    // Rewritten again between batches: the slot is answered, the backend never reads it again.
    g.gnt.copy = copy;
    g.dv.setUint16(64 + 10, 13, true);
    const p = g.tx.service(64, scratch, g.gnt, peer, counters());
    expect(p.slots).toBe(0);
    expect(peer.sent.length).toBe(1);
  });
});
