// The backend's end of a guest rx ring (netif_rx_sring in xen/include/public/io/netif.h): a request
// copied out of its slot, a response staged in its slot, both through the offsets src/xen/netif.ts
// declares and test/xen/abi.test.ts checks against Xen's header. The batched path (rx.ts) and the
// seed baseline (seed-rx.ts) are two algorithms over this one ring.
import { ExtraInfo, NETIF_RX_RESPONSE_SIZE, NETIF_RX_RING_SIZE, NETIF_RX_SLOT_SIZE, RxRequest, RxResponse, XEN_NETIF_EXTRA_TYPE_GSO } from "../src/xen/netif.ts";
import { RING_HEADER_SIZE } from "../src/xen/ring.ts";
import { BackRing, type RingJournal } from "./back-ring.ts";

const MASK = NETIF_RX_RING_SIZE - 1;
// Field indices inside a slot, in the width each field is read at. Module constants derived from the
// declarations, so the JIT folds them as it folded the literals they replace.
const REQ_ID16 = RxRequest.id >> 1;
const REQ_GREF32 = RxRequest.gref >> 2;
const RSP_ID16 = RxResponse.id >> 1;
const RSP_OFFSET16 = RxResponse.offset >> 1;
const RSP_FLAGS16 = RxResponse.flags >> 1;
const RSP_STATUS16 = RxResponse.status >> 1;
// A netif_extra_info written over a response slot: type and flags share a 16-bit word, so do the GSO
// type and its pad; the whole 8 bytes are written (nothing of the request's id is left behind).
const EXTRA_TYPE16 = ExtraInfo.type >> 1;
const EXTRA_GSO_SIZE16 = ExtraInfo.gsoSize >> 1;
const EXTRA_GSO_TYPE16 = ExtraInfo.gsoType >> 1;
const EXTRA_GSO_FEATURES16 = ExtraInfo.gsoFeatures >> 1;

/** Byte offset of slot `idx` in the page (RING_GET_REQUEST / RING_GET_RESPONSE): a multiple of 8, so every field is aligned. */
function slot(idx: number): number {
  return RING_HEADER_SIZE + (idx & MASK) * NETIF_RX_SLOT_SIZE;
}

/** An rx request as copied out of the ring: the only copy the data path reads (XSA-155). */
export interface RxRequestCopy {
  id: number;
  gref: number;
}

export abstract class RxRing extends BackRing {
  /** The request takeRequest() copied out last. */
  protected readonly req: RxRequestCopy = { id: 0, gref: 0 };

  constructor(page: ArrayBuffer, journal?: RingJournal | null) {
    super(page, "rx", NETIF_RX_RING_SIZE, NETIF_RX_SLOT_SIZE, NETIF_RX_RESPONSE_SIZE, journal);
  }

  /** Copies the request at ring index `idx` into this.req, each field read once. */
  protected takeRequest(idx: number): void {
    const b = slot(idx);
    const r = this.req;
    r.id = this.u16[(b >> 1) + REQ_ID16];
    r.gref = this.u32[(b >> 2) + REQ_GREF32] >>> 0;
  }

  /** Stages the response at ring index `idx` (publish() moves it into the ring: back-ring.ts says why). `status` is the length, or a NETIF_RSP_ code. */
  protected stageResponse(idx: number, id: number, offset: number, flags: number, status: number): void {
    const h = slot(idx) >> 1;
    this.s16[h + RSP_ID16] = id;
    this.s16[h + RSP_OFFSET16] = offset;
    this.s16[h + RSP_FLAGS16] = flags;
    this.sI16[h + RSP_STATUS16] = status;
  }

  /**
   * Stages a GSO extra at ring index `idx` in place of a response (netback's xenvif_rx_extra_slot):
   * type XEN_NETIF_EXTRA_TYPE_GSO, flags 0 (no further extra), size = MSS, type TCPV4/TCPV6, pad 0,
   * features 0. Little-endian, as the ring is.
   */
  protected stageGsoExtra(idx: number, gsoSize: number, gsoType: number): void {
    const h = slot(idx) >> 1;
    this.s16[h + EXTRA_TYPE16] = XEN_NETIF_EXTRA_TYPE_GSO; // flags byte 0
    this.s16[h + EXTRA_GSO_SIZE16] = gsoSize;
    this.s16[h + EXTRA_GSO_TYPE16] = gsoType; // pad byte 0
    this.s16[h + EXTRA_GSO_FEATURES16] = 0;
  }
}
