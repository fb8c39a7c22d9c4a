// The backend's end of a guest tx ring (netif_tx_sring in xen/include/public/io/netif.h): requests
// and extra-info slots copied out of their slots, responses staged in theirs, all through the offsets
// src/xen/netif.ts declares and test/xen/abi.test.ts checks against Xen's header; and the one walk
// over a packet's later slots (its extras, then its fragments) that decides the slot limits. The
// batched path (tx.ts) and the seed baseline (seed-tx.ts) are two algorithms over this one ring.
import {
  ExtraInfo,
  FATAL_SKB_SLOTS_DEFAULT,
  NETIF_TX_RESPONSE_SIZE,
  NETIF_TX_RING_SIZE,
  NETIF_TX_SLOT_SIZE,
  NETTXF_extra_info,
  NETTXF_more_data,
  TxRequest,
  TxResponse,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_MAX,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
  XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
  XEN_NETIF_EXTRA_TYPE_NONE,
  XEN_NETIF_GSO_TYPE_TCPV4,
  XEN_NETIF_GSO_TYPE_TCPV6,
} from "../src/xen/netif.ts";
import { PAGE_SIZE, RING_HEADER_SIZE } from "../src/xen/ring.ts";
import { BackRing, type RingJournal } from "./back-ring.ts";
import { hex, R_ERROR, R_NULL } from "./ring-checks.ts";

const MASK = NETIF_TX_RING_SIZE - 1;
// Field indices inside a slot, in the width each field is read at. Module constants derived from the
// declarations, so the JIT folds them as it folded the literals they replace.
export const REQ_GREF32 = TxRequest.gref >> 2;
export const REQ_OFFSET16 = TxRequest.offset >> 1;
export const REQ_FLAGS16 = TxRequest.flags >> 1;
export const REQ_ID16 = TxRequest.id >> 1;
export const REQ_SIZE16 = TxRequest.size >> 1;
const RSP_ID16 = TxResponse.id >> 1;
const RSP_STATUS16 = TxResponse.status >> 1;
const EXTRA_TYPE = ExtraInfo.type;
const EXTRA_FLAGS = ExtraInfo.flags;
const EXTRA_GSO_SIZE16 = ExtraInfo.gsoSize >> 1;
const EXTRA_GSO_TYPE = ExtraInfo.gsoType;
const EXTRA_MCAST_ADDR = ExtraInfo.mcastAddr;
/** walked.mcast bits: the packet carried an MCAST_ADD / MCAST_DEL extra (its address in TxRing.mcastAddr). */
export const WALK_MCAST_ADD = 1;
export const WALK_MCAST_DEL = 2;

/**
 * A packet spanning more slots than this (its first slot and its fragments; extra-info slots do not
 * count, as in netback's xenvif_count_requests) is a protocol violation: Linux's fatal_skb_slots
 * default. Linux drops (without disabling the vif) packets of more than XEN_NETBK_LEGACY_SLOTS_MAX
 * (18) slots and at most this many; qnicd takes them whole, as the packet's bytes still fit its frame.
 */
export const TX_SLOTS_FATAL = FATAL_SKB_SLOTS_DEFAULT;

/** Byte offset of slot `idx` in the page (RING_GET_REQUEST / RING_GET_RESPONSE): 64 + 12k, so every field is aligned. */
function slot(idx: number): number {
  return RING_HEADER_SIZE + (idx & MASK) * NETIF_TX_SLOT_SIZE;
}

/**
 * The 16-bit index of slot `idx` in the page, for the batched path's hot loop, which copies a
 * request's fields into its own locals at the REQ_* indices: the same reads takeRequest() makes,
 * without the record between (through takeRequest() the tx bench lost about 0.02 of its qnicd/C ratio).
 */
export function requestIndex16(idx: number): number {
  return slot(idx) >> 1;
}

/** A tx request as copied out of the ring: the only copy the data path reads (XSA-155). */
export interface TxRequestCopy {
  gref: number;
  offset: number;
  flags: number;
  id: number;
  size: number;
}

/**
 * What walk() found after a packet's first slot: where the packet ends, its fragments (copied out
 * into the caller's arrays), the first slot's own bytes, and its GSO extra.
 */
export interface TxWalk {
  /** Ring index after the packet's last slot. */
  cons: number;
  /** Index after the packet's last response in the caller's respId/respSeg. */
  nresp: number;
  nfrag: number;
  /** The first slot's size less its fragments' (checked only when the walk validates fragments). */
  head: number;
  gsoSize: number;
  gsoType: number;
  /** WALK_MCAST_ADD | WALK_MCAST_DEL: multicast-control extras the packet carried (copied out into mcastAddr). */
  mcast: number;
}

/** Where walk() writes a packet's fragments and responses (the worker's scratch arrays). */
export interface TxWalkArrays {
  readonly txRespId: Uint16Array;
  readonly txRespSeg: Int32Array;
  readonly txFragRef: Uint32Array;
  readonly txFragOff: Uint16Array;
  readonly txFragSize: Uint16Array;
}

export abstract class TxRing extends BackRing {
  /** The request takeRequest() copied out last. */
  protected readonly req: TxRequestCopy = { gref: 0, offset: 0, flags: 0, id: 0, size: 0 };
  /** The packet walk() walked last. */
  protected readonly walked: TxWalk = { cons: 0, nresp: 0, nfrag: 0, head: 0, gsoSize: 0, gsoType: 0, mcast: 0 };
  /** The last walk's MCAST_ADD address (bytes 0-5) and MCAST_DEL address (6-11), copied out of their slots. */
  protected readonly mcastAddr = new Uint8Array(12);

  constructor(page: ArrayBuffer, journal?: RingJournal | null) {
    super(page, "tx", NETIF_TX_RING_SIZE, NETIF_TX_SLOT_SIZE, NETIF_TX_RESPONSE_SIZE, journal);
  }

  /** Copies the request at ring index `idx` into this.req, each field read once. */
  protected takeRequest(idx: number): void {
    const b = slot(idx);
    const h = b >> 1;
    const r = this.req;
    r.gref = this.u32[(b >> 2) + REQ_GREF32] >>> 0;
    r.offset = this.u16[h + REQ_OFFSET16];
    r.flags = this.u16[h + REQ_FLAGS16];
    r.id = this.u16[h + REQ_ID16];
    r.size = this.u16[h + REQ_SIZE16];
  }

  /**
   * Stages the response at ring index `idx` (publish() moves it into the ring: back-ring.ts says
   * why). An extra-info slot's response (NETIF_RSP_NULL) is given id 0 by its caller, as netback's
   * make_tx_response leaves it.
   */
  protected stageResponse(idx: number, id: number, status: number): void {
    const h = slot(idx) >> 1;
    this.s16[h + RSP_ID16] = id;
    this.sI16[h + RSP_STATUS16] = status;
  }

  /**
   * Walks a tx packet's slots after its first (at `first`, already copied out with `flags` and
   * `size`): extra-info slots while XEN_NETIF_EXTRA_FLAG_MORE (each answered NULL), then the
   * more_data fragments (each answered ERROR until the caller says otherwise), each slot copied out
   * once. Responses go to a.txRespId/txRespSeg from `at + 1` (the first slot's own is the caller's,
   * at `at`); fragments to a.txFragRef/Off/Size. Results in this.walked.
   *
   * Every packet gets the checks netback's xenvif_get_extras and xenvif_count_requests make on the
   * slots themselves: none past req_prod, no unknown extra type, at most TX_SLOTS_FATAL slots.
   * `validate` adds the checks on what a negotiated packet carries (a GSO extra's size and type, a
   * fragment larger than what is left of the packet's size or crossing its page); a packet using a
   * feature never negotiated is answered with errors whatever it carries.
   * Returns the protocol violation, or null.
   */
  protected walk(first: number, flags: number, size: number, prod: number, validate: boolean, a: TxWalkArrays, at: number): string | null {
    const u8 = this.u8;
    const respId = a.txRespId;
    const respSeg = a.txRespSeg;
    let n = at + 1;
    let cons = (first + 1) >>> 0;
    let gsoSize = 0;
    let gsoType = 0;
    let mcast = 0;
    if (flags & NETTXF_extra_info) {
      for (let more = true; more; ) {
        if (cons === prod) return `tx packet at 0x${hex(first)} continues past req_prod 0x${hex(prod)}`;
        const b = slot(cons);
        const type = u8[b + EXTRA_TYPE];
        const eflags = u8[b + EXTRA_FLAGS];
        if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX) return `tx extra info type ${type} is unknown`;
        if (validate && type === XEN_NETIF_EXTRA_TYPE_GSO) {
          const gs = this.u16[(b >> 1) + EXTRA_GSO_SIZE16];
          const gt = u8[b + EXTRA_GSO_TYPE];
          if (gs === 0) return `tx packet at 0x${hex(first)}: GSO size is 0`;
          if (gt !== XEN_NETIF_GSO_TYPE_TCPV4 && gt !== XEN_NETIF_GSO_TYPE_TCPV6) return `tx packet at 0x${hex(first)}: GSO type ${gt} is unknown`;
          gsoSize = gs;
          gsoType = gt;
        } else if (type === XEN_NETIF_EXTRA_TYPE_MCAST_ADD || type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL) {
          // As netback's extras[type - 1]: the last extra of each type is the one that counts.
          const del = type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL;
          const to = del ? 6 : 0;
          for (let k = 0; k < 6; k++) this.mcastAddr[to + k] = u8[b + EXTRA_MCAST_ADDR + k];
          mcast |= del ? WALK_MCAST_DEL : WALK_MCAST_ADD;
        }
        respId[n] = 0;
        respSeg[n++] = R_NULL;
        cons = (cons + 1) >>> 0;
        more = (eflags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
      }
    }
    const req = this.req;
    let nfrag = 0;
    let left = size; // what the fragments may still carry: the first slot's size is the packet's
    for (let f = flags; f & NETTXF_more_data; nfrag++) {
      if (cons === prod) return `tx packet at 0x${hex(first)} continues past req_prod 0x${hex(prod)}`;
      if (nfrag + 1 >= TX_SLOTS_FATAL) return `tx packet at 0x${hex(first)} spans more than ${TX_SLOTS_FATAL} slots`;
      this.takeRequest(cons);
      const fsize = req.size;
      const foff = req.offset;
      f = req.flags;
      if (validate) {
        if (fsize > left) return `tx packet at 0x${hex(first)}: a fragment of ${fsize} bytes is larger than the ${left} left of its size`;
        if (foff + fsize > PAGE_SIZE) return `tx packet at 0x${hex(first)}: a fragment at offset ${foff} of ${fsize} bytes crosses its page`;
        left -= fsize;
      }
      a.txFragRef[nfrag] = req.gref;
      a.txFragOff[nfrag] = foff;
      a.txFragSize[nfrag] = fsize;
      respId[n] = req.id;
      respSeg[n++] = R_ERROR;
      cons = (cons + 1) >>> 0;
    }
    const w = this.walked;
    w.cons = cons;
    w.nresp = n;
    w.nfrag = nfrag;
    w.head = left;
    w.gsoSize = gsoSize;
    w.gsoType = gsoType;
    w.mcast = mcast;
    return null;
  }
}
