// Guest rx with a hash configured over the control ring: a frame with a hash of an enabled type
// takes two slots, its data slot flagged extra_info and a hash extra in the next (netback's
// xenvif_rx_extra_slot), from the receive batch and from the queue alike; other frames one slot.
import { afterAll, expect, test } from "bun:test";
import * as C from "../../src/xen/ctrl-netif.ts";
import { NETRXF_extra_info, XEN_NETIF_EXTRA_TYPE_HASH } from "../../src/xen/netif.ts";
import { RxPath } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { VifHash } from "../../workers/vif-hash.ts";
import { ipFrame, RSS_KEY, VECTORS } from "../net/hash-frames.ts";
import { counters, FakeGrants, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 9;
const scratch = new WorkerScratch(64);
afterAll(() => scratch.free());

function guest(flags: number) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  const rx = new RxPath(r.buf, DOM, 128 * 4096, 60_000);
  const hash = new VifHash(1);
  rx.hash = hash;
  hash.setAlgorithm(C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);
  hash.setFlags(flags);
  hash.setKey(RSS_KEY, 40);
  let prod = 0;
  const slot = (i: number) => 64 + (i & 255) * 8;
  return {
    r,
    gnt,
    rx,
    post(n: number) {
      for (let k = 0; k < n; k++, prod++) {
        gnt.grant(1000 + (prod & 255));
        r.dv.setUint16(slot(prod), prod & 0xffff, true);
        r.dv.setUint32(slot(prod) + 4, 1000 + (prod & 255), true);
      }
      Atomics.store(r.w, 0, prod);
    },
    /** Slot i read as a data response and as an extra. */
    slot(i: number) {
      const o = slot(i);
      return {
        id: r.dv.getUint16(o, true),
        flags: r.dv.getUint16(o + 4, true),
        status: r.dv.getInt16(o + 6, true),
        extra: { type: r.dv.getUint8(o), flags: r.dv.getUint8(o + 1), htype: r.dv.getUint8(o + 2), alg: r.dv.getUint8(o + 3), value: r.dv.getUint32(o + 4, true) },
      };
    },
  };
}

test("a TCP/IPv4 frame gets a hash extra {type 4, IPV4_TCP, Toeplitz, the vector's value}; an ARP frame does not", () => {
  const g = guest(C.XEN_NETIF_CTRL_HASH_TYPES_ALL);
  const peer = new RecordingPeer("tap");
  const c = counters();
  const tcp = ipFrame({ v6: false });
  const arp = tcp.slice();
  arp[12] = 0x08;
  arp[13] = 0x06;
  g.post(8);
  peer.give(tcp, arp, ipFrame({ v6: true }));
  const p = g.rx.service(peer, 1, scratch, g.gnt, c);
  expect(p.fault).toBeNull();
  expect(g.rx.rspProdPvt).toBe(5); // 2 + 1 + 2 slots
  const s0 = g.slot(0);
  expect([s0.id, s0.flags & NETRXF_extra_info, s0.status]).toEqual([0, NETRXF_extra_info, tcp.length]);
  expect(g.slot(1).extra).toEqual({ type: XEN_NETIF_EXTRA_TYPE_HASH, flags: 0, htype: C._XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, alg: C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ, value: VECTORS.ipv4Tcp });
  const s2 = g.slot(2);
  expect([s2.id, s2.flags, s2.status]).toEqual([2, 0, arp.length]);
  const s3 = g.slot(3);
  expect([s3.id, s3.flags & NETRXF_extra_info]).toEqual([3, NETRXF_extra_info]);
  expect(g.slot(4).extra).toMatchObject({ type: XEN_NETIF_EXTRA_TYPE_HASH, htype: C._XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, value: VECTORS.ipv6Tcp });
  expect(c.rx_packets).toBe(3);
  // The frame's bytes at offset 2 of its own request's page.
  expect(Array.from(g.gnt.pages.get(1000)!.slice(2, 2 + tcp.length))).toEqual(Array.from(tcp));
});

test("only enabled types: IPv4 address-only flags hash a TCP frame as IPV4", () => {
  const g = guest(C.XEN_NETIF_CTRL_HASH_TYPE_IPV4);
  const peer = new RecordingPeer("tap");
  g.post(4);
  peer.give(ipFrame({ v6: false }), ipFrame({ v6: true }));
  g.rx.service(peer, 1, scratch, g.gnt, counters());
  expect(g.rx.rspProdPvt).toBe(3);
  expect(g.slot(1).extra).toMatchObject({ type: XEN_NETIF_EXTRA_TYPE_HASH, htype: C._XEN_NETIF_CTRL_HASH_TYPE_IPV4, value: VECTORS.ipv4 });
  expect(g.slot(2).flags).toBe(0);
});

test("a hashed frame with one free slot waits in the queue, and leaves it with its extra once two are posted", () => {
  const g = guest(C.XEN_NETIF_CTRL_HASH_TYPES_ALL);
  const peer = new RecordingPeer("tap");
  const c = counters();
  g.post(1);
  const tcp = ipFrame({ v6: false });
  peer.give(tcp);
  g.rx.service(peer, 1, scratch, g.gnt, c);
  expect([g.rx.rspProdPvt, g.rx.queue.length]).toEqual([0, 1]);
  g.post(1);
  g.rx.service(null, 1, scratch, g.gnt, c);
  expect([g.rx.rspProdPvt, g.rx.queue.length]).toEqual([2, 0]);
  expect(g.slot(0).flags & NETRXF_extra_info).toBe(NETRXF_extra_info);
  expect(g.slot(1).extra).toMatchObject({ type: XEN_NETIF_EXTRA_TYPE_HASH, value: VECTORS.ipv4Tcp });
  expect(c.rx_packets).toBe(1);
});

test("no algorithm (the default): one slot per frame, no extra", () => {
  const g = guest(C.XEN_NETIF_CTRL_HASH_TYPES_ALL);
  g.rx.hash!.setAlgorithm(C.XEN_NETIF_CTRL_HASH_ALGORITHM_NONE);
  const peer = new RecordingPeer("tap");
  g.post(4);
  peer.give(ipFrame({ v6: false }), ipFrame({ v6: true }));
  g.rx.service(peer, 1, scratch, g.gnt, counters());
  expect(g.rx.rspProdPvt).toBe(2);
  expect([g.slot(0).flags, g.slot(1).flags]).toEqual([0, 0]);
});
