// The back end of one tx ring, as Xen's ring.h macros do it (src/xen/ring.ts has the index math).
// For this stage the peer is the null peer: every packet is answered and dropped, so the ring and
// the notify logic are exercised end to end while the batched data path (grant copy, peers) is the
// next step. Guest data is hostile: each slot is copied out once into locals (XSA-155) and only the
// copies are used; an index more than a ring ahead, or a packet whose slots are not all posted, is a
// protocol violation that disables the vif (XSA-39), never an exception that could take the worker.
import {
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
  NETIF_TX_RING_SIZE,
  NETIF_TX_SLOT_SIZE,
  NETTXF_extra_info,
  NETTXF_more_data,
  TxRequest,
  TxResponse,
  XEN_NETBK_LEGACY_SLOTS_MAX,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_MAX,
  XEN_NETIF_EXTRA_TYPE_NONE,
} from "../src/xen/netif.ts";
import { RingHeader, needsNotify, requestProdOverflow, slotOffset } from "../src/xen/ring.ts";

const SIZE = NETIF_TX_RING_SIZE;
const W_REQ_PROD = RingHeader.reqProd >> 2;
const W_REQ_EVENT = RingHeader.reqEvent >> 2;
const W_RSP_PROD = RingHeader.rspProd >> 2;
const W_RSP_EVENT = RingHeader.rspEvent >> 2;

export interface TxPass {
  /** Packets answered (and dropped by the null peer). */
  packets: number;
  /** Responses written (one per slot, NULL for extra-info slots). */
  responses: number;
  /** The frontend asked to be notified of these responses. */
  notify: boolean;
  /** Requests remain because the budget ran out (not the final check). */
  more: boolean;
  /** Set when the frontend broke the protocol: the vif must be disabled with EPROTO. */
  fault: string | null;
}

export class TxRing {
  private readonly u32: Uint32Array;
  private readonly u8: Uint8Array;
  private readonly dv: DataView;
  reqCons: number;
  rspProdPvt: number;

  /** Attaches where the shared ring says responses stop (BACK_RING_ATTACH), so a vif moved from a dead worker resumes. */
  constructor(page: ArrayBuffer) {
    this.u32 = new Uint32Array(page, 0, 1024);
    this.u8 = new Uint8Array(page, 0, 4096);
    this.dv = new DataView(page, 0, 4096);
    this.rspProdPvt = Atomics.load(this.u32, W_RSP_PROD) >>> 0;
    this.reqCons = this.rspProdPvt;
  }

  /** Connect-time check, as netback's xenvif_map_frontend_data_rings: null when the ring is sane. */
  attachError(): string | null {
    const prod = Atomics.load(this.u32, W_REQ_PROD) >>> 0;
    return requestProdOverflow(prod, this.rspProdPvt, SIZE) ? overflowMessage(prod, this.rspProdPvt) : null;
  }

  /** Consumes up to `budget` packets, answers each slot once, pushes the responses once. */
  service(budget: number): TxPass {
    const pass: TxPass = { packets: 0, responses: 0, notify: false, more: false, fault: null };
    const prod = Atomics.load(this.u32, W_REQ_PROD) >>> 0;
    if (requestProdOverflow(prod, this.rspProdPvt, SIZE)) {
      pass.fault = overflowMessage(prod, this.rspProdPvt);
      return pass;
    }
    const start = this.rspProdPvt;
    while (this.reqCons !== prod && pass.packets < budget) {
      const slots = this.packetSlots(prod);
      if (typeof slots === "string") {
        pass.fault = slots;
        break;
      }
      this.reqCons = (this.reqCons + slots.length) >>> 0;
      for (const s of slots) this.respond(s.id, s.extra ? NETIF_RSP_NULL : NETIF_RSP_OKAY);
      pass.packets++;
      pass.responses += slots.length;
    }
    pass.more = pass.fault === null && this.reqCons !== prod;
    if (this.rspProdPvt !== start) pass.notify = this.push(start);
    return pass;
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS, after the ports were unmasked: ask for an event at the next
   * request, then look again, so a request posted meanwhile is never left without a wake-up.
   */
  finalCheck(): boolean {
    if ((Atomics.load(this.u32, W_REQ_PROD) >>> 0) !== this.reqCons) return true;
    Atomics.store(this.u32, W_REQ_EVENT, (this.reqCons + 1) | 0); // seq-cst store: the mb() the macro needs
    return (Atomics.load(this.u32, W_REQ_PROD) >>> 0) !== this.reqCons;
  }

  /** The slots of the packet at reqCons, copied out; or why the packet is a protocol violation. */
  private packetSlots(prod: number): { id: number; extra: boolean }[] | string {
    const slots: { id: number; extra: boolean }[] = [];
    let idx = this.reqCons;
    const take = (): number | string => {
      if (idx === prod) return `tx packet at 0x${hex(this.reqCons)} continues past req_prod 0x${hex(prod)}`;
      if (slots.length >= XEN_NETBK_LEGACY_SLOTS_MAX) return `tx packet at 0x${hex(this.reqCons)} spans more than ${XEN_NETBK_LEGACY_SLOTS_MAX} slots`;
      const off = slotOffset(idx, SIZE, NETIF_TX_SLOT_SIZE);
      idx = (idx + 1) >>> 0;
      return off;
    };
    let off = take();
    if (typeof off === "string") return off;
    let flags = this.dv.getUint16(off + TxRequest.flags, true);
    slots.push({ id: this.dv.getUint16(off + TxRequest.id, true), extra: false });
    if (flags & NETTXF_extra_info) {
      for (let more = true; more; ) {
        off = take();
        if (typeof off === "string") return off;
        const type = this.u8[off];
        const eflags = this.u8[off + 1];
        if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX) return `tx extra info type ${type} is unknown`;
        slots.push({ id: 0, extra: true });
        more = (eflags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
      }
    }
    while (flags & NETTXF_more_data) {
      off = take();
      if (typeof off === "string") return off;
      flags = this.dv.getUint16(off + TxRequest.flags, true);
      slots.push({ id: this.dv.getUint16(off + TxRequest.id, true), extra: false });
    }
    return slots;
  }

  private respond(id: number, status: number): void {
    const off = slotOffset(this.rspProdPvt, SIZE, NETIF_TX_SLOT_SIZE);
    // Extra-info slots have no id: only their status is written, as netback's make_tx_response.
    if (status !== NETIF_RSP_NULL) this.dv.setUint16(off + TxResponse.id, id, true);
    this.dv.setInt16(off + TxResponse.status, status, true);
    this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY. The seq-cst store orders the slot writes before rsp_prod and the rsp_event read after it. */
  private push(old: number): boolean {
    Atomics.store(this.u32, W_RSP_PROD, this.rspProdPvt | 0);
    return needsNotify(this.rspProdPvt, old, Atomics.load(this.u32, W_RSP_EVENT) >>> 0);
  }
}

function hex(n: number): string {
  return (n >>> 0).toString(16);
}

function overflowMessage(prod: number, rspProdPvt: number): string {
  return `tx req_prod 0x${hex(prod)} is more than a ring ahead of 0x${hex(rspProdPvt)}`;
}
