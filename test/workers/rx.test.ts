// The rx data path on a plain ring page with a fake grant device and a peer that hands out frames:
// responses in the request's own slot at offset 2, one copy per receive batch, the byte-bounded
// queue, and the carrier going off for a frontend that stops posting buffers.
import { afterAll, describe, expect, test } from "bun:test";
import { NETIF_RSP_ERROR } from "../../src/xen/netif.ts";
import { RxPath } from "../../workers/rx.ts";
import { RxQueue } from "../../workers/rx-queue.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 9;
const scratch = new WorkerScratch(64);
afterAll(() => scratch.free());

function guest(o: { at?: number; queueBytes?: number; stallMs?: number } = {}) {
  const r = ringPage(o.at ?? 0);
  const gnt = new FakeGrants(DOM);
  let prod = (o.at ?? 0) >>> 0;
  const rx = new RxPath(r.buf, DOM, o.queueBytes ?? 128 * 4096, o.stallMs ?? 60_000);
  const slot = (i: number) => 64 + (i & 255) * 8;
  /** Buffers by slot index: Linux netfront finds the buffer by slot. */
  const bufs = new Map<number, { id: number; gref: number }>();
  return {
    ...r,
    gnt,
    rx,
    post(n: number, o2: { gref?: (i: number) => number; id?: (i: number) => number } = {}) {
      for (let k = 0; k < n; k++) {
        const idx = prod;
        const id = o2.id ? o2.id(idx) : (idx * 3 + 1) & 0xffff;
        const gref = o2.gref ? o2.gref(idx) : 1000 + (idx & 255);
        if (!gnt.pages.has(gref) && !o2.gref) gnt.grant(gref);
        r.dv.setUint16(slot(idx), id, true);
        r.dv.setUint32(slot(idx) + 4, gref, true);
        bufs.set(idx & 255, { id, gref });
        prod = (prod + 1) >>> 0;
      }
      Atomics.store(r.w, 0, prod);
    },
    /** Responses [from, to) with the frame each buffer holds. */
    responses(from: number, to: number) {
      const out: { id: number; offset: number; flags: number; status: number; frame: Uint8Array | null; reqId: number }[] = [];
      for (let i = from; i !== to; i = (i + 1) >>> 0) {
        const o3 = slot(i);
        const status = r.dv.getInt16(o3 + 6, true);
        const offset = r.dv.getUint16(o3 + 2, true);
        const b = bufs.get(i & 255)!;
        out.push({ id: r.dv.getUint16(o3, true), offset, flags: r.dv.getUint16(o3 + 4, true), status, frame: status > 0 ? gnt.pages.get(b.gref)!.slice(offset, offset + status) : null, reqId: b.id });
      }
      return out;
    },
  };
}

describe("rx: frames into the guest", () => {
  test("frames of every size 14..1514 and up to 4094 land at offset 2 in the request's own slot, id echoed, flags 0", () => {
    const g = guest();
    const peer = new RecordingPeer("tap");
    const c = counters();
    const sizes = [...Array.from({ length: 1501 }, (_, i) => 14 + i), 4000, 4094];
    let next = 0;
    while (next < sizes.length) {
      const n = Math.min(256, sizes.length - next);
      const from = g.rx.rspProdPvt;
      g.post(n);
      const frames = sizes.slice(next, next + n).map((s, i) => frame(s, next + i));
      peer.give(...frames);
      const calls = g.gnt.calls;
      const p = g.rx.service(peer, 8, scratch, g.gnt, c);
      expect(p.fault).toBeNull();
      expect(g.gnt.calls - calls).toBe(Math.ceil(n / 64) + (n % 64 === 0 ? 0 : 0)); // one copy per receive batch
      const r = g.responses(from, g.rx.rspProdPvt);
      expect(r.length).toBe(n);
      for (let i = 0; i < n; i++) {
        expect(r[i].id).toBe(r[i].reqId);
        expect([r[i].offset, r[i].flags, r[i].status]).toEqual([2, 0, frames[i].length]);
        expect(r[i].frame).toEqual(frames[i]);
      }
      expect(Atomics.load(g.w, 2)).toBe(g.rx.rspProdPvt);
      next += n;
    }
    expect(c.rx_packets).toBe(sizes.length);
    expect(c.rx_drops).toBe(0);
  });

  test("a frame over 4094 bytes is dropped and counted; a bad gref answers only its own request with ERROR", () => {
    const g = guest();
    const peer = new RecordingPeer("tap");
    const c = counters();
    g.post(3, { gref: (i) => (i === 1 ? 77777 : 1000 + i) });
    g.gnt.grant(1000);
    g.gnt.grant(1002);
    peer.give(frame(60, 1), frame(4095, 2), frame(70, 3), frame(80, 4));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    const r = g.responses(0, 3);
    expect(r.map((x) => x.status)).toEqual([60, NETIF_RSP_ERROR, 80]);
    expect(r[0].frame).toEqual(frame(60, 1));
    expect(r[2].frame).toEqual(frame(80, 4));
    expect([c.rx_packets, c.rx_errors, c.rx_drops]).toEqual([2, 1, 1]);
  });

  test("notify only when rsp_event asks; across the u32 wrap", () => {
    const g = guest({ at: 0xfffffff0 });
    const peer = new RecordingPeer("tap");
    g.post(40);
    peer.give(...Array.from({ length: 40 }, (_, i) => frame(100, i)));
    expect(g.rx.service(peer, 4, scratch, g.gnt, counters()).notify).toBe(true);
    expect(g.rx.rspProdPvt).toBe(0x18);
    peer.give(frame(100, 50));
    expect(g.rx.service(peer, 4, scratch, g.gnt, counters()).notify).toBe(false);
  });

  test("rx req_prod more than a ring ahead faults the vif", () => {
    const g = guest();
    Atomics.store(g.w, 0, 300);
    const peer = new RecordingPeer("tap");
    peer.give(frame(60, 1));
    expect(g.rx.service(peer, 4, scratch, g.gnt, counters()).fault).toBe("rx req_prod 0x12c is more than a ring ahead of 0x0");
  });

  test("copy once: an rx request rewritten after it was read changes nothing", () => {
    const g = guest();
    const peer = new RecordingPeer("tap");
    g.post(1);
    const copy = g.gnt.copy.bind(g.gnt);
    g.gnt.copy = (b, n) => {
      g.dv.setUint16(64, 999, true); // id
      g.dv.setUint32(64 + 4, 55555, true); // gref
      return copy(b, n);
    };
    peer.give(frame(90, 1));
    g.rx.service(peer, 4, scratch, g.gnt, counters());
    expect(g.dv.getUint16(64, true)).toBe(1); // the id read first, written back in the response
    expect(Array.from(g.gnt.pages.get(1000)!.slice(2, 92))).toEqual(Array.from(frame(90, 1)));
  });
});

describe("rx: no buffers posted", () => {
  test("frames wait in a queue bounded in bytes, in order; past it they are dropped and counted", () => {
    const g = guest({ queueBytes: 16 * 1024 });
    const peer = new RecordingPeer("tap");
    const c = counters();
    const frames = Array.from({ length: 20 }, (_, i) => frame(1000, i));
    peer.give(...frames);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.queue.length).toBe(16);
    expect(c.rx_queue_bytes).toBe(16000);
    expect(c.rx_drops).toBe(4);
    // req_event armed so posting wakes us
    expect(Atomics.load(g.w, 1)).toBe(1);
    g.post(10);
    peer.give(frame(500, 99));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    const r = g.responses(0, 10);
    expect(r.map((x) => x.frame)).toEqual(frames.slice(0, 10));
    g.post(20);
    g.rx.service(null, 4, scratch, g.gnt, c);
    const r2 = g.responses(10, g.rx.rspProdPvt);
    expect(r2.map((x) => x.frame)).toEqual([...frames.slice(10, 16), frame(500, 99)]);
    expect(c.rx_queue_bytes).toBe(0);
  });

  test("a frontend that posts nothing for the stall time loses its carrier (queue dropped), and gets it back when it posts", async () => {
    // The stall is timed from the last frame placed (netback's last_rx_time), here from the
    // path's creation: long enough that a loaded machine still serves the first pass within it.
    const g = guest({ stallMs: 250 });
    const peer = new RecordingPeer("tap");
    const c = counters();
    c.carrier = 1;
    peer.give(frame(100, 1), frame(100, 2));
    expect(g.rx.service(peer, 4, scratch, g.gnt, c).carrier).toBe(0);
    expect(g.rx.stalled).toBe(true);
    await Bun.sleep(260);
    const p = g.rx.service(null, 4, scratch, g.gnt, c);
    expect(p.carrier).toBe(-1);
    expect([c.carrier, c.rx_drops, g.rx.queue.length]).toEqual([0, 2, 0]);
    // carrier off: frames are dropped at once, not queued
    peer.give(frame(100, 3));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([c.rx_drops, g.rx.queue.length]).toEqual([3, 0]);
    g.post(4);
    peer.give(frame(100, 4));
    expect(g.rx.service(peer, 4, scratch, g.gnt, c).carrier).toBe(1);
    expect(c.carrier).toBe(1);
    expect(g.responses(0, 1)[0].frame).toEqual(frame(100, 4));
  });
});

describe("RxQueue", () => {
  test("wraps its byte ring without overwriting frames a copy still reads, and charges at least 64 bytes a frame", () => {
    const q = new RxQueue(8192);
    const src = frame(4094, 1);
    expect(q.push(src, 0, 3000)).toBe(true);
    expect(q.push(src, 0, 3000)).toBe(true);
    expect(q.push(src, 0, 3000)).toBe(false); // 9000 > 8192
    q.take(1);
    q.commit();
    expect(q.push(src, 0, 3000)).toBe(true); // wraps to the start, before the oldest (3000..6000)
    expect(q.bytes).toBe(6000);
    q.purge();
    for (let i = 0; i < 128; i++) expect(q.push(src, 0, 14)).toBe(true);
    expect(q.push(src, 0, 14)).toBe(false);
    expect(q.bytes).toBe(8192);
    q.free();
  });
});
