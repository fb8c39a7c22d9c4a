// The `rate` limit on guest tx, one per tx ring (per queue, as netback keeps credit_bytes,
// credit_usec, remaining_credit and credit_timeout in struct xenvif_queue): netback's credit
// scheduler from drivers/net/xen-netback/netback.c (tx_credit_exceeded, tx_add_credit,
// xenvif_tx_credit_callback) and xenbus.c (xen_net_rate_changed), with the kernel timer replaced by
// a deadline the worker loop sleeps until.
//
// Before a packet is consumed its first slot's size (the whole packet's) is compared with the
// credit left. A packet larger than that waits, unconsumed, in the ring: if the window has passed,
// a new one starts now with fresh credit; if it is still too big, a timer is armed at the end of
// the window, which becomes the next window's start, and the ring is not looked at again until the
// timer fires (no final check, so the frontend's notifications stop too: netback's NAPI does not
// re-enable events while rate_limited). Fresh credit is added to what is left, capped at
// max(128 KiB, bytes per interval), so a 64 KiB packet always gets through however low the rate.
//
// Quirks kept from netback: the interval is truncated to whole milliseconds (netback: to ms, then
// jiffies), and a credit timer is never armed less than 1 ms ahead (netback's fires at the next
// jiffy), so an interval under 1 ms adds its bytes once per ms; only one interval's bytes are added
// per refill however long the ring was idle; the credit is per ring, so a frontend with M queues
// gets about M x the rate.

import type { VifRate } from "../src/pool/types.ts";

/** What B/rate says: `bytes` per `usecs` microseconds; null is unlimited. */
export type TxRate = VifRate;

/** tx_add_credit's burst floor: "a jumbo packet of up to 128kB" always fits. */
export const TX_CREDIT_BURST_MIN = 131072;

/** Milliseconds since some fixed point (performance.now in the worker, a fake clock in tests). */
export type Clock = () => number;

export class TxCredit {
  /** Bytes added per window (credit_bytes); Infinity when unlimited. */
  private bytes = Infinity;
  /** The window in whole ms (credit_usec / 1000, truncated as netback does). */
  private windowMs = 0;
  /** Bytes that may still go before the next refill (remaining_credit). */
  remaining = Infinity;
  /** When the current window began (credit_window_start). */
  private windowStart: number;
  /** When the credit timer fires, or -1 when none is pending (timer_pending). */
  private timerAt = -1;
  /** The configured rate, as read from B/rate (null: unlimited). */
  rate: TxRate | null = null;
  /** When the pending timer was armed (the packet was held back). */
  private heldSince = 0;
  /** Microseconds spent held back, not yet added to the vif's tx_throttled_usecs (the tx path moves them). */
  heldUs = 0;
  /** Times a packet was held back, not yet added to the vif's tx_throttles. */
  holds = 0;

  constructor(private readonly now: Clock = () => performance.now()) {
    this.windowStart = now();
  }

  /**
   * A new rate (null: unlimited). At connect (xenbus.c's connect: remaining = bytes) and on every
   * change of B/rate (xen_net_rate_changed): a pending timer fires now, else what is left is cut
   * down to the new bytes per interval. The change is in effect within one interval either way.
   */
  set(rate: TxRate | null, atConnect = false): void {
    this.rate = rate;
    this.bytes = rate === null ? Infinity : rate.bytes;
    this.windowMs = rate === null ? 0 : Math.floor(rate.usecs / 1000);
    if (atConnect) {
      this.remaining = this.bytes;
      return;
    }
    if (this.timerAt >= 0) this.fire(this.now());
    else if (this.remaining > this.bytes) this.remaining = this.bytes;
    // Unlimited takes effect at once (netback would wait for the window's end: its "unlimited" is
    // just a very large credit_bytes, added at the next refill).
    if (rate === null) this.remaining = Infinity;
  }

  /**
   * tx_credit_exceeded, for a packet of `size` bytes larger than what is left: true when it must
   * wait (a timer is then pending: timerDueIn() says how long).
   */
  exceeded(size: number): boolean {
    if (this.timerAt >= 0) return true;
    const now = this.now();
    const next = this.windowStart + this.windowMs;
    if (now >= next) {
      this.windowStart = now;
      this.addCredit();
    }
    if (size > this.remaining) {
      // A kernel timer armed for now fires at the next tick: never sooner than 1 ms here, so a
      // window under 1 ms refills once per ms instead of spinning the worker.
      this.timerAt = next > now ? next : now + 1;
      this.windowStart = this.timerAt;
      this.heldSince = now;
      this.holds++;
      return true;
    }
    return false;
  }

  /** Ms until the pending timer fires (0: due now), or -1 when none is pending. */
  timerDueIn(now: number): number {
    if (this.timerAt < 0) return -1;
    return this.timerAt > now ? this.timerAt - now : 0;
  }

  /**
   * xenvif_tx_credit_callback: if the timer is due at `now`, fresh credit is added and true is
   * returned (the caller then serves the ring again, with a final check).
   */
  due(now: number): boolean {
    if (this.timerAt < 0 || now < this.timerAt) return false;
    this.fire(now);
    return true;
  }

  /** Whether guest tx is held back right now (netback's rate_limited). */
  get throttled(): boolean {
    return this.timerAt >= 0;
  }

  private fire(now: number): void {
    // From when the packet was held back to when it may go (a late wake-up counts: it was held).
    this.heldUs += Math.round(Math.max(0, now - this.heldSince) * 1000);
    this.timerAt = -1;
    this.addCredit();
  }

  /** tx_add_credit: remaining = min(remaining + bytes, max(128 KiB, bytes)). */
  private addCredit(): void {
    const burst = Math.max(TX_CREDIT_BURST_MIN, this.bytes);
    this.remaining = Math.min(this.remaining + this.bytes, burst);
  }
}
