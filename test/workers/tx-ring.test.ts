// The null-peer tx consumer on a plain page: ring.h's logic, and the hostile cases, without threads.
import { describe, expect, test } from "bun:test";
import { NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data } from "../../src/xen/netif.ts";
import { TxRing } from "../../workers/tx-ring.ts";

function page(init: { rspProd?: number } = {}) {
  const buf = new ArrayBuffer(4096);
  const w = new Uint32Array(buf);
  w[0] = w[2] = init.rspProd ?? 0;
  w[1] = w[3] = (init.rspProd ?? 0) + 1;
  const dv = new DataView(buf);
  let prod = init.rspProd ?? 0;
  return {
    buf,
    w,
    post(id: number, flags = 0) {
      const off = 64 + (prod & 255) * 12;
      dv.setUint16(off + 6, flags, true);
      dv.setUint16(off + 8, id, true);
      dv.setUint16(off + 10, 60, true);
      prod = (prod + 1) >>> 0;
    },
    extra(type: number, more = false) {
      const off = 64 + (prod & 255) * 12;
      dv.setUint8(off, type);
      dv.setUint8(off + 1, more ? 1 : 0);
      prod = (prod + 1) >>> 0;
    },
    publish() {
      w[0] = prod;
    },
    response(idx: number) {
      const off = 64 + (idx & 255) * 12;
      return { id: dv.getUint16(off, true), status: dv.getInt16(off + 2, true) };
    },
  };
}

describe("TxRing", () => {
  test("answers every slot once: OKAY for data slots, NULL for extra-info slots, and pushes rsp_prod", () => {
    const p = page();
    const r = new TxRing(p.buf);
    p.post(1);
    p.post(2, NETTXF_extra_info);
    p.extra(1);
    p.post(3, NETTXF_more_data);
    p.post(4);
    p.publish();
    const pass = r.service(64);
    expect(pass).toEqual({ packets: 3, responses: 5, notify: true, more: false, fault: null });
    expect(p.w[2]).toBe(5);
    expect([0, 1, 3, 4].map((i) => p.response(i))).toEqual([1, 2, 3, 4].map((id) => ({ id, status: NETIF_RSP_OKAY })));
    expect(p.response(2).status).toBe(NETIF_RSP_NULL);
  });

  test("stops at the budget, in packets, and says more work remains", () => {
    const p = page();
    const r = new TxRing(p.buf);
    for (let i = 0; i < 5; i++) p.post(i);
    p.publish();
    expect(r.service(2)).toMatchObject({ packets: 2, more: true });
    expect(r.service(10)).toMatchObject({ packets: 3, more: false });
  });

  test("notifies only when the frontend's rsp_event asks for it", () => {
    const p = page();
    const r = new TxRing(p.buf);
    p.w[3] = 10; // the frontend wants an event once rsp_prod passes 10
    p.post(1);
    p.publish();
    expect(r.service(64).notify).toBe(false);
  });

  test("the final check arms req_event at req_cons + 1 and reports requests posted meanwhile", () => {
    const p = page();
    const r = new TxRing(p.buf);
    p.post(1);
    p.publish();
    r.service(64);
    expect(r.finalCheck()).toBe(false);
    expect(p.w[1]).toBe(2);
    p.post(2);
    p.publish();
    expect(r.finalCheck()).toBe(true);
  });

  test("works across the u32 wrap of the indices", () => {
    const start = 0xffff_fffe;
    const p = page({ rspProd: start });
    const r = new TxRing(p.buf);
    for (let i = 0; i < 4; i++) p.post(i);
    p.publish();
    expect(r.service(64)).toMatchObject({ packets: 4, fault: null });
    expect(p.w[2]).toBe(2);
  });

  test("req_prod more than a ring ahead is a fault, and nothing is answered", () => {
    const p = page();
    const r = new TxRing(p.buf);
    p.w[0] = 0x1300;
    expect(r.service(64)).toEqual({ packets: 0, responses: 0, notify: false, more: false, fault: "tx req_prod 0x1300 is more than a ring ahead of 0x0" });
    expect(p.w[2]).toBe(0);
    expect(r.attachError()).toBe("tx req_prod 0x1300 is more than a ring ahead of 0x0");
  });

  test("a packet whose slots are not all posted is a fault; the packets before it are answered", () => {
    const p = page();
    const r = new TxRing(p.buf);
    p.post(1);
    p.post(2, NETTXF_more_data);
    p.publish();
    const pass = r.service(64);
    expect(pass.packets).toBe(1);
    expect(pass.fault).toBe("tx packet at 0x1 continues past req_prod 0x2");
    expect(p.w[2]).toBe(1);
  });

  test("an unknown extra-info type and an over-long packet are faults", () => {
    const p = page();
    p.post(1, NETTXF_extra_info);
    p.extra(9);
    p.publish();
    expect(new TxRing(p.buf).service(64).fault).toBe("tx extra info type 9 is unknown");
    const q = page();
    for (let i = 0; i < 21; i++) q.post(i, NETTXF_more_data);
    q.post(21);
    q.publish();
    expect(new TxRing(q.buf).service(64).fault).toBe("tx packet at 0x0 spans more than 20 slots");
  });
});
