// Guest tx (the frontend's tx ring -> the vif's peer), per wake-up: read req_prod once, copy each
// request out of the ring once and validate only the copy (XSA-155), build ONE batch of grant-copy
// segments (foreign page -> the worker's frame batch), ONE copy call, ONE checksum call if any frame
// asked for it, ONE peer send, responses written and pushed once, at most one notify.
//
// Two tiers of guest faults (STYLE 6, netback's xenvif_tx_err / xenvif_fatal_tx_err):
//  - tolerable (size < 14, offset + size past the page, a flag we did not negotiate, a grant that
//    fails to copy): that request (and the rest of its packet) is answered NETIF_RSP_ERROR and counted;
//  - protocol violations (req_prod more than a ring ahead, a packet continuing past req_prod or over
//    20 slots, an unknown extra-info type): `fault` is set and the vif is disabled by the caller.
import type { Peer } from "../src/net/index.ts";
import { fillChecksums } from "../src/net/index.ts";
import type { GrantDevice } from "../src/platform/types.ts";
import type { VifCounters } from "../src/stats/index.ts";
import {
  NETIF_RSP_ERROR,
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
  NETIF_TX_RING_SIZE,
  NETTXF_csum_blank,
  NETTXF_extra_info,
  NETTXF_more_data,
} from "../src/xen/netif.ts";
import { RingHeader, needsNotify, requestProdOverflow } from "../src/xen/ring.ts";
import { finalCheckForRequests, overflowMessage, R_ERROR, R_NULL, walkUnsupportedTx } from "./ring-checks.ts";
import type { WorkerScratch } from "./scratch.ts";

const SIZE = NETIF_TX_RING_SIZE;
const MASK = SIZE - 1;
const W_REQ_PROD = RingHeader.reqProd >> 2;
const W_RSP_PROD = RingHeader.rspProd >> 2;
const W_RSP_EVENT = RingHeader.rspEvent >> 2;
/** Smallest frame: an Ethernet header (the seed and netback refuse less). */
const ETH_HLEN = 14;
const PAGE = 4096;
/** Flags this data path cannot honour yet: multi-slot packets and extra-info slots (no SG/GSO offered). */
const UNSUPPORTED = NETTXF_more_data | NETTXF_extra_info;

export interface TxPass {
  /** Packets handed to the peer this pass. */
  packets: number;
  /** Slots consumed (= responses written) this pass. */
  slots: number;
  /** The frontend asked to be notified of these responses. */
  notify: boolean;
  /** Requests remain because the budget ran out (not the final check). */
  more: boolean;
  /** Set when the frontend broke the protocol: the vif must be disabled with EPROTO. */
  fault: string | null;
}

export class TxPath {
  private readonly u32: Uint32Array;
  private readonly u16: Uint16Array;
  private readonly i16: Int16Array;
  private readonly u8: Uint8Array;
  reqCons: number;
  rspProdPvt: number;
  /** Reused for every pass: the data path allocates nothing. */
  private readonly pass: TxPass = { packets: 0, slots: 0, notify: false, more: false, fault: null };

  /** Attaches where the shared ring says responses stop (BACK_RING_ATTACH), so a vif moved from a dead worker resumes. */
  constructor(page: ArrayBuffer, private readonly domid: number) {
    this.u32 = new Uint32Array(page, 0, 1024);
    this.u16 = new Uint16Array(page, 0, 2048);
    this.i16 = new Int16Array(page, 0, 2048);
    this.u8 = new Uint8Array(page, 0, PAGE);
    this.rspProdPvt = Atomics.load(this.u32, W_RSP_PROD) >>> 0;
    this.reqCons = this.rspProdPvt;
  }

  /** Connect-time check, as netback's xenvif_map_frontend_data_rings: null when the ring is sane. */
  attachError(): string | null {
    const prod = Atomics.load(this.u32, W_REQ_PROD) >>> 0;
    return requestProdOverflow(prod, this.rspProdPvt, SIZE) ? overflowMessage("tx", prod, this.rspProdPvt) : null;
  }

  /**
   * Consumes up to `budget` packets (the scratch batch's capacity at most), copies them out of the
   * guest in one grant-copy call, hands them to `peer` in one send, answers every slot once.
   */
  service(budget: number, s: WorkerScratch, gnt: GrantDevice, peer: Peer, c: VifCounters): TxPass {
    const pass = this.pass;
    pass.packets = pass.slots = 0;
    pass.notify = pass.more = false;
    pass.fault = null;
    // One read of req_prod per pass (seq-cst load: the slots it covers are read after it).
    const prod = Atomics.load(this.u32, W_REQ_PROD) >>> 0;
    if (requestProdOverflow(prod, this.rspProdPvt, SIZE)) {
      pass.fault = overflowMessage("tx", prod, this.rspProdPvt);
      return pass;
    }
    const frames = s.txFrames;
    const segs = s.txSegs;
    const segU16 = s.txSegU16;
    const segU32 = s.txSegU32;
    const segI16 = s.txSegI16;
    const domid = this.domid;
    const lens = frames.lens;
    const csum = s.txCsum;
    const respId = s.txRespId;
    const respSeg = s.txRespSeg;
    const u16 = this.u16;
    const u32 = this.u32;
    const max = Math.min(budget, frames.capacity);
    let nseg = 0;
    let nresp = 0;
    let anyCsum = 0;
    let cons = this.reqCons;
    while (cons !== prod && nseg < max) {
      // Copy the slot out once; only these locals are used from here on (XSA-155).
      const w = (64 + (cons & MASK) * 12) >> 1;
      const gref = u32[w >> 1] >>> 0;
      const offset = u16[w + 2];
      const flags = u16[w + 3];
      const id = u16[w + 4];
      const size = u16[w + 5];
      const first = cons;
      cons = (cons + 1) >>> 0;
      if (flags & UNSUPPORTED) {
        // Not negotiated (we offer no feature-sg/gso): answer the whole packet with errors, as
        // netback's xenvif_tx_err does, consuming its extra and fragment slots so that none of
        // them is later misread as a packet of its own. (The seed answers only the first slot and
        // then parses an extra-info slot as a request: a response with a made-up id, which Linux
        // netfront treats as fatal.)
        const end = walkUnsupportedTx(this.u8, u16, MASK, first, flags, prod, respId, respSeg, nresp);
        if (typeof end === "string") {
          pass.fault = end;
          cons = first; // the faulty packet is not consumed: the vif is going away
          break;
        }
        respId[nresp] = id;
        respSeg[nresp] = R_ERROR;
        cons = (first + (end - nresp)) >>> 0;
        nresp = end;
        continue;
      }
      respId[nresp] = id;
      if (size < ETH_HLEN || offset + size > PAGE) {
        respSeg[nresp++] = R_ERROR;
        continue;
      }
      // Segment nseg: guest (ref, offset, domid) -> frame slot nseg (written once in WorkerScratch).
      const h = nseg * 12;
      segU32[nseg * 6] = gref;
      segU16[h + 2] = offset;
      segU16[h + 3] = domid;
      segU16[h + 8] = size;
      segI16[h + 10] = 0;
      lens[nseg] = size;
      const blank = flags & NETTXF_csum_blank;
      csum[nseg] = blank;
      anyCsum |= blank;
      respSeg[nresp++] = nseg++;
    }
    this.reqCons = cons;
    pass.slots = nresp;
    pass.more = pass.fault === null && cons !== prod;

    let good = nseg;
    if (nseg > 0) {
      const failed = gnt.copy(segs, nseg);
      c.ffi_calls++;
      c.syscalls++; // IOCTL_GNTDEV_GRANT_COPY on Xen (the sim does it without one)
      if (failed > 0) good = this.compact(s, nseg);
      frames.count = good;
      if (anyCsum && good > 0) {
        fillChecksums(frames, csum);
        c.ffi_calls++;
      }
      if (good > 0) {
        const before = peer.kind === "tap" ? (peer as unknown as { syscalls: number }).syscalls : 0;
        const taken = peer.send(frames);
        if (peer.kind !== "null") c.ffi_calls++;
        if (peer.kind === "tap") c.syscalls += (peer as unknown as { syscalls: number }).syscalls - before;
        let bytes = 0;
        for (let k = 0; k < good; k++) bytes += lens[k];
        c.tx_packets += good;
        c.tx_bytes += bytes;
        if (taken < good) c.tx_drops += good - taken;
      }
    }
    pass.packets = good;
    if (nresp > 0) {
      // Responses in request order; a segment's status decides its packet's. Extra-info slots get
      // only a status (NULL), no id, as netback's make_tx_response.
      let errors = 0;
      const i16 = this.i16;
      let rsp = this.rspProdPvt;
      for (let r = 0; r < nresp; r++, rsp = (rsp + 1) >>> 0) {
        const h = (64 + (rsp & MASK) * 12) >> 1;
        const seg = respSeg[r];
        if (seg === R_NULL) {
          i16[h + 1] = NETIF_RSP_NULL;
          continue;
        }
        u16[h] = respId[r];
        if (seg >= 0 && segI16[seg * 12 + 10] === 0) i16[h + 1] = NETIF_RSP_OKAY;
        else {
          i16[h + 1] = NETIF_RSP_ERROR;
          errors++;
        }
      }
      this.rspProdPvt = rsp;
      c.tx_errors += errors;
      pass.notify = this.push((this.rspProdPvt - nresp) >>> 0);
      c.tx_batches++;
    }
    return pass;
  }

  /** Drops the frames whose copy failed from the batch (a rare, guest-caused path); returns the count kept. */
  private compact(s: WorkerScratch, nseg: number): number {
    const frames = s.txFrames;
    const stride = frames.stride;
    let w = 0;
    for (let k = 0; k < nseg; k++) {
      if (s.txSegs.status(k) !== 0) continue;
      if (w !== k) {
        frames.bytes.copyWithin(w * stride, k * stride, k * stride + frames.lens[k]);
        frames.lens[w] = frames.lens[k];
        s.txCsum[w] = s.txCsum[k];
      }
      w++;
    }
    return w;
  }

  /** RING_FINAL_CHECK_FOR_REQUESTS, after the ports were unmasked. */
  finalCheck(): boolean {
    return finalCheckForRequests(this.u32, this.reqCons);
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY. The seq-cst store orders the slot writes before rsp_prod and the rsp_event read after it. */
  private push(old: number): boolean {
    Atomics.store(this.u32, W_RSP_PROD, this.rspProdPvt | 0);
    return needsNotify(this.rspProdPvt, old, Atomics.load(this.u32, W_RSP_EVENT) >>> 0);
  }
}
