// The frontend's half of a Xen shared ring (io/ring.h: FRONT_RING_INIT, RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
// RING_FINAL_CHECK_FOR_RESPONSES, RING_RESPONSE_PROD_OVERFLOW). The page is shared with the backend
// in another process, so every shared index goes through Atomics (BUN-FACTS: plain stores were seen
// reordered after later loads; Atomics.store/load act as the wmb/mb/rmb of ring.h).
import { PAGE_SIZE, RingHeader, idxDiff, needsNotify } from "../../xen/ring.ts";

const REQ_PROD = RingHeader.reqProd / 4;
const REQ_EVENT = RingHeader.reqEvent / 4;
const RSP_PROD = RingHeader.rspProd / 4;
const RSP_EVENT = RingHeader.rspEvent / 4;

export class FrontRing {
  /** Header words of the shared page (req_prod, req_event, rsp_prod, rsp_event). */
  private readonly hdr: Uint32Array;
  /** Private producer index: requests written but not yet pushed. */
  reqProdPvt = 0;
  /** Private consumer index: the next response to read. */
  rspCons = 0;

  constructor(
    /** The whole ring page. */
    readonly page: Uint8Array,
    readonly size: number,
  ) {
    if (page.byteLength !== PAGE_SIZE) throw new RangeError(`a ring is one ${PAGE_SIZE}-byte page, got ${page.byteLength}`);
    this.hdr = new Uint32Array(page.buffer, page.byteOffset, 4);
  }

  /** SHARED_RING_INIT + FRONT_RING_INIT: indices 0, events 1, the rest of the page zeroed. */
  init(): void {
    this.page.fill(0);
    Atomics.store(this.hdr, REQ_PROD, 0);
    Atomics.store(this.hdr, RSP_PROD, 0);
    Atomics.store(this.hdr, REQ_EVENT, 1);
    Atomics.store(this.hdr, RSP_EVENT, 1);
    this.reqProdPvt = 0;
    this.rspCons = 0;
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publish reqProdPvt; true if the backend asked to be told. */
  pushRequests(): boolean {
    const old = Atomics.load(this.hdr, REQ_PROD);
    const now = this.reqProdPvt >>> 0;
    Atomics.store(this.hdr, REQ_PROD, now); // wmb before, mb after: both implied by the atomic store
    return needsNotify(now, old, Atomics.load(this.hdr, REQ_EVENT));
  }

  /** The backend's published response producer (rmb: read before the slots it covers). */
  rspProd(): number {
    return Atomics.load(this.hdr, RSP_PROD);
  }

  /** RING_RESPONSE_PROD_OVERFLOW: the backend claims more responses than requests could exist. */
  responseProdOverflow(prod: number): boolean {
    return idxDiff(prod, this.rspCons) > this.size;
  }

  hasUnconsumedResponses(): boolean {
    return this.rspProd() !== (this.rspCons >>> 0);
  }

  /**
   * RING_FINAL_CHECK_FOR_RESPONSES: when nothing is left, ask for an event on the next response
   * (rsp_event = rsp_cons + 1), then look again to close the race with a response pushed meanwhile.
   */
  finalCheckForResponses(): boolean {
    if (this.hasUnconsumedResponses()) return true;
    Atomics.store(this.hdr, RSP_EVENT, (this.rspCons + 1) >>> 0);
    return this.hasUnconsumedResponses();
  }

  /** Sets rsp_event directly (xennet_open does rsp_event = rsp_cons + 1 on the rx ring). */
  setRspEvent(v: number): void {
    Atomics.store(this.hdr, RSP_EVENT, v >>> 0);
  }

  /** Requests produced (pushed or not) whose responses have not been consumed. */
  outstanding(): number {
    return idxDiff(this.reqProdPvt, this.rspCons);
  }

  /** Byte offset of slot `idx` in the page. */
  slot(idx: number, slotSize: number): number {
    return 64 + (idx & (this.size - 1)) * slotSize;
  }

  /** Snapshot of the shared header (tests, diagnostics). */
  header(): { reqProd: number; reqEvent: number; rspProd: number; rspEvent: number } {
    return {
      reqProd: Atomics.load(this.hdr, REQ_PROD),
      reqEvent: Atomics.load(this.hdr, REQ_EVENT),
      rspProd: Atomics.load(this.hdr, RSP_PROD),
      rspEvent: Atomics.load(this.hdr, RSP_EVENT),
    };
  }
}
