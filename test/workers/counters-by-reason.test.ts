// The by-reason counters (netback's `ethtool -S vifX.Y`): each rule a guest can break, each GNTST
// status a copy can fail with, each reason a frame for the guest is dropped, counted once per
// occurrence by the batched data path, on a plain ring page with a fake grant device.
import { afterAll, describe, expect, test } from "bun:test";
import { NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data } from "../../src/xen/netif.ts";
import { VIF_COUNTER_NAMES } from "../../src/stats/index.ts";
import { RxPath } from "../../workers/rx.ts";
import { WorkerScratch } from "../../workers/scratch.ts";
import { TxPath } from "../../workers/tx.ts";
import { violationCounter } from "../../workers/fault-reasons.ts";
import { overflowMessage } from "../../workers/ring-checks.ts";
import { counters, FakeGrants, frame, RecordingPeer, ringPage } from "./helpers.ts";

const DOM = 9;
const small = new WorkerScratch(64);
const sg = new WorkerScratch(64, { scatterGather: true });
afterAll(() => (small.free(), sg.free()));

/** A tx ring a test writes slot by slot; every ref it names is granted unless told otherwise. */
function txGuest(features = { sg: false, gso: false }) {
  const r = ringPage();
  const gnt = new FakeGrants(DOM);
  let prod = 0;
  const at = (i: number) => 64 + (i & 255) * 12;
  return {
    gnt,
    tx: new TxPath(r.buf, DOM, features),
    req(o: { gref: number; offset?: number; flags?: number; id?: number; size: number; grant?: boolean }) {
      if (o.grant !== false && !gnt.pages.has(o.gref)) gnt.grant(o.gref).set(frame(4096, o.gref));
      const s = at(prod++);
      r.dv.setUint32(s, o.gref, true);
      r.dv.setUint16(s + 4, o.offset ?? 0, true);
      r.dv.setUint16(s + 6, o.flags ?? 0, true);
      r.dv.setUint16(s + 8, o.id ?? prod, true);
      r.dv.setUint16(s + 10, o.size, true);
    },
    extra(type: number, size: number, gtype: number) {
      const s = at(prod++);
      r.dv.setUint8(s, type);
      r.dv.setUint8(s + 1, 0);
      r.dv.setUint16(s + 2, size, true);
      r.dv.setUint8(s + 4, gtype);
    },
    publish(extra = 0) {
      Atomics.store(r.w, 0, (prod + extra) >>> 0);
    },
  };
}

/** The counters that moved, as { name: value }. */
function moved(c: Record<string, number>): Record<string, number> {
  return Object.fromEntries(VIF_COUNTER_NAMES.filter((n) => c[n] !== 0).map((n) => [n, c[n]]));
}

describe("guest tx", () => {
  test("tolerable faults are counted by rule, copy failures by GNTST status, csum_blank frames as checksum fix-ups", () => {
    const g = txGuest();
    g.req({ gref: 1, size: 10 }); // runt
    g.req({ gref: 3, size: 60, flags: NETTXF_csum_blank }); // good, checksum left to us
    g.req({ gref: 4, size: 60, flags: NETTXF_more_data }); // SG not negotiated
    g.req({ gref: 5, size: 30 }); // ... its fragment, answered with it
    g.gnt.foreign.add(6);
    g.req({ gref: 6, size: 60, grant: false }); // granted to someone else: general_error
    g.req({ gref: 7, size: 60, grant: false }); // never granted: bad_gntref
    g.req({ gref: 8, size: 1514 }); // good
    g.publish();
    const c = counters();
    const pass = g.tx.service(64, small, g.gnt, new RecordingPeer("null"), c);
    expect(pass.fault).toBeNull();
    expect(moved(c)).toEqual({
      tx_packets: 2,
      tx_bytes: 60 + 1514,
      tx_errors: 5, // runt, the unnegotiated packet's 2 slots, 2 failed copies
      tx_batches: 1,
      ffi_calls: 2, // the copy, the checksum fill
      syscalls: 1,
      tx_csum_fixups: 1,
      tx_malformed_runt: 1,
      tx_malformed_unnegotiated: 1,
      tx_copy_failed_general_error: 1,
      tx_copy_failed_bad_gntref: 1,
    });
  });

  test("with feature-sg and -gso: GSO packets are counted, and a packet larger than a frame slot is refused as oversize", () => {
    const g = txGuest({ sg: true, gso: true });
    g.req({ gref: 1, size: 3000, flags: NETTXF_more_data | NETTXF_extra_info | NETTXF_csum_blank });
    g.extra(1, 1448, 1); // XEN_NETIF_EXTRA_TYPE_GSO, TCPv4
    g.req({ gref: 2, size: 1000 });
    g.publish();
    const c = counters();
    expect(g.tx.service(64, sg, g.gnt, new RecordingPeer("null"), c).fault).toBeNull();
    expect([c.tx_packets, c.tx_gso_packets, c.tx_csum_fixups]).toEqual([1, 1, 1]);

    // The 4 KiB frame slots of a worker without SG scratch: a 6000-byte packet does not fit.
    const h = txGuest({ sg: true, gso: false });
    h.req({ gref: 1, size: 6000, flags: NETTXF_more_data });
    h.req({ gref: 2, size: 2000, flags: NETTXF_more_data });
    h.req({ gref: 3, size: 4000 - 2000 });
    h.publish();
    const d = counters();
    expect(h.tx.service(64, small, h.gnt, new RecordingPeer("null"), d).fault).toBeNull();
    expect([d.tx_packets, d.tx_malformed_oversize, d.tx_errors]).toEqual([0, 1, 3]);
  });

  test("each protocol violation's fault line, as the tx path writes it, names its own counter", () => {
    const fault = (write: (g: ReturnType<typeof txGuest>) => void, features = { sg: true, gso: true }) => {
      const g = txGuest(features);
      write(g);
      const f = g.tx.service(64, sg, g.gnt, new RecordingPeer("null"), counters()).fault;
      expect(f).not.toBeNull();
      return violationCounter(f!);
    };
    expect(fault((g) => g.publish(300))).toBe("tx_malformed_ring_overflow");
    expect(fault((g) => (g.req({ gref: 1, offset: 4000, size: 200 }), g.publish()), { sg: false, gso: false })).toBe("tx_malformed_page_overrun");
    expect(fault((g) => (g.req({ gref: 1, offset: 4000, size: 300, flags: NETTXF_more_data }), g.req({ gref: 2, size: 100 }), g.publish()))).toBe("tx_malformed_page_overrun");
    expect(fault((g) => (g.req({ gref: 1, size: 100, flags: NETTXF_more_data }), g.publish()))).toBe("tx_malformed_past_req_prod");
    expect(
      fault((g) => {
        for (let i = 0; i < 20; i++) g.req({ gref: i + 1, size: i === 0 ? 2000 : 10, flags: NETTXF_more_data });
        g.req({ gref: 30, size: 10 });
        g.publish();
      }),
    ).toBe("tx_malformed_too_many_slots");
    expect(fault((g) => (g.req({ gref: 1, size: 100, flags: NETTXF_more_data }), g.req({ gref: 2, size: 200 }), g.publish()))).toBe("tx_malformed_frag_oversize");
    expect(fault((g) => (g.req({ gref: 1, size: 300, flags: NETTXF_more_data }), g.req({ gref: 2, offset: 4000, size: 200 }), g.publish()))).toBe("tx_malformed_frag_page_overrun");
    expect(fault((g) => (g.req({ gref: 1, size: 100, flags: NETTXF_extra_info }), g.extra(9, 0, 0), g.publish()))).toBe("tx_malformed_extra_unknown");
    expect(fault((g) => (g.req({ gref: 1, size: 100, flags: NETTXF_extra_info }), g.extra(1, 0, 1), g.publish()))).toBe("tx_malformed_gso_invalid");
    expect(fault((g) => (g.req({ gref: 1, size: 100, flags: NETTXF_extra_info }), g.extra(1, 1448, 7), g.publish()))).toBe("tx_malformed_gso_invalid");
    expect(violationCounter(overflowMessage("rx", 0x1300, 0x200))).toBe("rx_malformed_ring_overflow");
    expect(violationCounter("a check added later")).toBe("tx_malformed_other_violation");
  });
});

describe("guest rx", () => {
  function rxGuest(queueBytes: number, stallMs: number) {
    const r = ringPage();
    const gnt = new FakeGrants(DOM);
    let prod = 0;
    return {
      gnt,
      rx: new RxPath(r.buf, DOM, queueBytes, stallMs),
      post(grefs: number[]) {
        for (const gref of grefs) {
          const s = 64 + (prod & 255) * 8;
          r.dv.setUint16(s, prod, true);
          r.dv.setUint32(s + 4, gref, true);
          prod++;
        }
        Atomics.store(r.w, 0, prod);
      },
    };
  }

  test("drops by reason (oversize, queue full, stall purge, carrier off), stalls, and copy failures by status", async () => {
    const g = rxGuest(256, 250);
    const peer = new RecordingPeer("tap");
    const c = counters();
    // Two buffers: one granted, one granted to someone else.
    g.gnt.grant(100);
    g.gnt.foreign.add(101);
    g.post([100, 101]);
    peer.give(frame(5000, 1), frame(60, 2), frame(60, 3));
    g.rx.service(peer, 4, small, g.gnt, c);
    expect([c.rx_drops_oversize, c.rx_packets, c.rx_errors, c.rx_copy_failed_general_error]).toEqual([1, 1, 1, 1]);
    // No buffers left: 4 frames of 64 charged bytes fill the 256-byte queue, the 5th is dropped.
    peer.give(...[4, 5, 6, 7, 8].map((i) => frame(60, i)));
    g.rx.service(peer, 4, small, g.gnt, c);
    expect([c.rx_drops_queue_full, c.rx_queue_bytes]).toEqual([1, 256]);
    // Nothing posted for the stall timeout: carrier off, the queue's 4 frames dropped.
    await Bun.sleep(260);
    g.rx.service(null, 4, small, g.gnt, c);
    expect([c.rx_stalls, c.rx_drops_stall_purge, c.carrier]).toEqual([1, 4, 0]);
    peer.give(frame(60, 9));
    g.rx.service(peer, 4, small, g.gnt, c);
    expect(c.rx_drops_carrier_off).toBe(1);
    // The reasons add up to the total.
    expect(c.rx_drops).toBe(c.rx_drops_oversize + c.rx_drops_queue_full + c.rx_drops_stall_purge + c.rx_drops_carrier_off + c.rx_drops_expired);
  });
});
