// A hash extra on guest tx (XEN_NETIF_EXTRA_TYPE_HASH after a packet's first slot) is accepted, as
// netback's xenvif_get_extras accepts it: the packet goes out, the extra's slot is answered NULL.
// A vif with a control ring takes it without GSO negotiated; a GSO extra there is still unnegotiated.
import { afterAll, expect, test } from "bun:test";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_extra_info, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_HASH } from "../../src/xen/netif.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath, type TxFeatures } from "../../workers/tx.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 7;
const scratch = new WorkerScratch(64);
afterAll(() => scratch.free());

function guest(features: TxFeatures) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  const tx = new TxPath(r.buf, DOM, features);
  let prod = 0;
  const slot = (i: number) => 64 + (i & 255) * 12;
  return {
    gnt,
    tx,
    /** One packet: its first slot with extra_info, then one extra of `type`. */
    post(id: number, data: Uint8Array, type: number) {
      gnt.grant(100 + id).set(data);
      let o = slot(prod++);
      r.dv.setUint32(o, 100 + id, true);
      r.dv.setUint16(o + 4, 0, true);
      r.dv.setUint16(o + 6, NETTXF_extra_info, true);
      r.dv.setUint16(o + 8, id, true);
      r.dv.setUint16(o + 10, data.length, true);
      o = slot(prod++);
      new Uint8Array(r.buf, o, 12).fill(0);
      r.dv.setUint8(o, type);
      if (type === XEN_NETIF_EXTRA_TYPE_GSO) {
        r.dv.setUint16(o + 2, 1448, true);
        r.dv.setUint8(o + 4, 1);
      } else {
        r.dv.setUint8(o + 2, 1); // _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP
        r.dv.setUint8(o + 3, 1); // Toeplitz
        r.dv.setUint32(o + 4, 0x51ccc178, true);
      }
      Atomics.store(r.w, 0, prod);
    },
    responses(n: number) {
      return Array.from({ length: n }, (_, i) => ({ id: r.dv.getUint16(slot(i), true), status: r.dv.getInt16(slot(i) + 2, true) }));
    },
  };
}

test("with a control ring (no GSO): a hash extra is consumed, the frame sent, OKAY + NULL", () => {
  const g = guest({ sg: false, gso: false, hashExtras: true });
  const peer = new RecordingPeer();
  const c = counters();
  const f = frame(200, 3);
  g.post(5, f, XEN_NETIF_EXTRA_TYPE_HASH);
  const pass = g.tx.service(64, scratch, g.gnt, peer, c);
  expect(pass.fault).toBeNull();
  expect(g.responses(2)).toEqual([{ id: 5, status: NETIF_RSP_OKAY }, { id: 0, status: NETIF_RSP_NULL }]);
  expect(peer.sent.map((x) => Array.from(x))).toEqual([Array.from(f)]);
  expect(c.tx_packets).toBe(1);
});

test("with a control ring and no GSO: a GSO extra is unnegotiated (errors, not fatal)", () => {
  const g = guest({ sg: false, gso: false, hashExtras: true });
  const peer = new RecordingPeer();
  const c = counters();
  g.post(6, frame(200, 4), XEN_NETIF_EXTRA_TYPE_GSO);
  expect(g.tx.service(64, scratch, g.gnt, peer, c).fault).toBeNull();
  expect(g.responses(2)).toEqual([{ id: 6, status: NETIF_RSP_ERROR }, { id: 0, status: NETIF_RSP_NULL }]);
  expect([peer.sent.length, c.tx_malformed_unnegotiated]).toEqual([0, 1]);
});

test("with GSO negotiated a hash extra is accepted too; with neither, extras are unnegotiated", () => {
  const g = guest({ sg: true, gso: true });
  const peer = new RecordingPeer();
  g.post(7, frame(300, 5), XEN_NETIF_EXTRA_TYPE_HASH);
  g.tx.service(64, scratch, g.gnt, peer, counters());
  expect(g.responses(2)).toEqual([{ id: 7, status: NETIF_RSP_OKAY }, { id: 0, status: NETIF_RSP_NULL }]);
  const h = guest({ sg: false, gso: false });
  const c = counters();
  h.post(8, frame(300, 6), XEN_NETIF_EXTRA_TYPE_HASH);
  expect(h.tx.service(64, scratch, h.gnt, new RecordingPeer(), c).fault).toBeNull();
  expect(h.responses(2)).toEqual([{ id: 8, status: NETIF_RSP_ERROR }, { id: 0, status: NETIF_RSP_NULL }]);
  expect(c.tx_malformed_unnegotiated).toBe(1);
});
