// The backend's end of a vif's control ring (xen_netif_ctrl_sring, xen/include/public/io/netif.h),
// served by the worker that serves the vif's data rings: low-rate traffic (a frontend configuring
// its hash: a handful of requests at connect), woken by its own event channel.
//
// Per pass, as Linux netback's xenvif_ctrl_action / process_ctrl_request: every request is copied
// out of the ring once (XSA-155) and answered in order, one response per request, pushed once, at
// most one notify. Netback does not check req_prod on this ring (it loops until req_cons catches
// up); qnicd does, as on the data rings: a req_prod more than a ring ahead of the responses is a
// protocol violation that disables the vif (XSA-39's rule; XSA-270's class: control-ring requests
// bounded against the page and the local tables).
//
// The grant copies of a pass (SET_HASH_KEY's key, SET_HASH_MAPPING's entries) go to the grant
// device in ONE batched call: the pass first plans them (each bounded as netback bounds it before
// copying, against the table size earlier requests of the pass leave), then copies, then applies
// the requests in order to the vif's hash state (vif-hash.ts). A request that fails netback's checks
// copies nothing.
//
// Responses are written into the ring in place (no journal staging as the data rings have): the
// data word before the status word. A successor taking the ring over after a crash may read a
// half-written response as a request of the same type, whose data[0] is then a status (0-3) and
// data[1] the response's data, which is 0 for every type that copies from a grant: the misread
// request names no grant. (The hash state itself does not survive a restart: vif-hash.ts.)
import type { Pointer } from "bun:ffi";
import { toArrayBuffer } from "bun:ffi";
import { peerio } from "../src/net/peerio-lib.ts";
import { GrantCopyBatch } from "../src/platform/grant-copy-batch.ts";
import type { GrantDevice } from "../src/platform/types.ts";
import {
  CtrlRequest,
  CtrlResponse,
  NETIF_CTRL_RING_SIZE,
  NETIF_CTRL_SLOT_SIZE,
  XEN_NETBK_MAX_HASH_KEY_SIZE,
  XEN_NETBK_MAX_HASH_MAPPING_SIZE,
  XEN_NETIF_CTRL_HASH_TYPES_ALL,
  XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER,
  XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED,
  XEN_NETIF_CTRL_STATUS_SUCCESS,
  XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS,
  XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE,
  XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM,
  XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS,
  XEN_NETIF_CTRL_TYPE_SET_HASH_KEY,
  XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING,
  XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE,
} from "../src/xen/ctrl-netif.ts";
import { needsNotify, RING_HEADER_SIZE, RingHeader, requestProdOverflow } from "../src/xen/ring.ts";
import { hex } from "./ring-checks.ts";
import { mappingBoundsOk, VifHash } from "./vif-hash.ts";

const SIZE = NETIF_CTRL_RING_SIZE;
const W_REQ_PROD = RingHeader.reqProd >> 2;
const W_REQ_EVENT = RingHeader.reqEvent >> 2;
const W_RSP_PROD = RingHeader.rspProd >> 2;
const W_RSP_EVENT = RingHeader.rspEvent >> 2;
/** Grant copies per pass; requests past the one that would need more wait for the next pass. */
export const CTRL_COPIES_PER_PASS = 16;
/** The most one request copies: a whole mapping table of u32 entries (a longer one fails its bounds first). */
const COPY_BYTES = XEN_NETBK_MAX_HASH_MAPPING_SIZE * 4;
const NO_COPY = -1;

export interface CtrlPass {
  /** Requests answered this pass. */
  answered: number;
  /** The frontend asked to be notified of these responses. */
  notify: boolean;
  /** Requests are waiting (posted meanwhile, or left for the copy budget): serve again. */
  more: boolean;
  /** The frontend broke the protocol: the vif must be disabled. */
  fault: string | null;
}

/** The one fault line of the control ring. */
export function ctrlOverflowMessage(prod: number, rspProdPvt: number): string {
  return `ctrl req_prod 0x${hex(prod)} is more than a ring ahead of 0x${hex(rspProdPvt)}`;
}

export class CtrlRing {
  private readonly u32: Uint32Array;
  private readonly u16: Uint16Array;
  reqCons: number;
  rspProdPvt: number;
  private readonly pass: CtrlPass = { answered: 0, notify: false, more: false, fault: null };
  // The pass's requests, copied out of the ring (each field read once).
  private readonly id = new Uint16Array(SIZE);
  private readonly type = new Uint16Array(SIZE);
  private readonly d0 = new Uint32Array(SIZE);
  private readonly d1 = new Uint32Array(SIZE);
  private readonly d2 = new Uint32Array(SIZE);
  /** Per request of the pass: its grant copy's index, or NO_COPY. */
  private readonly copyOf = new Int32Array(SIZE);
  private readonly segs: GrantCopyBatch;
  /** Native memory the copies land in (COPY_BYTES each), read through a view of that memory (BUN-FACTS pitfall 1). */
  private readonly dataAddr: number;
  private readonly data: Uint8Array;
  private readonly dataWords: Uint32Array;
  private closed = false;

  /**
   * Attaches at the ring's rsp_prod (BACK_RING_INIT on a fresh ring, where the frontend's
   * SHARED_RING_INIT left 0; where an earlier owner stopped, on a take-over).
   */
  constructor(page: ArrayBuffer, private readonly domid: number, readonly hash: VifHash) {
    this.u32 = new Uint32Array(page, 0, 1024);
    this.u16 = new Uint16Array(page, 0, 2048);
    const start = Atomics.load(this.u32, W_RSP_PROD) >>> 0;
    this.reqCons = this.rspProdPvt = start;
    this.segs = new GrantCopyBatch(CTRL_COPIES_PER_PASS);
    const bytes = CTRL_COPIES_PER_PASS * COPY_BYTES;
    const a = peerio().pio_alloc(bytes) as number | null;
    if (!a) {
      this.segs.free();
      throw new Error(`control ring: allocating ${bytes} bytes of native memory failed`);
    }
    this.dataAddr = a;
    const buf = toArrayBuffer(a, 0, bytes);
    this.data = new Uint8Array(buf);
    this.dataWords = new Uint32Array(buf);
  }

  /** Native allocations (for the worker's device registry: a dead worker's are released). */
  allocations(): number[] {
    return [this.segs.addr, this.dataAddr];
  }

  /** Connect-time check, as for the data rings: null when req_prod is within a ring of rsp_prod. */
  attachError(): string | null {
    const prod = Atomics.load(this.u32, W_REQ_PROD) >>> 0;
    return requestProdOverflow(prod, this.rspProdPvt, SIZE) ? ctrlOverflowMessage(prod, this.rspProdPvt) : null;
  }

  /** Answers every request posted (up to the copy budget), then asks for an event at the next one. */
  service(gnt: GrantDevice): CtrlPass {
    const pass = this.pass;
    pass.answered = 0;
    pass.notify = pass.more = false;
    pass.fault = null;
    const prod = Atomics.load(this.u32, W_REQ_PROD) >>> 0;
    if (requestProdOverflow(prod, this.rspProdPvt, SIZE)) {
      pass.fault = ctrlOverflowMessage(prod, this.rspProdPvt);
      return pass;
    }
    // 1. Copy the requests out and plan their grant copies.
    let n = 0;
    let ncopy = 0;
    let size = this.hash.size; // the table size as the requests before this one leave it
    const segs = this.segs;
    for (let cons = this.reqCons; cons !== prod; cons = (cons + 1) >>> 0, n++) {
      const w = (RING_HEADER_SIZE + (cons & (SIZE - 1)) * NETIF_CTRL_SLOT_SIZE) >> 2;
      const type = this.u16[(w << 1) + (CtrlRequest.type >> 1)];
      const d0 = this.u32[w + (CtrlRequest.data0 >> 2)] >>> 0;
      const d1 = this.u32[w + (CtrlRequest.data1 >> 2)] >>> 0;
      let bytes = 0;
      if (type === XEN_NETIF_CTRL_TYPE_SET_HASH_KEY && d1 <= XEN_NETBK_MAX_HASH_KEY_SIZE) bytes = d1;
      else if (type === XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING && mappingBoundsOk(size, d1, this.u32[w + (CtrlRequest.data2 >> 2)] >>> 0)) bytes = d1 * 4;
      if (bytes > 0 && ncopy === CTRL_COPIES_PER_PASS) {
        pass.more = true; // this one and the rest: next pass
        break;
      }
      this.id[n] = this.u16[(w << 1) + (CtrlRequest.id >> 1)];
      this.type[n] = type;
      this.d0[n] = d0;
      this.d1[n] = d1;
      this.d2[n] = this.u32[w + (CtrlRequest.data2 >> 2)] >>> 0;
      this.copyOf[n] = NO_COPY;
      if (type === XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE && d0 <= XEN_NETBK_MAX_HASH_MAPPING_SIZE) size = d0;
      if (bytes > 0) {
        // From offset 0 of the frontend's grant, as netback's copy_op (source.offset 0).
        segs.setGrantToLocal(ncopy, this.domid, d0, 0, this.dataAddr + ncopy * COPY_BYTES, bytes);
        this.copyOf[n] = ncopy++;
      }
    }
    // 2. One grant-copy call for the whole pass.
    if (ncopy > 0) gnt.copy(segs, ncopy);
    // 3. Apply in order and answer.
    const hash = this.hash;
    const from = this.rspProdPvt;
    for (let i = 0; i < n; i++) {
      const type = this.type[i];
      const k = this.copyOf[i];
      const copied = k !== NO_COPY && segs.status(k) === 0;
      let status = XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED;
      let data = 0;
      switch (type) {
        case XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM:
          status = hash.setAlgorithm(this.d0[i]);
          break;
        case XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS:
          status = hash.getFlags();
          if (status === XEN_NETIF_CTRL_STATUS_SUCCESS) data = XEN_NETIF_CTRL_HASH_TYPES_ALL;
          break;
        case XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS:
          status = hash.setFlags(this.d0[i]);
          break;
        case XEN_NETIF_CTRL_TYPE_SET_HASH_KEY:
          status = hash.setKey(copied ? this.data.subarray(k * COPY_BYTES, k * COPY_BYTES + this.d1[i]) : null, this.d1[i]);
          break;
        case XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE:
          status = XEN_NETIF_CTRL_STATUS_SUCCESS;
          data = XEN_NETBK_MAX_HASH_MAPPING_SIZE;
          break;
        case XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE:
          status = hash.setMappingSize(this.d0[i]);
          break;
        case XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING: {
          const w = (k * COPY_BYTES) >> 2;
          status = hash.setMapping(copied ? this.dataWords.subarray(w, w + this.d1[i]) : null, this.d1[i], this.d2[i]);
          break;
        }
        default:
          // INVALID, the staging-grant operations (GET_GREF_MAPPING_SIZE, ADD_GREF_MAPPING,
          // DEL_GREF_MAPPING: mainline netback has no case for them either) and anything unknown.
          break;
      }
      if (k !== NO_COPY && !copied) status = XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER;
      this.respond((from + i) >>> 0, this.id[i], type, status, data);
    }
    this.reqCons = this.rspProdPvt = (from + n) >>> 0;
    pass.answered = n;
    if (n > 0) {
      Atomics.store(this.u32, W_RSP_PROD, this.rspProdPvt | 0);
      pass.notify = needsNotify(this.rspProdPvt, from, Atomics.load(this.u32, W_RSP_EVENT) >>> 0);
    }
    // As xenvif_ctrl_action: req_event = req_cons + 1, then look again.
    if (!pass.more) {
      Atomics.store(this.u32, W_REQ_EVENT, (this.reqCons + 1) | 0);
      pass.more = (Atomics.load(this.u32, W_REQ_PROD) >>> 0) !== this.reqCons;
    }
    return pass;
  }

  /** The response in the request's slot: id and type as asked, data before status (see the header). */
  private respond(idx: number, id: number, type: number, status: number, data: number): void {
    const w = (RING_HEADER_SIZE + (idx & (SIZE - 1)) * NETIF_CTRL_SLOT_SIZE) >> 2;
    Atomics.store(this.u32, w + (CtrlResponse.data >> 2), data | 0);
    Atomics.store(this.u32, w + (CtrlResponse.status >> 2), status | 0);
    this.u16[(w << 1) + (CtrlResponse.id >> 1)] = id;
    this.u16[(w << 1) + (CtrlResponse.type >> 1)] = type;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.segs.free();
    peerio().pio_free(this.dataAddr as Pointer);
  }
}
