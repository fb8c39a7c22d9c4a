// The receive side of one queue, after xennet_alloc_rx_buffers and xennet_poll: the ring is kept
// full of requests, each one page of guest RAM granted writable to the backend; responses are
// consumed in ring order (Linux ignores the response id: a response belongs to the request in the
// same slot), with multi-slot packets (NETRXF_more_data) and extra-info slots (GSO) handled the
// way Linux does, including the way it drops malformed ones and re-posts their buffers.
import type { GuestDomain } from "../hypervisor/index.ts";
import { PAGE_SIZE } from "../../xen/ring.ts";
import {
  ExtraInfo,
  NETIF_RX_RING_SIZE,
  NETIF_RX_SLOT_SIZE,
  NETRXF_extra_info,
  NETRXF_more_data,
  RxRequest,
  RxResponse,
  XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_HASH,
  XEN_NETIF_EXTRA_TYPE_MAX,
  XEN_NETIF_GSO_TYPE_TCPV4,
  XEN_NETIF_GSO_TYPE_TCPV6,
  XEN_NETIF_NR_SLOTS_MIN,
} from "../../xen/netif.ts";
import type { NetfrontCounters } from "./counters.ts";
import type { FrontRing } from "./front-ring.ts";

/** NET_RX_SLOTS_MIN: requests must cover the biggest packet plus its GSO slot before we push. */
const NET_RX_SLOTS_MIN = XEN_NETIF_NR_SLOTS_MIN + 1;
/** RX_COPY_THRESHOLD: a small first slot allows one more slot (Linux's `max` in get_responses). */
const RX_COPY_THRESHOLD = 256;
const ETH_HLEN = 14;

export interface RxMeta {
  /** NETRXF_* flags of the first slot (csum_blank, data_validated, ...). */
  flags: number;
  /** Slots the packet used (data slots, not extras). */
  slots: number;
  gso?: { size: number; type: number };
  /** A hash extra (XEN_NETIF_EXTRA_TYPE_HASH): the backend's hash of the packet (netfront ignores it; Windows uses it for RSS). */
  hash?: { type: number; alg: number; value: number };
  /** The queue whose rx ring delivered it (0 on a single-queue vif). */
  queue: number;
}

export interface RxQueueDeps {
  guest: GuestDomain;
  backendDomid: number;
  ring: FrontRing;
  counters: NetfrontCounters;
  /** This queue's number (RxMeta.queue). */
  queue: number;
  notify(): void;
  broken(why: string): void;
  warn(what: string): void;
  deliver(frame: Uint8Array, meta: RxMeta): void;
}

interface RxRsp {
  offset: number;
  flags: number;
  status: number;
}

export class RxQueue {
  /** The page and gref posted in each slot (by slot index = request id), -1 when empty. */
  private readonly bufFrame = new Int32Array(NETIF_RX_RING_SIZE).fill(-1);
  private readonly bufGref = new Int32Array(NETIF_RX_RING_SIZE).fill(-1);
  /** Pages that came back from the backend, ready to post again (Linux's page_pool). */
  private readonly pool: number[] = [];
  private readonly view: DataView;
  private dead = false;

  constructor(private readonly d: RxQueueDeps) {
    this.view = new DataView(d.ring.page.buffer, d.ring.page.byteOffset, PAGE_SIZE);
  }

  /** Requests posted whose responses have not been consumed. */
  posted(): number {
    return this.d.ring.outstanding();
  }

  private writeRequest(idx: number, gref: number): void {
    const ring = this.d.ring;
    const o = ring.slot(ring.reqProdPvt, NETIF_RX_SLOT_SIZE);
    this.view.setUint16(o + RxRequest.id, idx, true);
    this.view.setUint16(o + 2, 0, true);
    this.view.setUint32(o + RxRequest.gref, gref, true);
    ring.reqProdPvt = (ring.reqProdPvt + 1) >>> 0;
  }

  /** xennet_alloc_rx_buffers: post a granted page in every free slot, push, notify if asked. */
  fill(): void {
    if (this.dead) return;
    const ring = this.d.ring;
    while (ring.outstanding() < NETIF_RX_RING_SIZE) {
      const idx = ring.reqProdPvt & (NETIF_RX_RING_SIZE - 1);
      if (this.bufFrame[idx]! >= 0) throw new Error(`rx slot ${idx} already holds a buffer`); // Linux: BUG_ON
      const frame = this.pool.pop() ?? this.d.guest.allocPage();
      const gref = this.d.guest.grantAccess(this.d.backendDomid, frame, false);
      this.bufFrame[idx] = frame;
      this.bufGref[idx] = gref;
      this.writeRequest(idx, gref);
    }
    // Linux waits (a 100 ms refill timer) rather than push fewer than NET_RX_SLOTS_MIN requests;
    // pages never run out here, so this only mirrors the rule.
    if (ring.outstanding() < NET_RX_SLOTS_MIN) return;
    if (ring.pushRequests()) {
      this.d.counters.rxNotifies++;
      this.d.notify();
    } else this.d.counters.rxNotifiesSuppressed++;
  }

  private take(i: number): { frame: number; gref: number } {
    const idx = i & (NETIF_RX_RING_SIZE - 1);
    const b = { frame: this.bufFrame[idx]!, gref: this.bufGref[idx]! };
    this.bufFrame[idx] = -1;
    this.bufGref[idx] = -1;
    return b;
  }

  /** xennet_move_rx_slot: re-post a buffer, grant unchanged, at the producer. */
  private moveSlot(b: { frame: number; gref: number }): void {
    const idx = this.d.ring.reqProdPvt & (NETIF_RX_RING_SIZE - 1);
    this.bufFrame[idx] = b.frame;
    this.bufGref[idx] = b.gref;
    this.writeRequest(idx, b.gref);
  }

  private readRsp(i: number): RxRsp {
    const o = this.d.ring.slot(i, NETIF_RX_SLOT_SIZE);
    return {
      offset: this.view.getUint16(o + RxResponse.offset, true),
      flags: this.view.getUint16(o + RxResponse.flags, true),
      status: this.view.getInt16(o + RxResponse.status, true),
    };
  }

  /** Responses published and not consumed when we last looked (Linux: rx_rsp_unconsumed). */
  private unconsumed = 0;

  /**
   * xennet_handle_rx's sanity check at each rx event: the count of unconsumed responses may only
   * grow between our polls; a shrinking one means the backend moved rsp_prod backwards. False
   * (and the device broken) then.
   */
  checkProducer(): boolean {
    const ring = this.d.ring;
    const queued = (ring.rspProd() - ring.rspCons) >>> 0;
    if (queued < this.unconsumed) {
      this.d.broken("RX producer index going backwards");
      return false;
    }
    this.unconsumed = queued;
    return true;
  }

  /**
   * xennet_poll: consume up to `budget` packets, then refill; returns true when more responses are
   * waiting (budget used up, or RING_FINAL_CHECK_FOR_RESPONSES found late ones): poll again.
   */
  poll(budget: number): boolean {
    if (this.dead) return false;
    const ring = this.d.ring;
    const rp = ring.rspProd();
    if (ring.responseProdOverflow(rp)) {
      this.d.broken(`Illegal number of responses ${(rp - ring.rspCons) >>> 0}`);
      return false;
    }
    let work = 0;
    while (ring.rspCons !== rp && work < budget) {
      if (!this.one(rp)) {
        if (this.dead) return false;
        this.d.counters.rxErrors++;
        continue;
      }
      work++;
    }
    // xennet_set_rx_rsp_cons: what is left unconsumed now.
    this.unconsumed = (rp - ring.rspCons) >>> 0;
    this.fill();
    if (work < budget) return ring.finalCheckForResponses();
    return true;
  }

  /** One packet starting at rsp_cons (xennet_get_responses + fill_frags). False if it was dropped. */
  private one(rp: number): boolean {
    const ring = this.d.ring;
    let cons = ring.rspCons;
    const first = this.readRsp(cons);
    let buf = this.take(cons);
    let err: string | undefined;
    let gso: RxMeta["gso"];
    let hash: RxMeta["hash"];

    if (first.flags & NETRXF_extra_info) {
      // xennet_get_extras: each extra slot's buffer goes straight back to the ring.
      let more: boolean;
      do {
        if (((cons + 1) >>> 0) === rp) {
          err = "Missing extra info";
          this.d.warn(err);
          break;
        }
        cons = (cons + 1) >>> 0;
        const o = ring.slot(cons, NETIF_RX_SLOT_SIZE);
        const type = this.view.getUint8(o + ExtraInfo.type);
        const flags = this.view.getUint8(o + ExtraInfo.flags);
        if (type === 0 || type >= XEN_NETIF_EXTRA_TYPE_MAX) {
          err = `Invalid extra type: ${type}`;
          this.d.warn(err);
        } else if (type === XEN_NETIF_EXTRA_TYPE_GSO) gso = { size: this.view.getUint16(o + ExtraInfo.gsoSize, true), type: this.view.getUint8(o + ExtraInfo.gsoType) };
        else if (type === XEN_NETIF_EXTRA_TYPE_HASH) hash = { type: this.view.getUint8(o + ExtraInfo.hashType), alg: this.view.getUint8(o + ExtraInfo.hashAlg), value: this.view.getUint32(o + ExtraInfo.hashValue, true) };
        const b = this.take(cons);
        if (b.gref >= 0) this.moveSlot(b);
        more = (flags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
      } while (more);
      ring.rspCons = cons;
    }

    const max = XEN_NETIF_NR_SLOTS_MIN + (first.status <= RX_COPY_THRESHOLD ? 1 : 0);
    const parts: Uint8Array[] = [];
    let rx = first;
    let slots = 1;
    for (;;) {
      if (buf.gref < 0) {
        // A response in a slot we never posted a buffer for (Linux: INVALID_GRANT_REF).
        this.d.warn("Bad rx response id");
        err ??= "Bad rx response id";
      } else if (rx.status < 0 || rx.offset + rx.status > PAGE_SIZE) {
        this.d.warn(`rx->offset: ${rx.offset}, size: ${rx.status}`);
        this.moveSlot(buf);
        err ??= "bad rx response";
      } else {
        if (!this.d.guest.endAccess(buf.gref)) {
          this.d.broken("Grant still in use by backend domain");
          return false;
        }
        // Copy the bytes out once; the page goes back to the pool for the next post.
        parts.push(this.d.guest.pageView(buf.frame).slice(rx.offset, rx.offset + rx.status));
        this.pool.push(buf.frame);
      }
      if (!(rx.flags & NETRXF_more_data)) break;
      if (((cons + slots) >>> 0) === rp) {
        this.d.warn("Need more slots");
        err ??= "Need more slots";
        break;
      }
      const i = (cons + slots) >>> 0;
      rx = this.readRsp(i);
      buf = this.take(i);
      slots++;
    }
    if (slots > max) {
      this.d.warn("Too many slots");
      err ??= "Too many slots";
    }
    if (!err && gso && (gso.size === 0 || (gso.type !== XEN_NETIF_GSO_TYPE_TCPV4 && gso.type !== XEN_NETIF_GSO_TYPE_TCPV6))) {
      err = gso.size === 0 ? "GSO size must not be zero" : `Bad GSO type ${gso.type}`;
      this.d.warn(err);
    }
    ring.rspCons = (cons + slots) >>> 0;
    if (err) return false;

    let len = 0;
    for (const p of parts) len += p.byteLength;
    // Our choice, not Linux's: a frame shorter than an Ethernet header is counted as an error.
    if (len < ETH_HLEN) {
      this.d.warn(`runt frame of ${len} bytes`);
      return false;
    }
    const frame = parts.length === 1 ? parts[0]! : concat(parts, len);
    this.d.counters.rxPackets++;
    this.d.counters.rxBytes += len;
    this.d.deliver(frame, { flags: first.flags, slots, gso, hash, queue: this.d.queue });
    return true;
  }

  /** xennet_release_rx_bufs: end every posted grant, free the pages; returns grants still mapped. */
  release(): number {
    this.dead = true;
    let leaked = 0;
    for (let idx = 0; idx < NETIF_RX_RING_SIZE; idx++) {
      const g = this.bufGref[idx]!;
      const f = this.bufFrame[idx]!;
      const stillMapped = g >= 0 && !this.d.guest.endAccess(g);
      if (stillMapped) leaked++;
      if (f >= 0 && !stillMapped) this.d.guest.freePage(f);
      this.bufGref[idx] = -1;
      this.bufFrame[idx] = -1;
    }
    for (const f of this.pool.splice(0)) this.d.guest.freePage(f);
    return leaked;
  }
}

function concat(parts: Uint8Array[], len: number): Uint8Array {
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
