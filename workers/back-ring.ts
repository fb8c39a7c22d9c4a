// The backend's end of one shared ring, as every data path (batched and seed, tx and rx) attaches
// to it: views of the page, the private cursors, the req_prod sanity check (XSA-39), req_event and
// the final check, and how responses reach the ring. One place, so a path cannot attach, judge
// req_prod, wait for requests or publish differently from another. The slots' layouts are the
// subclasses' (tx-ring.ts, rx-ring.ts); the data paths (tx.ts, rx.ts and the seed's) extend those
// and keep packet logic only.
//
// Responses are never written straight into the ring: they are built in a staging page laid out
// like the ring (the vif's journal, src/state/vif-journal.ts, when the vif has one) and published
// by publish(): commit in the journal, copy into the ring's slots, rsp_prod, mark published. That
// order is what lets a successor take the ring over after a crash without reading a half-written
// response as a request (the journal's header comment says why that would be dangerous).
import { RING_HEADER_SIZE, RingHeader, needsNotify, requestProdOverflow } from "../src/xen/ring.ts";
import { hex, overflowMessage } from "./ring-checks.ts";

const W_REQ_PROD = RingHeader.reqProd >> 2;
const W_REQ_EVENT = RingHeader.reqEvent >> 2;
const W_RSP_PROD = RingHeader.rspProd >> 2;
const W_RSP_EVENT = RingHeader.rspEvent >> 2;

/** Where a ring's responses are staged and its published/committed indices kept. */
export interface RingJournal {
  /** Header words of the journal page (J_* indices of vif-journal.ts). */
  readonly words: Uint32Array;
  /** Word indices of this ring's published and committed rsp_prod in `words`. */
  readonly published: number;
  readonly committed: number;
  /** The staging page (4096 bytes), same layout as the ring's page. */
  readonly staging: Uint8Array;
  /** Take the ring over from an earlier owner (restart, dead worker); false: a fresh connect. */
  readonly adopt: boolean;
}

/** Test-only: called between copying responses into the ring and publishing them (kill-point tests hold the data path there). */
let holdBeforePublish: (() => void) | null = null;
export function setPublishHold(fn: (() => void) | null): void {
  holdBeforePublish = fn;
}

export abstract class BackRing {
  protected readonly u32: Uint32Array;
  protected readonly u16: Uint16Array;
  protected readonly i16: Int16Array;
  protected readonly u8: Uint8Array;
  /** Response views: the staging page, never the ring. */
  protected readonly s16: Uint16Array;
  protected readonly sI16: Int16Array;
  private readonly s32: Uint32Array;
  private readonly jw: Uint32Array;
  private readonly jPub: number;
  private readonly jCom: number;
  private readonly mask: number;
  /** 32-bit words per response at the start of its slot (tx 1, rx 2), and the slot's size. */
  private readonly rspWords: number;
  private readonly slotBytes: number;
  reqCons: number;
  rspProdPvt: number;
  /** Responses an earlier owner had committed but not published, published again at attach. */
  readonly replayed: number = 0;
  private readonly adoptFault: string | null = null;

  /**
   * BACK_RING_ATTACH: one response per request, so both cursors resume at rsp_prod (after the
   * responses an earlier owner journaled and did not publish, which are published first).
   */
  constructor(page: ArrayBuffer, private readonly dir: "tx" | "rx", private readonly slots: number, slotBytes: number, rspBytes: number, journal?: RingJournal | null) {
    this.u32 = new Uint32Array(page, 0, 1024);
    this.u16 = new Uint16Array(page, 0, 2048);
    this.i16 = new Int16Array(page, 0, 2048);
    this.u8 = new Uint8Array(page, 0, 4096);
    const st = journal?.staging ?? new Uint8Array(4096);
    this.s16 = new Uint16Array(st.buffer, st.byteOffset, 2048);
    this.sI16 = new Int16Array(st.buffer, st.byteOffset, 2048);
    this.s32 = new Uint32Array(st.buffer, st.byteOffset, 1024);
    this.jw = journal?.words ?? new Uint32Array(2);
    this.jPub = journal?.published ?? 0;
    this.jCom = journal?.committed ?? 1;
    this.mask = slots - 1;
    this.slotBytes = slotBytes;
    this.rspWords = rspBytes >> 2;
    const shared = Atomics.load(this.u32, W_RSP_PROD) >>> 0;
    let start = shared;
    if (journal?.adopt) {
      const pub = this.jw[this.jPub] >>> 0;
      const com = this.jw[this.jCom] >>> 0;
      if (com === shared) start = shared;
      else if (pub === shared && ((com - pub) >>> 0) <= slots) {
        // Died between commit and publish: the staged responses are whole; publish them now.
        this.copyOut(pub, com);
        Atomics.store(this.u32, W_RSP_PROD, com | 0);
        start = com;
        this.replayed = (com - pub) >>> 0;
      } else {
        this.adoptFault = `${dir} ring's rsp_prod 0x${hex(shared)} matches neither the journal's published 0x${hex(pub)} nor its committed 0x${hex(com)}`;
      }
    }
    Atomics.store(this.jw, this.jPub, start | 0);
    Atomics.store(this.jw, this.jCom, start | 0);
    this.rspProdPvt = start;
    this.reqCons = start;
  }

  /** req_prod, read once (seq-cst: the slots it covers are read after it). */
  protected reqProd(): number {
    return Atomics.load(this.u32, W_REQ_PROD) >>> 0;
  }

  /** Why `prod` breaks the protocol (more than a ring ahead of the responses), or null; builds a string only on a fault. */
  private overflow(prod: number): string | null {
    return requestProdOverflow(prod, this.rspProdPvt, this.slots) ? overflowMessage(this.dir, prod, this.rspProdPvt) : null;
  }

  /** Connect-time check, as netback's xenvif_map_frontend_data_rings: null when the ring is sane (and the journal agreed with it). */
  attachError(): string | null {
    return this.adoptFault ?? this.overflow(this.reqProd());
  }

  /** req_prod read once for a pass, or -1 with `into.fault` set when it is more than a ring ahead (XSA-39). */
  protected checkedReqProd(into: { fault: string | null }): number {
    const prod = this.reqProd();
    const bad = this.overflow(prod);
    if (bad === null) return prod;
    into.fault = bad;
    return -1;
  }

  /** Requests posted and not yet taken, or -1 with `into.fault` set when req_prod is more than a ring ahead. */
  protected available(into: { fault: string | null }): number {
    const prod = this.checkedReqProd(into);
    return prod < 0 ? -1 : (prod - this.reqCons) >>> 0;
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS, after the ports were unmasked: ask for an event at the next
   * request (req_event), then look again, so a request posted meanwhile never goes without a
   * wake-up. True when requests are waiting.
   */
  finalCheck(): boolean {
    if (this.reqProd() !== this.reqCons) return true;
    this.askForNextRequest();
    return this.reqProd() !== this.reqCons;
  }

  /**
   * The same check for a path that waits for requests with work in hand (rx frames queued, the
   * carrier off): requests available, or -1 with `into.fault` set when req_prod is more than a ring
   * ahead (XSA-39).
   */
  protected finalCheckAvailable(into: { fault: string | null }): number {
    const n = this.available(into);
    if (n !== 0) return n;
    this.askForNextRequest();
    return this.available(into);
  }

  /** req_event = req_cons + 1: the frontend notifies when it posts the next request. The seq-cst store is the mb() the ring macro puts before the second look. */
  private askForNextRequest(): void {
    Atomics.store(this.u32, W_REQ_EVENT, (this.reqCons + 1) | 0);
  }

  /**
   * RING_PUSH_RESPONSES_AND_CHECK_NOTIFY for the responses staged since `from` (up to rspProdPvt),
   * in the journal's order: commit, copy into the ring, rsp_prod, published. Returns whether the
   * frontend asked to be notified. The seq-cst stores order the slot writes before rsp_prod and the
   * rsp_event read after it.
   */
  protected publish(from: number): boolean {
    const to = this.rspProdPvt;
    Atomics.store(this.jw, this.jCom, to | 0);
    this.copyOut(from, to);
    if (holdBeforePublish !== null) holdBeforePublish();
    Atomics.store(this.u32, W_RSP_PROD, to | 0);
    Atomics.store(this.jw, this.jPub, to | 0);
    return needsNotify(to, from, Atomics.load(this.u32, W_RSP_EVENT) >>> 0);
  }

  /** Copies the staged responses of slots [from, to) into the ring (only the response's own words). */
  private copyOut(from: number, to: number): void {
    const ring = this.u32;
    const st = this.s32;
    const mask = this.mask;
    const sb = this.slotBytes;
    if (this.rspWords === 1) {
      for (let i = from; i !== to; i = (i + 1) >>> 0) {
        const w = (RING_HEADER_SIZE + (i & mask) * sb) >> 2;
        ring[w] = st[w];
      }
    } else {
      for (let i = from; i !== to; i = (i + 1) >>> 0) {
        const w = (RING_HEADER_SIZE + (i & mask) * sb) >> 2;
        ring[w] = st[w];
        ring[w + 1] = st[w + 1];
      }
    }
  }
}
