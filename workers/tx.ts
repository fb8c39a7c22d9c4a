// Guest tx (the frontend's tx ring -> the vif's peer), per wake-up: read req_prod once, copy each
// request out of the ring once and validate only the copy (XSA-155), build ONE batch of grant-copy
// segments (foreign page -> the worker's frame batch), ONE copy call, ONE checksum call if any frame
// asked for it and the peer cannot complete checksums itself, ONE peer send, responses written and
// pushed once (one per slot, in request order), at most one notify.
//
// With feature-sg a packet spans slots (NETTXF_more_data): the first slot's `size` is the whole
// packet's, each later slot carries one fragment, and every slot becomes one segment landing right
// after the previous one in the packet's frame slot. With feature-gso-* extra-info slots follow the
// first slot (NETTXF_extra_info, chained with XEN_NETIF_EXTRA_FLAG_MORE); a GSO extra makes the
// frame a GSO frame for the peer (the batch's meta word). Without the feature, such a packet is
// answered with errors as a whole, as before it was offered.
//
// Every slot is grant-copied into the frame slot, the whole packet, rather than copying only its
// headers and grant-mapping the rest as Linux netback does (xenvif_tx_build_gops): measured on real
// Xen in one boot (docs/performance.md, 3 x 32 MB guest -> dom0, commit 0153f67), copying moved a
// median 23.7 MB/s (0.53 of kernel netback's 44.5) at 1.59 syscalls per packet; a prototype that
// copied 128 bytes and mapped the rest in one gntdev map per pass (writev over the pieces, unmapped
// before the responses as XSA-396 requires) moved 10.0 MB/s (0.42 of copying) at 2.93. In a PV dom0
// each pass then pays map ioctl + mmap + munmap + unmap ioctl and the page-table work for ~15 pages
// per 60 KB packet, more than the Xen-side copy it saves; the TAP write copies the bytes either way.
//
// Two tiers of guest faults (STYLE 6, netback's xenvif_tx_err / xenvif_fatal_tx_err):
//  - tolerable (size < 14, a packet larger than a frame slot, a flag we did not negotiate, a grant
//    that fails to copy): the packet's slots are answered NETIF_RSP_ERROR (extra-info slots
//    NETIF_RSP_NULL) and counted;
//  - protocol violations (req_prod more than a ring ahead, a packet continuing past req_prod or over
//    20 slots, a first slot whose own bytes cross its page, a fragment larger than what is left of
//    the packet's size or crossing its page, an unknown extra-info type, a GSO size of 0 or an
//    unknown GSO type): `fault` is set, the packet is not consumed and the vif is disabled by the
//    caller. Netback's xenvif_count_requests / xenvif_get_extras / xenvif_set_skb_gso /
//    xenvif_tx_build_gops make the same checks (an oversized fragment was fatal there too, as "Frag
//    is bigger than frame"; a crossing first slot as "Cross page boundary").
import type { Peer } from "../src/net/index.ts";
import { fillChecksums } from "../src/net/index.ts";
import { FRAME_META_CSUM, FRAME_META_GSO_TYPE_SHIFT } from "../src/net/peer.ts";
import type { GrantDevice } from "../src/platform/types.ts";
import type { VifCounters } from "../src/stats/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data } from "../src/xen/netif.ts";
import { PAGE_SIZE } from "../src/xen/ring.ts";
import { crossPageMessage, R_ERROR, R_NULL, R_OKAY } from "./ring-checks.ts";
import type { RingJournal } from "./back-ring.ts";
import { REQ_FLAGS16, REQ_GREF32, REQ_ID16, REQ_OFFSET16, REQ_SIZE16, requestIndex16, TxRing, WALK_MCAST_ADD } from "./tx-ring.ts";
import { TxCredit, type Clock, type TxRate } from "./tx-credit.ts";
import type { McastFilter } from "./mcast-filter.ts";
import { countCopyFailure } from "./fault-reasons.ts";
import type { WorkerScratch } from "./scratch.ts";

/** Smallest frame: an Ethernet header (the seed and netback refuse less). */
const ETH_HLEN = 14;
const PAGE = PAGE_SIZE;
const TWO32 = 4294967296;

/** What the vif negotiated that the tx path must honour. */
export interface TxFeatures {
  /** feature-sg: multi-slot packets. */
  sg: boolean;
  /** feature-gso-tcpv4 (or -tcpv6): extra-info slots carrying GSO. */
  gso: boolean;
  /**
   * The vif has a control ring: its frontend may put a hash extra (XEN_NETIF_EXTRA_TYPE_HASH) after
   * a packet's first slot, which netback accepts (xenvif_get_extras; it sets the skb's hash) and so
   * does qnicd (answered NULL; the host side has no use for the value). A GSO extra still needs GSO.
   */
  hashExtras?: boolean;
}

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
  /** The rate limit holds the next packet back: the ring is not looked at again until credit.timerDueIn() passes. */
  throttled: boolean;
}

/** What a TxPath is given besides its ring: the `rate` limit and the vif's multicast list. */
export interface TxOptions {
  /** B/rate at connect (null or absent: unlimited). */
  rate?: TxRate | null;
  /** The vif's multicast list: MCAST_ADD / MCAST_DEL extras change it. Absent: such packets are not special. */
  mcast?: McastFilter | null;
  clock?: Clock;
}

export class TxPath extends TxRing {
  /** Reused for every pass: the data path allocates nothing. */
  private readonly pass: TxPass = { packets: 0, slots: 0, notify: false, more: false, fault: null, throttled: false };
  /** A pass's cursor while multiSlot() takes a packet (the common single-slot case keeps it in locals). */
  private readonly cur = { cons: 0, nresp: 0, nseg: 0, nframe: 0, anyCsum: 0 };

  /** Flags of a first slot this vif did not negotiate: the packet is answered with errors. */
  private readonly unsupported: number;
  /** GSO was negotiated: a GSO extra is honoured (else the packet is answered with errors). */
  private readonly gso: boolean;
  /** The pass's counters, for the by-reason rows multiSlot() bumps (set once per pass). */
  private c!: VifCounters;
  /** The `rate` limit (unlimited unless B/rate says otherwise): this ring's credit. */
  readonly credit: TxCredit;
  private readonly mcast: McastFilter | null;

  constructor(page: ArrayBuffer, private readonly domid: number, features: TxFeatures = { sg: false, gso: false }, journal?: RingJournal | null, opts: TxOptions = {}) {
    super(page, journal);
    this.unsupported = (features.sg ? 0 : NETTXF_more_data) | (features.gso || features.hashExtras === true ? 0 : NETTXF_extra_info);
    this.gso = features.gso;
    this.credit = new TxCredit(opts.clock);
    this.credit.set(opts.rate ?? null, true);
    this.mcast = opts.mcast ?? null;
  }

  /** No final check while the rate limit holds the ring back (netback's NAPI leaves events off while rate_limited). */
  override finalCheck(): boolean {
    return this.credit.throttled ? false : super.finalCheck();
  }

  /**
   * Consumes up to `budget` packets (the scratch batch's capacity at most), copies them out of the
   * guest in one grant-copy call, hands them to `peer` in one send, answers every slot once.
   */
  service(budget: number, s: WorkerScratch, gnt: GrantDevice, peer: Peer, c: VifCounters): TxPass {
    const pass = this.pass;
    pass.packets = pass.slots = 0;
    pass.notify = pass.more = pass.throttled = false;
    pass.fault = null;
    this.c = c;
    const credit = this.credit;
    if (credit.holds !== 0 || credit.heldUs !== 0) {
      c.tx_throttles += credit.holds;
      c.tx_throttled_usecs += credit.heldUs;
      credit.holds = credit.heldUs = 0;
    }
    // One read of req_prod per pass.
    const prod = this.checkedReqProd(pass);
    if (prod < 0) return pass;
    const frames = s.txFrames;
    const segs = s.txSegs;
    const segU16 = s.txSegU16;
    const segU32 = s.txSegU32;
    const segI16 = s.txSegI16;
    const segFrame = s.txSegFrame;
    const domid = this.domid;
    const lens = frames.lens;
    const meta = frames.meta;
    const csum = s.txCsum;
    const respId = s.txRespId;
    const respSeg = s.txRespSeg;
    const slotLo = s.txSlotLo;
    const slotHi = s.txSlotHi;
    const segMoved = s.txSegMoved;
    const u16 = this.u16;
    const u32 = this.u32;
    const unsupported = this.unsupported;
    // A peer that completes checksums itself (a vnet TAP) gets csum_blank as meta, not a software fill.
    const offloads = peer.offloads === true;
    const max = Math.min(budget, frames.capacity);
    let nframe = 0;
    let nseg = 0;
    let nresp = 0;
    let anyCsum = 0;
    let ncsum = 0; // frames with csum_blank (NETTXF_csum_blank is bit 0: the flag itself counts)
    let cons = this.reqCons;
    // The credit left, in a local for the loop, and looked at only when a rate is set: the per-packet
    // check on an unlimited (Infinity) credit cost the 64 B tx bench ~7 % (0.83 -> 0.77 of C).
    const limited = credit.rate !== null;
    let remaining = limited ? credit.remaining : 0;
    while (cons !== prod && nframe < max) {
      // Copy the slot out once; only these locals are used from here on (XSA-155).
      const q = requestIndex16(cons);
      const gref = u32[(q >> 1) + REQ_GREF32] >>> 0;
      const offset = u16[q + REQ_OFFSET16];
      const flags = u16[q + REQ_FLAGS16];
      const id = u16[q + REQ_ID16];
      const size = u16[q + REQ_SIZE16];
      const first = cons;
      // The rate limit (netback's credit-based scheduling): a packet larger than the credit left
      // waits, unconsumed, for the next window. Unlimited, `remaining` is Infinity.
      if (limited) {
        if (size > remaining) {
          credit.remaining = remaining;
          if (credit.exceeded(size)) {
            pass.throttled = true;
            break;
          }
          remaining = credit.remaining;
        }
        remaining -= size;
      }
      cons = (cons + 1) >>> 0;
      if (flags & unsupported) {
        // Not negotiated: answer the whole packet with errors, as netback's xenvif_tx_err does,
        // consuming its extra and fragment slots so that none of them is later misread as a packet
        // of its own. (The seed answers only the first slot and then parses an extra-info slot as a
        // request: a response with a made-up id, which Linux netfront treats as fatal.)
        const fault = this.walk(first, flags, size, prod, false, s, nresp);
        if (fault !== null) {
          pass.fault = fault;
          cons = first; // the faulty packet is not consumed: the vif is going away
          break;
        }
        respId[nresp] = id;
        // A multicast-control request needs no feature but the one we offered: only extra_info
        // was "unnegotiated" (no GSO), and the packet's other slots are answered as they are.
        if (this.walked.mcast !== 0 && this.mcast !== null && (flags & unsupported) === NETTXF_extra_info) respSeg[nresp] = this.mcastRequest();
        else {
          respSeg[nresp] = R_ERROR;
          c.tx_malformed_unnegotiated++;
        }
        cons = this.walked.cons;
        nresp = this.walked.nresp;
        continue;
      }
      respId[nresp] = id;
      if ((flags & (NETTXF_more_data | NETTXF_extra_info)) === 0) {
        // One slot, no extras: the common case, kept as lean as it was before SG. Segment nseg: the
        // guest's (ref, offset, domid) -> frame slot nframe.
        if (size < ETH_HLEN) {
          c.tx_malformed_runt++;
          respSeg[nresp++] = R_ERROR;
          continue;
        }
        if (offset + size > PAGE) {
          pass.fault = crossPageMessage(first, offset, size);
          cons = first; // the faulty packet is not consumed: the vif is going away
          break;
        }
        const h = nseg * 12;
        const w6 = nseg * 6;
        segU32[w6] = gref;
        segU16[h + 2] = offset;
        segU16[h + 3] = domid;
        // Segment k lands in frame slot k unless a multi-slot packet moved them apart: only then
        // is the local side (written once in WorkerScratch) rewritten.
        if (nseg !== nframe || segMoved[nseg] === 1) {
          segU32[w6 + 2] = slotLo[nframe];
          segU32[w6 + 3] = slotHi[nframe];
          segMoved[nseg] = nseg !== nframe ? 1 : 0;
        }
        segU16[h + 8] = size;
        segI16[h + 10] = 0;
        segFrame[nseg++] = nframe;
        lens[nframe] = size;
        const blank = flags & NETTXF_csum_blank;
        ncsum += blank;
        if (offloads) {
          meta[nframe] = blank ? FRAME_META_CSUM : 0;
          csum[nframe] = 0;
        } else {
          csum[nframe] = blank;
          anyCsum |= blank;
        }
        respSeg[nresp++] = nframe++;
        continue;
      }
      // Several slots and/or extras (feature-sg / feature-gso-*): validated and placed out of line.
      const cur = this.cur;
      cur.cons = cons;
      cur.nresp = nresp;
      cur.nseg = nseg;
      cur.nframe = nframe;
      cur.anyCsum = anyCsum;
      const fault = this.multiSlot(s, prod, first, gref, offset, flags, size, offloads);
      cons = cur.cons;
      nresp = cur.nresp;
      nseg = cur.nseg;
      nframe = cur.nframe;
      anyCsum = cur.anyCsum;
      if (fault !== null) {
        pass.fault = fault;
        break;
      }
    }
    if (limited) credit.remaining = remaining;
    this.reqCons = cons;
    pass.slots = nresp;
    pass.more = pass.fault === null && !pass.throttled && cons !== prod;

    let good = nframe;
    const ok = s.txFrameOk;
    if (nframe > 0) {
      const failed = nseg > 0 ? gnt.copy(segs, nseg) : 0;
      c.ffi_calls++;
      c.syscalls++; // IOCTL_GNTDEV_GRANT_COPY on Xen (the sim does it without one)
      ok.fill(1, 0, nframe);
      if (failed > 0) {
        for (let k = 0; k < nseg; k++) {
          const status = segI16[k * 12 + 10];
          if (status === 0) continue;
          ok[segFrame[k]] = 0;
          countCopyFailure(c, "tx", status);
        }
        good = this.compact(s, nframe);
      }
      frames.count = good;
      if (anyCsum && good > 0) {
        fillChecksums(frames, csum);
        c.ffi_calls++;
      }
      if (good > 0) {
        const sys = peer.syscalls, ffi = peer.ffiCalls;
        const taken = peer.send(frames);
        c.ffi_calls += peer.ffiCalls - ffi;
        c.syscalls += peer.syscalls - sys;
        let bytes = 0;
        for (let k = 0; k < good; k++) bytes += lens[k];
        c.tx_packets += good;
        c.tx_bytes += bytes;
        c.tx_csum_fixups += ncsum;
        if (taken < good) c.tx_drops += good - taken;
      }
    }
    pass.packets = good;
    if (nresp > 0) {
      // Responses in request order; a packet's frame decides the status of each of its slots.
      // Extra-info slots get only a status (NULL), no id, as netback's make_tx_response. Written
      // into the staging page; publish() moves them into the ring (back-ring.ts says why).
      let errors = 0;
      let rsp = this.rspProdPvt;
      for (let r = 0; r < nresp; r++, rsp = (rsp + 1) >>> 0) {
        const fr = respSeg[r];
        if (fr === R_NULL) this.stageResponse(rsp, 0, NETIF_RSP_NULL);
        else if ((fr >= 0 && ok[fr] === 1) || fr === R_OKAY) this.stageResponse(rsp, respId[r], NETIF_RSP_OKAY);
        else {
          this.stageResponse(rsp, respId[r], NETIF_RSP_ERROR);
          errors++;
        }
      }
      this.rspProdPvt = rsp;
      c.tx_errors += errors;
      pass.notify = this.publish((this.rspProdPvt - nresp) >>> 0);
      c.tx_batches++;
    }
    return pass;
  }

  /**
   * A packet of several slots and/or extra-info slots whose first slot (at `first`) was copied out
   * into the arguments: its extras and fragments are copied out once and validated by the ring's
   * walk (netback's xenvif_get_extras / xenvif_count_requests / xenvif_set_skb_gso), its responses recorded, and if
   * it is sound one segment per non-empty slot lands back to back in frame slot cur.nframe. Moves
   * this.cur past it. Returns a protocol violation (the packet then is not consumed), else null.
   */
  private multiSlot(s: WorkerScratch, prod: number, first: number, gref: number, offset: number, flags: number, size: number, offloads: boolean): string | null {
    const cur = this.cur;
    const respSeg = s.txRespSeg;
    const fragRef = s.txFragRef;
    const fragOff = s.txFragOff;
    const fragSize = s.txFragSize;
    const r0 = cur.nresp; // the first slot's response, its id already written
    respSeg[r0] = R_ERROR; // the packet's frame, once it has one
    let fault = this.walk(first, flags, size, prod, true, s, r0);
    const walked = this.walked;
    const head = walked.head; // the first slot's own bytes
    // A multicast-control request: its first slot carries nothing to send, so netback checks neither
    // its size nor its offset (xenvif_tx_build_gops answers it before xenvif_count_requests).
    if (fault === null && walked.mcast !== 0 && this.mcast !== null) {
      cur.cons = walked.cons;
      cur.nresp = walked.nresp;
      respSeg[r0] = this.mcastRequest();
      return null;
    }
    // In netback's order: a packet too small is an error, then a crossing first slot is fatal.
    if (fault === null && size >= ETH_HLEN && offset + head > PAGE) fault = crossPageMessage(first, offset, head);
    if (fault !== null) {
      cur.cons = first; // the faulty packet is not consumed: the vif is going away
      cur.nresp = r0;
      return fault;
    }
    const nresp = walked.nresp;
    const nfrag = walked.nfrag;
    const gsoSize = walked.gsoSize;
    const gsoType = walked.gsoType;
    cur.cons = walked.cons;
    cur.nresp = nresp;

    // Tolerable: the whole packet is answered with errors (already marked so).
    if (gsoType !== 0 && !this.gso) {
      this.c.tx_malformed_unnegotiated++; // extras allowed for the hash only
      return null;
    }
    const frames = s.txFrames;
    if (size < ETH_HLEN || size > frames.stride) {
      if (size < ETH_HLEN) this.c.tx_malformed_runt++;
      else this.c.tx_malformed_oversize++;
      return null;
    }

    // One segment per non-empty slot, each landing right after the previous one in the frame
    // (an empty slot never becomes an empty segment: XSA-448).
    const nframe = cur.nframe;
    const segFrame = s.txSegFrame;
    const lo = s.txSlotLo[nframe];
    const hi = s.txSlotHi[nframe];
    const domid = this.domid;
    let nseg = cur.nseg;
    let at = 0;
    if (head > 0) {
      this.segment(s, nseg, gref, offset, domid, head, lo, hi, 0);
      segFrame[nseg++] = nframe;
      at = head;
    }
    for (let k = 0; k < nfrag; k++) {
      const fsize = fragSize[k];
      if (fsize === 0) continue;
      this.segment(s, nseg, fragRef[k], fragOff[k], domid, fsize, lo, hi, at);
      segFrame[nseg++] = nframe;
      at += fsize;
    }
    cur.nseg = nseg;
    for (let r = r0; r < nresp; r++) if (respSeg[r] !== R_NULL) respSeg[r] = nframe;
    frames.lens[nframe] = size;
    const blank = flags & NETTXF_csum_blank;
    if (blank) this.c.tx_csum_fixups++;
    if (gsoType) this.c.tx_gso_packets++;
    if (offloads) {
      frames.meta[nframe] = (blank || gsoType ? FRAME_META_CSUM : 0) | (gsoType << FRAME_META_GSO_TYPE_SHIFT) | gsoSize;
      s.txCsum[nframe] = 0;
    } else {
      // A GSO frame to a peer without offloads is never negotiated (features.ts): no software fill for it.
      const fill = gsoType ? 0 : blank;
      s.txCsum[nframe] = fill;
      cur.anyCsum |= fill;
    }
    cur.nframe = nframe + 1;
    return null;
  }

  /**
   * The multicast-control request the last walk found, done as netback's xenvif_tx_build_gops does
   * it: an MCAST_ADD (it wins when both are present) is refused once the list is full, an
   * MCAST_DEL always succeeds. Nothing is forwarded. Returns the first slot's response code.
   */
  private mcastRequest(): number {
    const c = this.c;
    c.tx_mcast_requests++;
    if (this.walked.mcast & WALK_MCAST_ADD) {
      if (this.mcast!.add(this.mcastAddr, 0)) return R_OKAY;
      c.tx_mcast_refused++;
      return R_ERROR;
    }
    this.mcast!.del(this.mcastAddr, 6);
    return R_OKAY;
  }

  /** Segment k: `len` bytes from the guest's (ref, offset, domid) to `at` bytes into the frame slot at (hi:lo). */
  private segment(s: WorkerScratch, k: number, ref: number, offset: number, domid: number, len: number, lo: number, hi: number, at: number): void {
    const segU16 = s.txSegU16;
    const segU32 = s.txSegU32;
    const h = k * 12;
    const sum = lo + at; // at < 65536: at most one carry into the high word
    segU32[k * 6] = ref;
    segU16[h + 2] = offset;
    segU16[h + 3] = domid;
    segU32[k * 6 + 2] = sum >>> 0;
    segU32[k * 6 + 3] = sum >= TWO32 ? hi + 1 : hi;
    segU16[h + 8] = len;
    s.txSegI16[h + 10] = 0;
    s.txSegMoved[k] = 1;
  }

  /** Drops the frames whose copy failed from the batch (a rare, guest-caused path); returns the count kept. */
  private compact(s: WorkerScratch, nframe: number): number {
    const frames = s.txFrames;
    const stride = frames.stride;
    const ok = s.txFrameOk;
    let w = 0;
    for (let k = 0; k < nframe; k++) {
      if (ok[k] !== 1) continue;
      if (w !== k) {
        frames.bytes.copyWithin(w * stride, k * stride, k * stride + frames.lens[k]);
        frames.lens[w] = frames.lens[k];
        frames.meta[w] = frames.meta[k];
        s.txCsum[w] = s.txCsum[k];
      }
      w++;
    }
    return w;
  }
}
