// What a guest rx ring needs beyond the ring protocol, the same on the batched path (rx.ts) and the
// seed's (seed-rx.ts): the frames waiting for the frontend to post requests (the byte-bounded
// RxQueue: XSA-392), and the carrier that goes off when the frontend leaves them waiting for
// `stallMs` (Linux's rx_stall_timeout, "Guest Rx stalled" / "Guest Rx ready" in
// drivers/net/xen-netback/rx.c): the queue is purged and frames are dropped until it posts again.
//
// As netback's xenvif_rx_queue_stalled judges it (XSA-392): the queue is stalled when the requests
// posted are fewer than the HEAD frame needs (a GSO frame takes its data slots plus the extra), not
// merely when none is posted, and no frame has been placed for `stallMs`. A guest keeping exactly
// one buffer posted while the head needs eighteen is as stuck as one that posts none. While it
// waits, req_event asks for the next request past req_prod (xenvif_rx_ring_slots_available).
// A frontend without feature-rx-notify is never judged stalled (netback sets stall_timeout 0 for
// it) and its queued frames expire after 30 ms instead of 10 s (rx_drain_timeout): every queued
// frame is dropped once it has waited the drain timeout (xenvif_rx_queue_drop_expired).
import type { VifCounters } from "../src/stats/index.ts";
import { RingHeader } from "../src/xen/ring.ts";
import type { RingJournal } from "./back-ring.ts";
import { RxQueue } from "./rx-queue.ts";
import { RxRing } from "./rx-ring.ts";

/** Linux netback's rx_drain_timeout_msecs default. */
export const DEFAULT_RX_DRAIN_MS = 10_000;
/** Netback's drain timeout for a frontend that does not write feature-rx-notify. */
export const NO_RX_NOTIFY_DRAIN_MS = 30;
const W_REQ_EVENT = RingHeader.reqEvent >> 2;

/** What the frontend negotiated that shapes guest rx (from its feature-* keys). */
export interface RxOptions {
  /** feature-sg: a frame may span several rx buffers (NETRXF_more_data). */
  sg?: boolean;
  /** Netback's gso_mask: bit (1 << XEN_NETIF_GSO_TYPE_TCPV4) for feature-gso-tcpv4, (1 << _TCPV6) for -tcpv6. */
  gsoMask?: number;
  /** feature-rx-notify (default true): false turns the stall check off and the drain timeout down to 30 ms. */
  rxNotify?: boolean;
  /** Drain timeout override (tests); default per rxNotify. */
  drainMs?: number;
}

/** Largest frame one rx buffer takes at NET_IP_ALIGN (a page less 2), without feature-sg. */
export const MAX_FLAT_FRAME = 4094;
/** Largest frame a feature-sg frontend is handed: 64 KiB of TCP GSO plus its Ethernet header fits 17 buffers (netfront takes 18). */
export const MAX_SG_FRAME = 65536 + 14;

export interface RxPass {
  notify: boolean;
  /** The peer may hold more frames (the round limit stopped us): serve this vif again soon. */
  more: boolean;
  fault: string | null;
  /** Carrier change this pass: 1 on, -1 off, 0 none. */
  carrier: number;
}

export abstract class BackloggedRxRing extends RxRing {
  readonly queue: RxQueue;
  carrier = true;
  /** When the carrier goes off or the oldest queued frame expires (performance.now() time); 0: nothing due. */
  private dueAt = 0;
  /** netback's last_rx_time: when a frame was last placed in the ring (or the carrier came on). */
  protected lastRxTime = performance.now();
  /**
   * Bumped by the paths for every round that placed frames, so they never read the clock (~200 ns on
   * this kind of VM); watchStall turns a change into lastRxTime when it next reads the clock. The stall
   * deadline may so start up to one pass late.
   */
  protected rxSeq = 0;
  private rxSeen = 0;
  /** 0 when the stall check is off (no feature-rx-notify). */
  readonly stallMs: number;
  readonly drainMs: number;
  readonly sg: boolean;
  readonly gsoMask: number;
  /** Reused for every pass: the data path allocates nothing. */
  protected readonly pass: RxPass = { notify: false, more: false, fault: null, carrier: 0 };

  constructor(page: ArrayBuffer, queueBytes: number, stallMs: number, journal?: RingJournal | null, opts: RxOptions = {}) {
    super(page, journal);
    const notify = opts.rxNotify !== false;
    this.stallMs = notify ? stallMs : 0;
    this.drainMs = opts.drainMs ?? (notify ? DEFAULT_RX_DRAIN_MS : NO_RX_NOTIFY_DRAIN_MS);
    this.sg = opts.sg === true;
    this.gsoMask = this.sg ? (opts.gsoMask ?? 0) : 0; // netback: TSO needs SG
    // A vif taking multi-slot frames queues 64 KiB ones.
    this.queue = new RxQueue(queueBytes, this.sg ? MAX_SG_FRAME : undefined);
  }

  /**
   * Rx buffers a frame of `len` bytes with meta word `meta` takes on this vif (netback's
   * xenvif_update_needed_slots: its 4 KiB data slots, plus one for a GSO extra), or -1 when the
   * frontend cannot take it at all (over one buffer without feature-sg, over MAX_SG_FRAME, GSO of a
   * type it did not ask for or with no segment size): such a frame is dropped as oversize.
   */
  slotsFor(len: number, meta: number): number {
    if (!this.sg) return len > MAX_FLAT_FRAME ? -1 : 1;
    if (len > MAX_SG_FRAME) return -1;
    const gt = (meta >>> 16) & 0xf;
    if (gt === 0) return (len + 4095) >>> 12;
    if ((this.gsoMask & (1 << gt)) === 0 || (meta & 0xffff) === 0) return -1;
    return ((len + 4095) >>> 12) + 1;
  }

  /**
   * Starts a pass: its record reset and req_prod judged. Judged on every pass, not only when a frame
   * is to be delivered: a frontend that kicks its rx ring with req_prod more than a ring ahead is
   * disabled then (XSA-39), even on a vif with nothing to receive (the ring fuzzer found it left
   * alone until a frame came). False: pass.fault says why.
   */
  protected beginPass(): boolean {
    const pass = this.pass;
    pass.notify = pass.more = false;
    pass.fault = null;
    pass.carrier = 0;
    return this.available(pass) >= 0;
  }

  /** Whether the vif has frames waiting on the guest with a deadline (the worker keeps a timer for it). */
  get stalled(): boolean {
    return this.dueAt !== 0;
  }

  /** Milliseconds until the carrier goes off or the oldest queued frame expires (0: due now). */
  stallDueIn(now: number): number {
    return Math.max(0, this.dueAt - now);
  }

  /**
   * Rx buffers the head of the queue needs. An empty queue: 1, or with the carrier off what the head
   * purged at the stall needed (netback keeps that packet queued and comes back only once the
   * frontend posts enough for it: xenvif_rx_queue_ready).
   */
  headNeeds(): number {
    const q = this.queue;
    if (q.length === 0) return this.carrier ? 1 : this.readyNeeds;
    const n = this.slotsFor(q.lenOf(0), q.metaOf(0));
    return n > 0 ? n + this.hashSlots() : 1;
  }

  /** Extra slots a frame may take beyond its data and GSO extra: a hash extra once the frontend configured hashing (rx.ts). */
  protected hashSlots(): number {
    return 0;
  }

  /** Buffers the frontend must have posted for the carrier to come back (the stalled head's needs). */
  private readyNeeds = 1;

  /** The frontend has `avail` requests posted: with the carrier off and enough for the stalled head, "Guest Rx ready". */
  protected carrierOn(c: VifCounters, avail: number): void {
    if (this.carrier || avail < this.readyNeeds) return;
    this.readyNeeds = 1;
    this.carrier = true;
    this.lastRxTime = performance.now(); // xenvif_queue_carrier_on resets stall detection
    this.rxSeen = this.rxSeq;
    c.carrier = 1;
    this.pass.carrier = 1;
  }

  /**
   * Requests posted and not taken when at least `needed`; otherwise that (smaller) count, with
   * req_event set past req_prod so the next request posted wakes us (netback's
   * xenvif_rx_ring_slots_available: a frontend adding one buffer at a time is woken each time, and
   * we look again). -1 with `into.fault` set when req_prod is more than a ring ahead (XSA-39).
   */
  protected freeSlotsFor(needed: number, into: { fault: string | null }): number {
    for (;;) {
      const prod = this.checkedReqProd(into);
      if (prod < 0) return -1;
      const free = (prod - this.reqCons) >>> 0;
      if (free >= needed) return free;
      // The seq-cst store orders req_event before the second look at req_prod.
      Atomics.store(this.u32, W_REQ_EVENT, (prod + 1) | 0);
      if (this.reqProd() === prod) return free;
    }
  }

  /**
   * Carrier and queue bookkeeping after a pass. With frames still waiting (or the carrier off) and
   * fewer requests than the head needs: req_event asks for the next request, frames that waited the
   * drain timeout are dropped, and the carrier goes off once nothing was placed for stallMs.
   */
  protected watchStall(c: VifCounters): void {
    const q = this.queue;
    this.dueAt = 0;
    const waiting = q.length > 0 || !this.carrier;
    if (!waiting) return;
    const needed = this.headNeeds();
    const free = this.freeSlotsFor(needed, this.pass);
    if (free < 0) return;
    if (free >= needed) {
      this.pass.more = true; // posted meanwhile: come back for them
      return;
    }
    if (q.length === 0) return; // the carrier is off and nothing waits: nothing to time
    // Frames are left waiting on the guest: only now is the clock read.
    const now = performance.now();
    if (this.rxSeq !== this.rxSeen) {
      this.rxSeen = this.rxSeq;
      this.lastRxTime = now;
    }
    q.stamp(now);
    const expired = q.expireBefore(now - this.drainMs);
    if (expired > 0) {
      c.rx_drops += expired;
      c.rx_drops_expired += expired;
    }
    if (this.carrier && this.stallMs > 0) {
      if (now - this.lastRxTime >= this.stallMs) {
        this.carrier = false;
        this.readyNeeds = needed;
        const purged = q.purge();
        c.rx_drops += purged;
        c.rx_drops_stall_purge += purged;
        c.rx_stalls++;
        c.carrier = 0;
        this.pass.carrier = -1;
      } else this.dueAt = this.lastRxTime + this.stallMs;
    }
    if (q.length > 0) {
      const expiry = q.oldestTime() + this.drainMs;
      if (this.dueAt === 0 || expiry < this.dueAt) this.dueAt = expiry;
    }
  }

  close(): void {
    this.queue.free();
  }
}
