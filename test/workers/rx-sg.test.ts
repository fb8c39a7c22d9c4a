// Guest rx with feature-sg and feature-gso-*: the slot layout Linux netback writes
// (drivers/net/xen-netback/rx.c, xenvif_rx_skb), byte for byte: data slots packed full from offset 0
// with status = the bytes in that slot and more_data on all but the last, the GSO extra in the slot
// right after the first, csum_blank|data_validated for checksum-partial frames, each response in
// its request's slot; one grant copy per round; failed copies answered in their own slot with the
// chain intact; frames the frontend cannot take dropped; stalls judged by what the head needs
// (XSA-392), no stall check without feature-rx-notify, queued frames expiring after the drain timeout.
import { afterAll, describe, expect, test } from "bun:test";
import { FRAME_META_CSUM, FRAME_META_DATA_VALID, FRAME_META_GSO_BAD, FRAME_META_GSO_TYPE_SHIFT } from "../../src/net/peer.ts";
import { TAP_OFFLOAD_CSUM, TAP_OFFLOAD_TSO4, TAP_OFFLOAD_TSO6 } from "../../src/net/tap.ts";
import {
  NETIF_RSP_ERROR,
  NETRXF_csum_blank,
  NETRXF_data_validated,
  NETRXF_extra_info,
  NETRXF_more_data,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_GSO_TYPE_TCPV4,
  XEN_NETIF_GSO_TYPE_TCPV6,
} from "../../src/xen/netif.ts";
import type { RxOptions } from "../../workers/rx-backlog.ts";
import { RxPath, rxGsoMask, rxOffloadFlags } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { counters, FakeGrants, frame, GNTST_general_error, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 11;
const scratch = new WorkerScratch(64, { scatterGather: true });
afterAll(() => scratch.free());

const GSO_BOTH = (1 << XEN_NETIF_GSO_TYPE_TCPV4) | (1 << XEN_NETIF_GSO_TYPE_TCPV6);
const gsoMeta = (type: number, mss: number, csum = true) => (csum ? FRAME_META_CSUM : 0) | (type << FRAME_META_GSO_TYPE_SHIFT) | mss;

/** A guest, the TAP-like peer handing it frames, and the vif's counters. */
function rig(opts: Parameters<typeof guest>[0] = {}) {
  return { g: guest(opts), peer: new RecordingPeer("tap"), c: counters() };
}

function guest(opts: RxOptions & { stallMs?: number; queueBytes?: number; peerMeta?: boolean } = {}) {
  const r = ringPage(0);
  const gnt = new FakeGrants(DOM);
  let prod = 0;
  const rx = new RxPath(r.buf, DOM, opts.queueBytes ?? 128 * 4096, opts.stallMs ?? 60_000, null, { sg: true, gsoMask: GSO_BOTH, ...opts });
  rx.peerMeta = opts.peerMeta ?? true;
  const slot = (i: number) => 64 + (i & 255) * 8;
  const bufs = new Map<number, { id: number; gref: number }>();
  return {
    ...r,
    gnt,
    rx,
    slot,
    get prod() {
      return prod;
    },
    post(n: number) {
      for (let k = 0; k < n; k++) {
        const idx = prod;
        const id = (idx * 5 + 3) & 0xffff;
        const gref = 2000 + (idx & 255);
        if (!gnt.pages.has(gref)) gnt.grant(gref);
        r.dv.setUint16(slot(idx), id, true);
        r.dv.setUint16(slot(idx) + 2, 0xeeee, true); // request pad: must be overwritten by the response
        r.dv.setUint32(slot(idx) + 4, gref, true);
        bufs.set(idx & 255, { id, gref });
        prod = (prod + 1) >>> 0;
      }
      Atomics.store(r.w, 0, prod);
    },
    /** The 8 raw bytes of slot i. */
    raw(i: number) {
      return Array.from(new Uint8Array(r.buf, slot(i), 8));
    },
    rsp(i: number) {
      const o = slot(i);
      return { id: r.dv.getUint16(o, true), offset: r.dv.getUint16(o + 2, true), flags: r.dv.getUint16(o + 4, true), status: r.dv.getInt16(o + 6, true), reqId: bufs.get(i & 255)!.id };
    },
    /** The bytes the data slots [from, to) hold, in order (skipping slot `extra` if given). */
    data(from: number, to: number, extra = -1) {
      const parts: Uint8Array[] = [];
      for (let i = from; i < to; i++) {
        if (i === extra) continue;
        const p = this.rsp(i);
        parts.push(gnt.pages.get(bufs.get(i & 255)!.gref)!.slice(p.offset, p.offset + p.status));
      }
      return Buffer.concat(parts);
    },
  };
}

describe("rx with feature-sg + feature-gso: netback's slot layout", () => {
  test("a 65000-byte TCPv4 GSO frame: 16 data slots packed full from offset 0 and the GSO extra in slot 1, byte for byte; one grant copy", () => {
    const { g, peer, c } = rig();
    g.post(40);
    const f = frame(65000, 1);
    peer.giveMeta(f, gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    const calls = g.gnt.calls;
    const p = g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(p.fault).toBeNull();
    expect(g.gnt.calls - calls).toBe(1);
    expect(g.rx.rspProdPvt).toBe(17);
    expect(Atomics.load(g.w, 2)).toBe(17);
    // Slot 0: id echoed, offset 0, csum_blank|data_validated|extra_info|more_data, its own 4096 bytes.
    const r0 = g.rsp(0);
    expect([r0.id, r0.offset, r0.flags, r0.status]).toEqual([r0.reqId, 0, NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info | NETRXF_more_data, 4096]);
    // Slot 1: the GSO extra over the whole response: type 1, flags 0, size 1448 LE, type TCPV4, pad 0, features 0.
    expect(g.raw(1)).toEqual([XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448 & 0xff, 1448 >> 8, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0, 0]);
    // Slots 2..16: 4096 each with more_data, the last 65000 - 15 * 4096 = 3560 without.
    for (let i = 2; i <= 16; i++) {
      const r = g.rsp(i);
      expect([r.id, r.offset, r.flags, r.status]).toEqual([r.reqId, 0, i < 16 ? NETRXF_more_data : 0, i < 16 ? 4096 : 3560]);
    }
    expect(g.data(0, 17, 1)).toEqual(Buffer.from(f));
    // Nothing written past the packet's slots: slot 17 still holds its request.
    expect(g.dv.getUint16(g.slot(17) + 2, true)).toBe(0xeeee);
    expect([c.rx_packets, c.rx_bytes, c.rx_gso_packets, c.rx_errors, c.rx_drops]).toEqual([1, 65000, 1, 0, 0]);
  });

  test("TCPv6 GSO: the extra says TCPV6; a GSO frame that fits one page still takes two slots (data, extra)", () => {
    const { g, peer, c } = rig();
    g.post(10);
    const big = frame(9000, 2);
    const small = frame(3000, 3);
    peer.giveMeta(big, gsoMeta(XEN_NETIF_GSO_TYPE_TCPV6, 1220));
    peer.giveMeta(small, gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1000));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    // big: 3 data slots + extra = slots 0..3; small: slots 4 (data) and 5 (extra).
    expect(g.rx.rspProdPvt).toBe(6);
    expect(g.rsp(0).flags).toBe(NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info | NETRXF_more_data);
    expect(g.raw(1)).toEqual([XEN_NETIF_EXTRA_TYPE_GSO, 0, 1220 & 0xff, 1220 >> 8, XEN_NETIF_GSO_TYPE_TCPV6, 0, 0, 0]);
    expect([g.rsp(2).status, g.rsp(2).flags, g.rsp(3).status, g.rsp(3).flags]).toEqual([4096, NETRXF_more_data, 9000 - 8192, 0]);
    expect(g.data(0, 4, 1)).toEqual(Buffer.from(big));
    const s = g.rsp(4);
    expect([s.offset, s.flags, s.status]).toEqual([0, NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info, 3000]);
    expect(g.raw(5)).toEqual([XEN_NETIF_EXTRA_TYPE_GSO, 0, 1000 & 0xff, 1000 >> 8, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0, 0]);
    expect(g.data(4, 5)).toEqual(Buffer.from(small));
    expect(c.rx_gso_packets).toBe(2);
  });

  test("plain frames: one slot at offset 0 (flags from the meta word: none, data_validated, csum_blank|data_validated); a 9000-byte one over three slots with no extra", () => {
    const { g, peer, c } = rig();
    g.post(8);
    const fs = [frame(60, 4), frame(1514, 5), frame(4096, 6), frame(9000, 7)];
    peer.giveMeta(fs[0], 0);
    peer.giveMeta(fs[1], FRAME_META_DATA_VALID);
    peer.giveMeta(fs[2], FRAME_META_CSUM);
    peer.giveMeta(fs[3], 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.rspProdPvt).toBe(6);
    expect([0, 1, 2].map((i) => [g.rsp(i).offset, g.rsp(i).flags, g.rsp(i).status])).toEqual([
      [0, 0, 60],
      [0, NETRXF_data_validated, 1514],
      [0, NETRXF_csum_blank | NETRXF_data_validated, 4096],
    ]);
    expect([3, 4, 5].map((i) => [g.rsp(i).flags, g.rsp(i).status])).toEqual([
      [NETRXF_more_data, 4096],
      [NETRXF_more_data, 4096],
      [0, 808],
    ]);
    for (let i = 0; i < 3; i++) expect(g.data(i, i + 1)).toEqual(Buffer.from(fs[i]));
    expect(g.data(3, 6)).toEqual(Buffer.from(fs[3]));
    expect([c.rx_packets, c.rx_gso_packets]).toEqual([4, 0]);
  });

  test("meta words are ignored unless the peer hands them over (another vif's peer may have left them in the batch)", () => {
    const { g, peer, c } = rig({ peerMeta: false });
    g.post(4);
    peer.giveMeta(frame(200, 8), FRAME_META_CSUM | gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 100));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.rspProdPvt).toBe(1);
    expect([g.rsp(0).flags, g.rsp(0).status]).toEqual([0, 200]);
  });

  test("frames the frontend cannot take are dropped as oversize: GSO of a type it did not ask for, GSO with size 0, a GSO type no frontend takes, over 64 KiB", () => {
    const { g, peer, c } = rig({ gsoMask: 1 << XEN_NETIF_GSO_TYPE_TCPV4 });
    g.post(40);
    peer.giveMeta(frame(9000, 1), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV6, 1200));
    peer.giveMeta(frame(9000, 2), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 0));
    peer.giveMeta(frame(9000, 3), gsoMeta(FRAME_META_GSO_BAD, 1200)); // what the TAP read says of UDP or ECN GSO
    peer.giveMeta(frame(65536 + 15, 4), 0);
    const ok = frame(100, 5);
    peer.giveMeta(ok, 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([c.rx_drops, c.rx_drops_oversize, c.rx_packets]).toEqual([4, 4, 1]);
    expect(g.rx.rspProdPvt).toBe(1);
    expect(g.data(0, 1)).toEqual(Buffer.from(ok));
  });

  test("sg without GSO (no gso mask): a GSO frame is dropped, a 9000-byte plain one spans slots", () => {
    const { g, peer, c } = rig({ gsoMask: 0 });
    g.post(8);
    peer.giveMeta(frame(9000, 1), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    peer.giveMeta(frame(9000, 2), 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([c.rx_drops_oversize, c.rx_packets, g.rx.rspProdPvt]).toEqual([1, 1, 3]);
  });

  test("a failed copy answers its own slot with ERROR, the packet's other slots and more_data chain unchanged; counted once per packet and by status", () => {
    const { g, peer, c } = rig();
    g.post(8);
    // Slot 3's buffer (the packet's third data slot) is granted to someone else.
    g.gnt.foreign.add(2003);
    const f = frame(13000, 9);
    peer.giveMeta(f, gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    const next = frame(500, 10);
    peer.giveMeta(next, 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.rspProdPvt).toBe(6);
    expect([0, 2, 3, 4].map((i) => [g.rsp(i).flags, g.rsp(i).status])).toEqual([
      [NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info | NETRXF_more_data, 4096],
      [NETRXF_more_data, 4096],
      [NETRXF_more_data, NETIF_RSP_ERROR],
      [0, 13000 - 3 * 4096],
    ]);
    expect(g.raw(1)[0]).toBe(XEN_NETIF_EXTRA_TYPE_GSO);
    expect(g.data(5, 6)).toEqual(Buffer.from(next));
    expect([c.rx_packets, c.rx_errors, c.rx_gso_packets, c.rx_copy_failed_general_error]).toEqual([1, 1, 0, 1]);
    expect(GNTST_general_error).toBeLessThan(0);
  });

  test("a frame is placed only when all the slots it needs are posted: it waits in the queue, later frames behind it, and goes whole once they are", () => {
    const { g, peer, c } = rig();
    g.post(10);
    const big = frame(65000, 11);
    const after = frame(80, 12);
    peer.giveMeta(big, gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    peer.giveMeta(after, 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    // 17 needed, 10 posted: nothing placed, nothing written, req_event past req_prod.
    expect(g.rx.rspProdPvt).toBe(0);
    expect(g.rx.queue.length).toBe(2);
    expect(Atomics.load(g.w, 1)).toBe(11);
    for (let i = 0; i < 10; i++) expect(g.dv.getUint16(g.slot(i) + 2, true)).toBe(0xeeee);
    g.post(10);
    g.rx.service(null, 4, scratch, g.gnt, c);
    expect(g.rx.rspProdPvt).toBe(18);
    expect(g.data(0, 17, 1)).toEqual(Buffer.from(big));
    expect(g.raw(1)).toEqual([XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448 & 0xff, 1448 >> 8, 1, 0, 0, 0]);
    expect(g.data(17, 18)).toEqual(Buffer.from(after));
    expect(g.rx.queue.length).toBe(0);
  });

  test("a feature-sg vif reads only as many frames as its posted buffers take at 18 apiece (at least one)", () => {
    const { g, peer, c } = rig();
    g.post(40);
    for (let i = 0; i < 8; i++) peer.giveMeta(frame(100, i), 0);
    g.rx.service(peer, 1, scratch, g.gnt, c);
    expect(peer.receiveMax).toEqual([2]);
    expect(peer.waiting).toBe(6);
  });
});

describe("rx stalls as netback judges them (XSA-392)", () => {
  test("one buffer posted while the head needs 17: stalled, and the carrier goes off after the stall timeout", async () => {
    const { g, peer, c } = rig({ stallMs: 250 });
    c.carrier = 1;
    g.post(1);
    peer.giveMeta(frame(65000, 1), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    const p = g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([p.carrier, g.rx.queue.length, g.rx.rspProdPvt]).toEqual([0, 1, 0]);
    expect(g.rx.stalled).toBe(true);
    expect(Atomics.load(g.w, 1)).toBe(2); // req_event = req_prod + 1
    await Bun.sleep(260);
    const q = g.rx.service(null, 4, scratch, g.gnt, c);
    expect(q.carrier).toBe(-1);
    expect([c.rx_stalls, c.rx_drops_stall_purge, c.carrier]).toEqual([1, 1, 0]);
  });

  test("the same frontend posting enough buffers is not stalled: the head goes at once", () => {
    const { g, peer, c } = rig({ stallMs: 250 });
    g.post(17);
    peer.giveMeta(frame(65000, 1), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([g.rx.rspProdPvt, g.rx.stalled, c.rx_stalls]).toEqual([17, false, 0]);
  });

  test("without feature-rx-notify there is no stall check: the carrier stays on, and queued frames expire after 30 ms", async () => {
    const { g, peer, c } = rig({ stallMs: 20, rxNotify: false });
    c.carrier = 1;
    peer.giveMeta(frame(100, 1), 0);
    peer.giveMeta(frame(100, 2), 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.queue.length).toBe(2);
    expect(g.rx.drainMs).toBe(30);
    expect(g.rx.stalled).toBe(true); // a deadline: the expiry
    await Bun.sleep(45);
    const p = g.rx.service(null, 4, scratch, g.gnt, c);
    expect([p.carrier, c.rx_stalls, c.carrier]).toEqual([0, 0, 1]);
    expect([g.rx.queue.length, c.rx_drops, c.rx_drops_expired]).toEqual([0, 2, 2]);
    expect(g.rx.stalled).toBe(false);
  });

  test("with feature-rx-notify, a queued frame is dropped once it waited the drain timeout; younger ones stay", async () => {
    // Windows wide enough that a loaded machine's late timers do not blur which frame is older than the timeout.
    const { g, peer, c } = rig({ drainMs: 500 });
    peer.giveMeta(frame(100, 1), 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.stallDueIn(performance.now())).toBeGreaterThan(0);
    await Bun.sleep(300);
    peer.giveMeta(frame(100, 2), 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(g.rx.queue.length).toBe(2);
    await Bun.sleep(250);
    g.rx.service(null, 4, scratch, g.gnt, c);
    expect([g.rx.queue.length, c.rx_drops_expired]).toEqual([1, 1]);
    g.post(1);
    g.rx.service(null, 4, scratch, g.gnt, c);
    expect(g.data(0, 1)).toEqual(Buffer.from(frame(100, 2)));
  });
});

describe("what a frontend's keys turn on", () => {
  test("gso mask and TAP offloads follow netback's rules (GSO needs SG, blank checksums and, for TUN_F_CSUM, IPv6 checksum offload)", () => {
    const all = { "feature-sg": true, "feature-gso-tcpv4": true, "feature-gso-tcpv6": true, "feature-ipv6-csum-offload": true };
    expect(rxGsoMask(all)).toBe(GSO_BOTH);
    expect(rxOffloadFlags(all)).toBe(TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4 | TAP_OFFLOAD_TSO6);
    expect(rxOffloadFlags({ ...all, "feature-gso-tcpv6": false })).toBe(TAP_OFFLOAD_CSUM | TAP_OFFLOAD_TSO4);
    expect(rxOffloadFlags({ ...all, "feature-sg": false })).toBe(0);
    expect(rxOffloadFlags({ ...all, "feature-no-csum-offload": true })).toBe(0);
    expect(rxOffloadFlags({ ...all, "feature-ipv6-csum-offload": false })).toBe(0);
    expect(rxOffloadFlags({ ...all, "feature-gso-tcpv4": false, "feature-gso-tcpv6": false })).toBe(0);
  });
});

describe("the carrier after a stall of a multi-buffer head", () => {
  test("comes back only once the frontend has posted what the stalled head needed, not at the first buffer", async () => {
    const { g, peer, c } = rig({ stallMs: 250 });
    c.carrier = 1;
    g.post(1);
    peer.giveMeta(frame(65000, 1), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    await Bun.sleep(260);
    expect(g.rx.service(null, 4, scratch, g.gnt, c).carrier).toBe(-1);
    // One buffer posted all along: not ready for a 17-buffer head; a small frame is dropped, not delivered.
    const p = g.rx.service(null, 4, scratch, g.gnt, c);
    expect([p.carrier, p.more, g.rx.carrier]).toEqual([0, false, false]);
    expect(Atomics.load(g.w, 1)).toBe(2); // req_event: the next request wakes us to look again
    peer.giveMeta(frame(100, 2), 0);
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([c.rx_drops_carrier_off, g.rx.rspProdPvt]).toEqual([1, 0]);
    g.post(16);
    expect(g.rx.service(null, 4, scratch, g.gnt, c).carrier).toBe(1);
    peer.giveMeta(frame(65000, 3), gsoMeta(XEN_NETIF_GSO_TYPE_TCPV4, 1448));
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([c.rx_gso_packets, g.rx.rspProdPvt]).toEqual([1, 17]);
    expect(g.data(0, 17, 1)).toEqual(Buffer.from(frame(65000, 3)));
  });
});
