// Multicast control on the data path: MCAST_ADD / MCAST_DEL extras on guest tx answered as netback
// answers them (one status for the request, NULL for its extra, nothing forwarded, the 65th add
// refused), and guest rx dropping multicast frames to groups the guest did not add once it asked.
import { afterAll, describe, expect, test } from "bun:test";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_TYPE_MCAST_DEL } from "../../src/xen/netif.ts";
import { MCAST_MAX, McastFilter } from "../../workers/mcast-filter.ts";
import { RxPath } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 7;
const scratch = new WorkerScratch(64);
afterAll(() => scratch.free());

const mac = (s: string) => Uint8Array.from(s.split(":").map((h) => Number.parseInt(h, 16)));
const GROUP_FB = "01:00:5e:00:00:fb";
const GROUP_FC = "01:00:5e:00:00:fc";

/** A tx ring whose frontend sends multicast-control requests the way the Windows PV drivers do (gref 0, size 0). */
function txGuest(features = { sg: false, gso: false }) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  const mcast = new McastFilter();
  const tx = new TxPath(r.buf, DOM, features, null, { mcast });
  let prod = 0;
  const slot = (i: number) => 64 + (i & 255) * 12;
  const req = (id: number, flags: number, size = 0, gref = 0) => {
    const o = slot(prod++);
    r.dv.setUint32(o, gref, true);
    r.dv.setUint16(o + 4, 0, true);
    r.dv.setUint16(o + 6, flags, true);
    r.dv.setUint16(o + 8, id, true);
    r.dv.setUint16(o + 10, size, true);
  };
  const extra = (type: number, addr: string | null, more = false) => {
    const o = slot(prod++);
    r.dv.setUint8(o, type);
    r.dv.setUint8(o + 1, more ? 1 : 0);
    if (addr) new Uint8Array(r.buf).set(mac(addr), o + 2);
  };
  return {
    gnt,
    mcast,
    tx,
    request(id: number, type: number, addr: string) {
      req(id, NETTXF_extra_info);
      extra(type, addr);
    },
    req,
    extra,
    publish: () => Atomics.store(r.w, 0, prod),
    statuses(from: number, to: number) {
      const out: [number, number][] = [];
      for (let i = from; i < to; i++) out.push([r.dv.getUint16(slot(i), true), r.dv.getInt16(slot(i) + 2, true)]);
      return out;
    },
  };
}

describe("tx: MCAST_ADD / MCAST_DEL extras", () => {
  test("ADD then DEL: OKAY for the request, NULL for its extra, nothing forwarded, the list follows", () => {
    const g = txGuest();
    const peer = new RecordingPeer();
    const c = counters();
    g.request(1, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FB);
    g.request(2, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FC);
    g.request(3, XEN_NETIF_EXTRA_TYPE_MCAST_DEL, GROUP_FB);
    g.publish();
    const p = g.tx.service(64, scratch, g.gnt, peer, c);
    expect([p.fault, p.packets, p.slots]).toEqual([null, 0, 6]);
    expect(g.statuses(0, 6)).toEqual([[1, NETIF_RSP_OKAY], [0, NETIF_RSP_NULL], [2, NETIF_RSP_OKAY], [0, NETIF_RSP_NULL], [3, NETIF_RSP_OKAY], [0, NETIF_RSP_NULL]]);
    expect(peer.sent).toEqual([]);
    expect(g.mcast.list()).toEqual([GROUP_FC]);
    expect([c.tx_mcast_requests, c.tx_mcast_refused, c.tx_errors, c.tx_malformed_unnegotiated, c.tx_malformed_runt]).toEqual([3, 0, 0, 0, 0]);
  });

  test("the 65th ADD is answered with an error and changes nothing; a DEL of an unknown group is OKAY", () => {
    const g = txGuest();
    const c = counters();
    for (let i = 0; i < MCAST_MAX + 1; i++) g.request(i, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, `01:00:5e:00:01:${i.toString(16).padStart(2, "0")}`);
    g.request(100, XEN_NETIF_EXTRA_TYPE_MCAST_DEL, "01:00:5e:7f:7f:7f");
    g.publish();
    const p = g.tx.service(256, scratch, g.gnt, new RecordingPeer(), c);
    expect(p.fault).toBeNull();
    const st = g.statuses(0, 2 * (MCAST_MAX + 2)).filter((_, i) => i % 2 === 0);
    expect(st.slice(0, MCAST_MAX).every(([, s]) => s === NETIF_RSP_OKAY)).toBe(true);
    expect(st[MCAST_MAX]).toEqual([MCAST_MAX, NETIF_RSP_ERROR]);
    expect(st[MCAST_MAX + 1]).toEqual([100, NETIF_RSP_OKAY]);
    expect(g.mcast.count).toBe(MCAST_MAX);
    expect(g.mcast.list()).not.toContain("01:00:5e:00:01:40");
    expect([c.tx_mcast_requests, c.tx_mcast_refused, c.tx_errors]).toEqual([MCAST_MAX + 2, 1, 1]);
  });

  test("duplicates take a place each, and one DEL removes one of them (as netback's list)", () => {
    const g = txGuest();
    g.request(1, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FB);
    g.request(2, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FB);
    g.request(3, XEN_NETIF_EXTRA_TYPE_MCAST_DEL, GROUP_FB);
    g.publish();
    g.tx.service(64, scratch, g.gnt, new RecordingPeer(), counters());
    expect(g.mcast.list()).toEqual([GROUP_FB]);
  });

  test("with GSO negotiated too (the extras' other path), and chained after a GSO extra", () => {
    const g = txGuest({ sg: true, gso: true });
    const c = counters();
    g.request(1, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FB);
    // A GSO extra chained before an ADD: netback handles the ADD and forwards nothing.
    g.req(2, NETTXF_extra_info);
    g.extra(XEN_NETIF_EXTRA_TYPE_GSO, "a8:05:01:00:00:00", true); // size 1448, type TCPV4
    g.extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FC);
    g.publish();
    const peer = new RecordingPeer();
    const p = g.tx.service(64, scratch, g.gnt, peer, c);
    expect(p.fault).toBeNull();
    expect(g.statuses(0, 5).map(([, s]) => s)).toEqual([NETIF_RSP_OKAY, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETIF_RSP_NULL, NETIF_RSP_NULL]);
    expect(peer.sent).toEqual([]);
    expect(g.mcast.list()).toEqual([GROUP_FB, GROUP_FC]);
  });

  test("a request with fragments: its fragments are consumed and answered with errors, never read as packets", () => {
    const g = txGuest({ sg: true, gso: false });
    g.req(1, NETTXF_extra_info | NETTXF_more_data, 100);
    g.extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, GROUP_FB);
    g.gnt.grant(55).set(frame(100, 1));
    g.req(2, 0, 100, 55);
    g.publish();
    const peer = new RecordingPeer();
    const p = g.tx.service(64, scratch, g.gnt, peer, counters());
    expect([p.fault, p.slots]).toEqual([null, 3]);
    expect(g.statuses(0, 3)).toEqual([[1, NETIF_RSP_OKAY], [0, NETIF_RSP_NULL], [2, NETIF_RSP_ERROR]]);
    expect(peer.sent).toEqual([]);
  });

  test("without a multicast list (the seed's set: not offered) such a request is what it was: no feature, errors", () => {
    const r = ringPage();
    const tx = new TxPath(r.buf, DOM);
    r.dv.setUint16(64 + 6, NETTXF_extra_info, true);
    r.dv.setUint16(64 + 8, 9, true);
    r.dv.setUint8(64 + 12, XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
    Atomics.store(r.w, 0, 2);
    const c = counters();
    tx.service(64, scratch, new FakeGrants(DOM), new RecordingPeer(), c);
    expect([r.dv.getInt16(64 + 2, true), r.dv.getInt16(76 + 2, true)]).toEqual([NETIF_RSP_ERROR, NETIF_RSP_NULL]);
    expect(c.tx_malformed_unnegotiated).toBe(1);
  });
});

describe("McastFilter", () => {
  test("unicast and broadcast always pass; a group passes only when added", () => {
    const f = new McastFilter();
    f.requested = true;
    const at = (s: string) => {
      const b = new Uint8Array(20);
      b.set(mac(s), 3);
      return f.passes(b, 3);
    };
    expect(at("00:16:3e:00:00:01")).toBe(true);
    expect(at("ff:ff:ff:ff:ff:ff")).toBe(true);
    expect(at(GROUP_FB)).toBe(false);
    f.add(mac(GROUP_FB), 0);
    expect(at(GROUP_FB)).toBe(true);
    expect(at(GROUP_FC)).toBe(false);
    expect(at("33:33:00:00:00:01")).toBe(false);
  });

  test("active only when requested and the list is known (a taken-over vif is never filtered)", () => {
    const f = new McastFilter();
    expect(f.active).toBe(false);
    f.requested = true;
    expect(f.active).toBe(true);
    const adopted = new McastFilter(false);
    adopted.requested = true;
    expect(adopted.active).toBe(false);
  });
});

describe("rx: the filter at intake", () => {
  function rxGuest(requested: boolean) {
    const r = ringPage();
    const gnt = new FakeGrants(9);
    const rx = new RxPath(r.buf, 9, 128 * 4096, 60_000);
    const mcast = new McastFilter();
    mcast.requested = requested;
    rx.mcast = mcast;
    for (let i = 0; i < 8; i++) {
      r.dv.setUint16(64 + i * 8, i, true);
      r.dv.setUint32(64 + i * 8 + 4, 1000 + i, true);
      gnt.grant(1000 + i);
    }
    Atomics.store(r.w, 0, 8);
    return { r, gnt, rx, mcast };
  }
  const to = (dst: string, seed: number) => {
    const f = frame(60, seed);
    f.set(mac(dst), 0);
    return f;
  };

  test("requested: multicast to an unadded group is dropped and counted before it takes a buffer; broadcast, unicast and added groups go", () => {
    const g = rxGuest(true);
    g.mcast.add(mac(GROUP_FB), 0);
    const peer = new RecordingPeer("tap");
    peer.give(to(GROUP_FB, 1), to(GROUP_FC, 2), to("ff:ff:ff:ff:ff:ff", 3), to("00:16:3e:00:00:09", 4), to("33:33:00:00:00:01", 5));
    const c = counters();
    const p = g.rx.service(peer, 4, scratch, g.gnt, c);
    expect(p.fault).toBeNull();
    expect(g.rx.rspProdPvt).toBe(3);
    expect([c.rx_packets, c.rx_drops, c.rx_drops_mcast_filtered]).toEqual([3, 2, 2]);
  });

  test("not requested: every multicast frame is delivered (the list may still change meanwhile)", () => {
    const g = rxGuest(false);
    const peer = new RecordingPeer("tap");
    peer.give(to(GROUP_FB, 1), to(GROUP_FC, 2));
    const c = counters();
    g.rx.service(peer, 4, scratch, g.gnt, c);
    expect([c.rx_packets, c.rx_drops_mcast_filtered]).toEqual([2, 0]);
  });
});

test("a multi-queue vif's filter reports its adds and removes, and takes the vif's list whole", () => {
  const f = new McastFilter();
  f.changes = [];
  const g = Uint8Array.from([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
  expect(f.add(g, 0)).toBe(true);
  f.del(g, 0);
  expect(f.changes).toEqual([{ add: true, group: "01:00:5e:00:00:fb" }, { add: false, group: "01:00:5e:00:00:fb" }]);
  f.setList(["01:00:5e:00:00:fc", "not a mac", ...Array.from({ length: 70 }, (_, i) => `01:00:5e:00:01:${(i & 0xff).toString(16).padStart(2, "0")}`)]);
  expect(f.count).toBe(64);
  expect(f.list()[0]).toBe("01:00:5e:00:00:fc");
});
