// The transmit side of one queue, after xennet_start_xmit and xennet_tx_buf_gc: one ring slot per
// frame (no scatter-gather, no GSO yet), the frame copied into a page of guest RAM that is granted
// read-only to the backend for the life of the request, ids from a free list, and completion
// driven by tx responses. Like Linux, a frame waits (here: in a bounded backlog, the qdisc's job)
// while fewer than XEN_NETIF_NR_SLOTS_MIN + 1 slots are free.
import type { GuestDomain } from "../hypervisor/index.ts";
import { PAGE_SIZE } from "../../xen/ring.ts";
import { NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETIF_TX_RING_SIZE, NETIF_TX_SLOT_SIZE, TxRequest, TxResponse, XEN_NETIF_NR_SLOTS_MIN } from "../../xen/netif.ts";
import type { NetfrontCounters } from "./counters.ts";
import type { FrontRing } from "./front-ring.ts";

/** Linux's TX_LINK_NONE / TX_PENDING markers in tx_link[]. */
const LINK_NONE = 0xffff;
const LINK_PENDING = 0xfffe;

export interface TxFrameOptions {
  /** NETTXF_* flags for the slot (e.g. csum_blank | data_validated for a locally built TCP frame). */
  flags?: number;
  /** Offset of the frame in its page (Linux: wherever skb->data sits); clamped so the frame fits. */
  offset?: number;
}

export interface TxQueueDeps {
  guest: GuestDomain;
  backendDomid: number;
  ring: FrontRing;
  counters: NetfrontCounters;
  notify(): void;
  /** The backend broke the protocol: Linux sets info->broken and stops using the device. */
  broken(why: string): void;
  /** Called for every tx response (tests and diagnostics). */
  onResponse?(id: number, status: number): void;
  maxBacklog: number;
}

export class TxQueue {
  private readonly link = new Uint16Array(NETIF_TX_RING_SIZE);
  private freeHead = 0;
  /** gref of the request using each id, -1 when free. */
  private readonly grefs = new Int32Array(NETIF_TX_RING_SIZE).fill(-1);
  /** A page of guest RAM per id, allocated on first use and kept (our stand-in for skb pages). */
  private readonly pages = new Int32Array(NETIF_TX_RING_SIZE).fill(-1);
  private readonly view: DataView;
  private readonly backlog: { frame: Uint8Array; opts: TxFrameOptions }[] = [];
  private dead = false;

  constructor(private readonly d: TxQueueDeps) {
    // Every id free, chained 0 -> 1 -> ... -> 255 -> NONE (xennet_init_queue).
    for (let i = 0; i < NETIF_TX_RING_SIZE; i++) this.link[i] = i + 1;
    this.link[NETIF_TX_RING_SIZE - 1] = LINK_NONE;
    this.view = new DataView(d.ring.page.buffer, d.ring.page.byteOffset, PAGE_SIZE);
  }

  /** netfront_tx_slot_available: room for a worst-case packet (18 slots) and one more. */
  private slotAvailable(): boolean {
    return this.d.ring.outstanding() < NETIF_TX_RING_SIZE - XEN_NETIF_NR_SLOTS_MIN - 1;
  }

  get backlogLength(): number {
    return this.backlog.length;
  }

  /** Queues or sends one frame; false if it was dropped (backlog full, or the queue is dead). */
  send(frame: Uint8Array, opts: TxFrameOptions = {}): boolean {
    if (frame.byteLength > PAGE_SIZE) throw new RangeError(`frame of ${frame.byteLength} bytes: this netfront sends one slot per frame, at most ${PAGE_SIZE} bytes`);
    if (this.dead) {
      this.d.counters.txDropped++;
      return false;
    }
    if (this.backlog.length > 0 || !this.slotAvailable()) {
      if (this.backlog.length >= this.d.maxBacklog) {
        this.d.counters.txDropped++;
        return false;
      }
      this.backlog.push({ frame: frame.slice(), opts });
      return true;
    }
    this.put(frame, opts);
    this.push();
    // Linux reaps completions right after queueing (xennet_tx_buf_gc in start_xmit).
    this.gc();
    return true;
  }

  /** Writes one request (not yet pushed). */
  private put(frame: Uint8Array, opts: TxFrameOptions): void {
    const id = this.freeHead;
    this.freeHead = this.link[id]!;
    this.link[id] = LINK_PENDING;
    let frameNo = this.pages[id]!;
    if (frameNo < 0) this.pages[id] = frameNo = this.d.guest.allocPage();
    const page = this.d.guest.pageView(frameNo);
    const offset = Math.max(0, Math.min(opts.offset ?? 0, PAGE_SIZE - frame.byteLength));
    // Like Linux's bounce for an untrusted backend: the page holds this frame and zeros only.
    page.fill(0);
    page.set(frame, offset);
    const gref = this.d.guest.grantAccess(this.d.backendDomid, frameNo, true);
    this.grefs[id] = gref;
    const o = this.d.ring.slot(this.d.ring.reqProdPvt, NETIF_TX_SLOT_SIZE);
    this.view.setUint32(o + TxRequest.gref, gref, true);
    this.view.setUint16(o + TxRequest.offset, offset, true);
    this.view.setUint16(o + TxRequest.flags, opts.flags ?? 0, true);
    this.view.setUint16(o + TxRequest.id, id, true);
    this.view.setUint16(o + TxRequest.size, frame.byteLength, true);
    this.d.ring.reqProdPvt = (this.d.ring.reqProdPvt + 1) >>> 0;
    this.d.counters.txPackets++;
    this.d.counters.txBytes += frame.byteLength;
  }

  private push(): void {
    if (this.d.ring.pushRequests()) {
      this.d.counters.txNotifies++;
      this.d.notify();
    } else this.d.counters.txNotifiesSuppressed++;
  }

  /** Moves backlogged frames onto the ring while slots allow; one push for the lot. */
  private flushBacklog(): void {
    let n = 0;
    while (this.backlog.length > 0 && this.slotAvailable() && !this.dead) {
      const b = this.backlog.shift()!;
      this.put(b.frame, b.opts);
      n++;
    }
    if (n > 0) this.push();
  }

  /** xennet_tx_buf_gc: reap responses, end each grant, free ids; true if any response was seen. */
  gc(): boolean {
    const ring = this.d.ring;
    let work = false;
    for (;;) {
      if (this.dead) return work;
      const prod = ring.rspProd();
      if (ring.responseProdOverflow(prod)) {
        this.d.broken(`Illegal number of responses ${(prod - ring.rspCons) >>> 0}`);
        return work;
      }
      for (let cons = ring.rspCons; cons !== prod; cons = (cons + 1) >>> 0) {
        work = true;
        // RING_COPY_RESPONSE: read the slot once, use only the copy.
        const o = ring.slot(cons, NETIF_TX_SLOT_SIZE);
        const id = this.view.getUint16(o + TxResponse.id, true);
        const status = this.view.getInt16(o + TxResponse.status, true);
        if (status === NETIF_RSP_NULL) continue;
        if (id >= NETIF_TX_RING_SIZE) {
          this.d.broken(`Response has incorrect id (${id})`);
          return work;
        }
        if (this.link[id] !== LINK_PENDING) {
          this.d.broken("Response for inactive request");
          return work;
        }
        if (!this.d.guest.endAccess(this.grefs[id]!)) {
          this.d.broken("Grant still in use by backend domain");
          return work;
        }
        this.grefs[id] = -1;
        this.link[id] = this.freeHead;
        this.freeHead = id;
        if (status === NETIF_RSP_OKAY) this.d.counters.txRspOkay++;
        else if (status === NETIF_RSP_DROPPED) this.d.counters.txRspDropped++;
        else if (status === NETIF_RSP_ERROR) this.d.counters.txRspError++;
        else this.d.counters.txRspError++;
        this.d.onResponse?.(id, status);
      }
      ring.rspCons = prod;
      if (!ring.finalCheckForResponses()) break;
    }
    // xennet_maybe_wake_tx: the stopped queue starts again once there is room.
    this.flushBacklog();
    return work;
  }

  /** Requests in flight (granted, not yet answered). */
  inFlight(): number {
    let n = 0;
    for (let i = 0; i < NETIF_TX_RING_SIZE; i++) if (this.grefs[i]! >= 0) n++;
    return n;
  }

  /**
   * xennet_release_tx_bufs: end every grant still held and free the pages. Returns how many grants
   * the backend still had mapped (Linux defers those; we count them as leaked).
   */
  release(): number {
    this.dead = true;
    this.backlog.length = 0;
    let leaked = 0;
    for (let id = 0; id < NETIF_TX_RING_SIZE; id++) {
      const g = this.grefs[id]!;
      const stillMapped = g >= 0 && !this.d.guest.endAccess(g);
      if (stillMapped) leaked++;
      this.grefs[id] = -1;
      const f = this.pages[id]!;
      // A page the backend still maps must not be reused: it stays allocated (leaked with its grant).
      if (f >= 0 && !stillMapped) this.d.guest.freePage(f);
      this.pages[id] = -1;
    }
    return leaked;
  }
}
