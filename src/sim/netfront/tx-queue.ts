// The transmit side of one queue, after xennet_start_xmit and xennet_tx_buf_gc: a frame goes out in
// one ring slot, or, where the backend offered feature-sg, in several (the first slot's size is the
// whole packet's, NETTXF_more_data on every slot but the last), with a GSO extra-info slot after
// the first where it offered feature-gso-tcpv4/-tcpv6. Each slot's bytes are copied into a page of
// guest RAM granted read-only to the backend for the life of the request, ids come from a free
// list (one per data slot; the extra slot has none), and completion is driven by tx responses. Like Linux, a frame waits (here: in a bounded backlog, the qdisc's job)
// while fewer than XEN_NETIF_NR_SLOTS_MIN + 1 slots are free.
import type { GuestDomain } from "../hypervisor/index.ts";
import { PAGE_SIZE } from "../../xen/ring.ts";
import {
  NETIF_RSP_DROPPED,
  NETIF_RSP_ERROR,
  NETIF_RSP_NULL,
  NETIF_RSP_OKAY,
  NETIF_TX_RING_SIZE,
  NETIF_TX_SLOT_SIZE,
  NETTXF_csum_blank,
  NETTXF_data_validated,
  NETTXF_extra_info,
  NETTXF_more_data,
  TxRequest,
  TxResponse,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
  XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
  XEN_NETIF_GSO_TYPE_TCPV4,
  XEN_NETIF_GSO_TYPE_TCPV6,
  XEN_NETIF_MAX_TX_SIZE,
  XEN_NETIF_NR_SLOTS_MIN,
} from "../../xen/netif.ts";
import type { NetfrontCounters } from "./counters.ts";
import type { FrontRing } from "./front-ring.ts";

/** grefs[id] of a multicast-control request: it granted nothing. */
const NO_GRANT = -2;

/** Linux's TX_LINK_NONE / TX_PENDING markers in tx_link[]. */
const LINK_NONE = 0xffff;
const LINK_PENDING = 0xfffe;

export interface TxFrameOptions {
  /** NETTXF_* flags for the slot (e.g. csum_blank | data_validated for a locally built TCP frame). */
  flags?: number;
  /** Offset of the frame in its page (Linux: wherever skb->data sits); clamped so the frame fits. */
  offset?: number;
  /**
   * Bytes per slot (feature-sg): the frame split this way, the first chunk at `offset`, the rest at
   * offset 0 of their own pages. Default: the first slot up to the end of its page, then whole pages.
   */
  slots?: number[];
  /** Send as a TCP GSO packet of segments of `size` payload bytes (feature-gso-*): csum_blank is implied, as a GSO skb is CHECKSUM_PARTIAL. */
  gso?: { size: number; type: typeof XEN_NETIF_GSO_TYPE_TCPV4 | typeof XEN_NETIF_GSO_TYPE_TCPV6 };
}

/** What the backend offered for tx (B/feature-sg, B/feature-gso-tcpv4, B/feature-gso-tcpv6). */
export interface TxOffloads {
  sg: boolean;
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
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
  /** Default: none offered (one slot per frame, no GSO). */
  offloads?: TxOffloads;
}

export class TxQueue {
  private readonly link = new Uint16Array(NETIF_TX_RING_SIZE);
  private freeHead = 0;
  /** gref of the request using each id, -1 when free, NO_GRANT for a multicast-control request. */
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

  /**
   * The slot sizes a frame goes out in. Throws for what Linux would never send: more than one slot
   * without feature-sg, GSO the backend did not offer, a frame over XEN_NETIF_MAX_TX_SIZE or over
   * XEN_NETIF_NR_SLOTS_MIN slots, chunks that do not add up or do not fit their page.
   */
  private layout(frame: Uint8Array, opts: TxFrameOptions): { chunks: number[]; first: number } {
    const len = frame.byteLength;
    const o = this.d.offloads ?? { sg: false, gsoTcpv4: false, gsoTcpv6: false };
    if (len > XEN_NETIF_MAX_TX_SIZE) throw new RangeError(`frame of ${len} bytes: over the wire format's ${XEN_NETIF_MAX_TX_SIZE}`);
    if (opts.gso) {
      const offered = opts.gso.type === XEN_NETIF_GSO_TYPE_TCPV4 ? o.gsoTcpv4 : opts.gso.type === XEN_NETIF_GSO_TYPE_TCPV6 ? o.gsoTcpv6 : false;
      if (!offered) throw new RangeError(`GSO type ${opts.gso.type}: the backend did not offer it`);
      if (!(opts.gso.size > 0 && opts.gso.size <= 0xffff)) throw new RangeError(`GSO size ${opts.gso.size}: must be 1..65535`);
    }
    const off = Math.max(0, opts.offset ?? 0);
    let chunks = opts.slots;
    if (!chunks) {
      // One slot when the frame fits a page (its offset clamped so it does); else the head runs to
      // the end of its page (Linux bounces a head with less than ETH_HLEN left: keep 64) and whole pages follow.
      const start = len <= PAGE_SIZE ? Math.min(off, PAGE_SIZE - len) : Math.min(off, PAGE_SIZE - 64);
      chunks = [Math.min(len, PAGE_SIZE - start)];
      for (let at = chunks[0]!; at < len; at += PAGE_SIZE) chunks.push(Math.min(PAGE_SIZE, len - at));
    }
    const first = Math.min(off, PAGE_SIZE - (chunks[0] ?? 0));
    if (chunks.reduce((a, b) => a + b, 0) !== len) throw new RangeError(`slots ${chunks.join("+")} do not add up to the frame's ${len} bytes`);
    if (chunks.some((c, i) => c < 0 || c > PAGE_SIZE - (i === 0 ? first : 0))) throw new RangeError(`slots ${chunks.join("+")}: a chunk does not fit its page`);
    if (chunks.length > 1 && !o.sg) throw new RangeError(`frame of ${len} bytes in ${chunks.length} slots: the backend did not offer feature-sg (one slot per frame, at most ${PAGE_SIZE} bytes)`);
    if (chunks.length > XEN_NETIF_NR_SLOTS_MIN) throw new RangeError(`frame in ${chunks.length} slots: Linux never sends more than ${XEN_NETIF_NR_SLOTS_MIN}`);
    return { chunks, first };
  }

  /** Queues or sends one frame; false if it was dropped (backlog full, or the queue is dead). */
  send(frame: Uint8Array, opts: TxFrameOptions = {}): boolean {
    this.layout(frame, opts); // refuse what cannot be sent before it is queued
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

  /**
   * A multicast-control request the way the Windows PV drivers send one (win-xenvif transmitter.c):
   * a first slot with no data (gref 0, offset 0, size 0, NETTXF_extra_info) and one MCAST_ADD or
   * MCAST_DEL extra carrying the group's MAC. Linux netfront never sends these. Returns the
   * request's id (its response comes through onResponse), or -1 when the ring has no room now.
   */
  multicastRequest(op: "add" | "del", mac: Uint8Array): number {
    if (mac.byteLength !== 6) throw new RangeError(`multicast group: ${mac.byteLength} bytes, not a MAC`);
    if (this.dead || this.backlog.length > 0 || !this.slotAvailable()) return -1;
    const id = this.freeHead;
    this.freeHead = this.link[id]!;
    this.link[id] = LINK_PENDING;
    this.grefs[id] = NO_GRANT;
    let o = this.d.ring.slot(this.d.ring.reqProdPvt, NETIF_TX_SLOT_SIZE);
    this.view.setUint32(o + TxRequest.gref, 0, true);
    this.view.setUint16(o + TxRequest.offset, 0, true);
    this.view.setUint16(o + TxRequest.flags, NETTXF_extra_info, true);
    this.view.setUint16(o + TxRequest.id, id, true);
    this.view.setUint16(o + TxRequest.size, 0, true);
    this.d.ring.reqProdPvt = (this.d.ring.reqProdPvt + 1) >>> 0;
    o = this.d.ring.slot(this.d.ring.reqProdPvt, NETIF_TX_SLOT_SIZE);
    new Uint8Array(this.view.buffer, this.view.byteOffset + o, NETIF_TX_SLOT_SIZE).fill(0);
    this.view.setUint8(o, op === "add" ? XEN_NETIF_EXTRA_TYPE_MCAST_ADD : XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
    for (let k = 0; k < 6; k++) this.view.setUint8(o + 2 + k, mac[k]!);
    this.d.ring.reqProdPvt = (this.d.ring.reqProdPvt + 1) >>> 0;
    this.push();
    this.gc();
    return id;
  }

  /** Writes one packet's requests (not yet pushed): first slot, GSO extra, fragment slots. */
  private put(frame: Uint8Array, opts: TxFrameOptions): void {
    const { chunks, first } = this.layout(frame, opts);
    let flags = opts.flags ?? 0;
    // A GSO skb is CHECKSUM_PARTIAL: xennet_start_xmit marks it so.
    if (opts.gso) flags |= NETTXF_csum_blank | NETTXF_data_validated | NETTXF_extra_info;
    let at = 0;
    for (let k = 0; k < chunks.length; k++) {
      const last = k === chunks.length - 1;
      const f = k === 0 ? flags : 0;
      // The first slot's size is the whole packet's; later slots carry their own chunk.
      this.slot(frame.subarray(at, at + chunks[k]!), k === 0 ? first : 0, (f & ~NETTXF_more_data) | (last ? 0 : NETTXF_more_data), k === 0 ? frame.byteLength : chunks[k]!);
      at += chunks[k]!;
      if (k === 0 && opts.gso) this.gsoExtra(opts.gso.size, opts.gso.type);
    }
    this.d.counters.txPackets++;
    this.d.counters.txBytes += frame.byteLength;
  }

  /** One data slot: its bytes in a page of their own, granted read-only. */
  private slot(bytes: Uint8Array, offset: number, flags: number, size: number): void {
    const id = this.freeHead;
    this.freeHead = this.link[id]!;
    this.link[id] = LINK_PENDING;
    let frameNo = this.pages[id]!;
    if (frameNo < 0) this.pages[id] = frameNo = this.d.guest.allocPage();
    const page = this.d.guest.pageView(frameNo);
    // Like Linux's bounce for an untrusted backend: the page holds this chunk and zeros only.
    page.fill(0);
    page.set(bytes, offset);
    const gref = this.d.guest.grantAccess(this.d.backendDomid, frameNo, true);
    this.grefs[id] = gref;
    const o = this.d.ring.slot(this.d.ring.reqProdPvt, NETIF_TX_SLOT_SIZE);
    this.view.setUint32(o + TxRequest.gref, gref, true);
    this.view.setUint16(o + TxRequest.offset, offset, true);
    this.view.setUint16(o + TxRequest.flags, flags, true);
    this.view.setUint16(o + TxRequest.id, id, true);
    this.view.setUint16(o + TxRequest.size, size, true);
    this.d.ring.reqProdPvt = (this.d.ring.reqProdPvt + 1) >>> 0;
  }

  /** The GSO extra-info slot (struct netif_extra_info: type, flags, gso.size, gso.type, pad, features). */
  private gsoExtra(size: number, type: number): void {
    const o = this.d.ring.slot(this.d.ring.reqProdPvt, NETIF_TX_SLOT_SIZE);
    this.view.setUint8(o, XEN_NETIF_EXTRA_TYPE_GSO);
    this.view.setUint8(o + 1, 0);
    this.view.setUint16(o + 2, size, true);
    this.view.setUint8(o + 4, type);
    this.view.setUint8(o + 5, 0);
    this.view.setUint16(o + 6, 0, true);
    this.view.setUint32(o + 8, 0, true);
    this.d.ring.reqProdPvt = (this.d.ring.reqProdPvt + 1) >>> 0;
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
        if (this.grefs[id] !== NO_GRANT && !this.d.guest.endAccess(this.grefs[id]!)) {
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
    for (let i = 0; i < NETIF_TX_RING_SIZE; i++) if (this.grefs[i]! !== -1) n++;
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
