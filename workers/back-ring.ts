// The backend's end of one shared ring, as every data path (batched and seed, tx and rx) attaches
// to it: views of the page, the private cursors, and the req_prod sanity check (XSA-39). One place,
// so a path cannot attach or judge req_prod differently from another.
import { RingHeader, requestProdOverflow } from "../src/xen/ring.ts";
import { finalCheckForRequests, overflowMessage } from "./ring-checks.ts";

const W_REQ_PROD = RingHeader.reqProd >> 2;
const W_RSP_PROD = RingHeader.rspProd >> 2;

export abstract class BackRing {
  protected readonly u32: Uint32Array;
  protected readonly u16: Uint16Array;
  protected readonly i16: Int16Array;
  protected readonly u8: Uint8Array;
  reqCons: number;
  rspProdPvt: number;

  /** BACK_RING_ATTACH: one response per request, so both cursors resume at rsp_prod (a vif moved from a dead worker resumes). */
  constructor(page: ArrayBuffer, private readonly dir: "tx" | "rx", private readonly slots: number) {
    this.u32 = new Uint32Array(page, 0, 1024);
    this.u16 = new Uint16Array(page, 0, 2048);
    this.i16 = new Int16Array(page, 0, 2048);
    this.u8 = new Uint8Array(page, 0, 4096);
    this.rspProdPvt = Atomics.load(this.u32, W_RSP_PROD) >>> 0;
    this.reqCons = this.rspProdPvt;
  }

  /** req_prod, read once (seq-cst: the slots it covers are read after it). */
  protected reqProd(): number {
    return Atomics.load(this.u32, W_REQ_PROD) >>> 0;
  }

  /** Why `prod` breaks the protocol (more than a ring ahead of the responses), or null; builds a string only on a fault. */
  protected overflow(prod: number): string | null {
    return requestProdOverflow(prod, this.rspProdPvt, this.slots) ? overflowMessage(this.dir, prod, this.rspProdPvt) : null;
  }

  /** Connect-time check, as netback's xenvif_map_frontend_data_rings: null when the ring is sane. */
  attachError(): string | null {
    return this.overflow(this.reqProd());
  }

  /** Requests posted and not yet taken, or -1 with `into.fault` set when req_prod is more than a ring ahead. */
  protected available(into: { fault: string | null }): number {
    const prod = this.reqProd();
    const bad = this.overflow(prod);
    if (bad !== null) {
      into.fault = bad;
      return -1;
    }
    return (prod - this.reqCons) >>> 0;
  }

  /** RING_FINAL_CHECK_FOR_REQUESTS, after the ports were unmasked. */
  finalCheck(): boolean {
    return finalCheckForRequests(this.u32, this.reqCons);
  }
}
