// What a guest rx ring needs beyond the ring protocol, the same on the batched path (rx.ts) and the
// seed's (seed-rx.ts): the frames waiting for the frontend to post requests (the byte-bounded
// RxQueue: XSA-392), and the carrier that goes off when the frontend leaves them waiting for
// `stallMs` (Linux's rx_stall_timeout, "Guest Rx stalled" / "Guest Rx ready" in
// drivers/net/xen-netback/rx.c): the queue is purged and frames are dropped until it posts again.
import type { VifCounters } from "../src/stats/index.ts";
import type { RingJournal } from "./back-ring.ts";
import { RxQueue } from "./rx-queue.ts";
import { RxRing } from "./rx-ring.ts";

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
  /** performance.now() when frames started waiting with no request posted; 0 when not stalled. */
  stallSince = 0;
  /** Reused for every pass: the data path allocates nothing. */
  protected readonly pass: RxPass = { notify: false, more: false, fault: null, carrier: 0 };

  constructor(page: ArrayBuffer, queueBytes: number, readonly stallMs: number, journal?: RingJournal | null) {
    super(page, journal);
    this.queue = new RxQueue(queueBytes);
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

  /** Whether the vif has frames waiting on the guest (the worker then keeps a timer for the stall). */
  get stalled(): boolean {
    return this.stallSince !== 0;
  }

  /** Milliseconds until a stalled vif's carrier goes off (0: due now). */
  stallDueIn(now: number): number {
    return Math.max(0, this.stallSince + this.stallMs - now);
  }

  /** The frontend posts requests again with the carrier off: "Guest Rx ready". */
  protected carrierOn(c: VifCounters): void {
    if (this.carrier) return;
    this.carrier = true;
    c.carrier = 1;
    this.pass.carrier = 1;
  }

  /**
   * Carrier bookkeeping after a pass. With frames waiting and no requests, or the carrier off, ask
   * for an event at the next request (RING_FINAL_CHECK_FOR_REQUESTS) so posting wakes us.
   */
  protected watchStall(c: VifCounters): void {
    const waiting = this.queue.length > 0 || !this.carrier;
    if (!waiting) {
      this.stallSince = 0;
      return;
    }
    if (this.finalCheckAvailable(this.pass) > 0) {
      this.stallSince = 0;
      this.pass.more = true; // posted meanwhile: come back for them
      return;
    }
    if (!this.carrier) return;
    const now = performance.now();
    if (this.stallSince === 0) this.stallSince = now;
    else if (now - this.stallSince >= this.stallMs) {
      this.carrier = false;
      this.stallSince = 0;
      const purged = this.queue.purge();
      c.rx_drops += purged;
      c.rx_drops_stall_purge += purged;
      c.rx_stalls++;
      c.carrier = 0;
      this.pass.carrier = -1;
    }
  }

  close(): void {
    this.queue.free();
  }
}
