// Guest rx (the vif's peer -> the frontend's rx ring). Per round: frames waiting in the vif's queue
// first, then one peer receive() batch; each takes one posted rx request (copied out of the ring
// once, XSA-155), and all of them go into the guest's pages in ONE batched grant copy. Responses are
// written into each request's OWN slot (Linux netfront looks the buffer up by slot, not by id), at
// offset 2 with flags 0, as the seed does: NET_IP_ALIGN, and the frame's checksums are complete
// (the backend's TAPs run with their offloads off, so the kernel hands over only whole, checksummed
// frames of at most the MTU, and the switch carries finished frames), so nothing is claimed.
// Pushed once and notified at most once per wake-up, by the caller.
//
// No rx requests posted: frames wait in the byte-bounded RxQueue, dropped and counted past it. A
// frontend that leaves frames waiting with no requests for `stallMs` (Linux: rx_stall_timeout, 60 s)
// loses its carrier: the queue is purged and frames are dropped until it posts again (Linux's
// "Guest Rx stalled" / "Guest Rx ready"). Both live in rx-backlog.ts, shared with the seed's path.
import type { Pointer } from "bun:ffi";
import type { Peer } from "../src/net/index.ts";
import type { GrantDevice } from "../src/platform/types.ts";
import type { VifCounters } from "../src/stats/index.ts";
import { NETIF_RSP_ERROR, NETIF_RX_RING_SIZE } from "../src/xen/netif.ts";
import { workerNative } from "../src/pool/worker-native.ts";
import type { Batch, WorkerScratch } from "./scratch.ts";
import type { RingJournal } from "./back-ring.ts";
import { BackloggedRxRing, type RxPass } from "./rx-backlog.ts";
import { countCopyFailure } from "./fault-reasons.ts";
import type { CaptureWriter } from "./capture-writer.ts";
import { DIR_GUEST_RX } from "../src/capture/capture-ring.ts";
import type { McastFilter } from "./mcast-filter.ts";

const SIZE = NETIF_RX_RING_SIZE;
/** NET_IP_ALIGN: the seed writes frames at offset 2 so the IP header lands 4-byte aligned. */
export const RX_OFFSET = 2;
/** Largest frame one rx buffer takes at that offset (the seed's XEN_PAGE_SIZE - NET_IP_ALIGN). */
export const RX_MAX_FRAME = 4096 - RX_OFFSET;
/** Linux netback's rx_stall_timeout_msecs default. */
export const DEFAULT_RX_STALL_MS = 60_000;

export class RxPath extends BackloggedRxRing {
  /** Set by the worker while this vif is captured: frames from the host side are recorded per receive batch. */
  captureEntry = -1;
  captureWriter: CaptureWriter | null = null;
  /** The vif's multicast control: frames from the peer to groups the guest did not add are dropped at intake. */
  mcast: McastFilter | null = null;

  constructor(page: ArrayBuffer, private readonly domid: number, queueBytes: number, stallMs: number, journal?: RingJournal | null) {
    super(page, queueBytes, stallMs, journal);
  }

  /**
   * One wake-up's rx work for this vif: queued frames, then (when `peer` is given, i.e. its fd was
   * readable) up to `rounds` receive() batches, until one comes back short of the batch capacity.
   */
  service(peer: Peer | null, rounds: number, s: WorkerScratch, gnt: GrantDevice, c: VifCounters): RxPass {
    const pass = this.pass;
    if (!this.beginPass()) return pass;
    const start = this.rspProdPvt;
    // Queued frames go first in every round; with no peer batch to come, they get a round of their own.
    if (!peer && (this.queue.length > 0 || !this.carrier)) this.round(null, 0, s, gnt, c);
    if (peer) {
      const batch = s.rxFrames;
      for (let r = 0; ; r++) {
        const sys = peer.syscalls, ffi = peer.ffiCalls;
        const n = peer.receive(batch);
        if (this.captureEntry >= 0) this.captureWriter!.write(this.captureEntry, DIR_GUEST_RX, batch.base, batch.stride, batch.lens, n);
        c.ffi_calls += peer.ffiCalls - ffi;
        c.syscalls += peer.syscalls - sys;
        this.round(batch, n, s, gnt, c);
        if (pass.fault !== null || n < batch.capacity) break;
        if (r + 1 >= rounds) {
          pass.more = true;
          break;
        }
      }
    }
    if (pass.fault !== null) return pass;
    if (this.rspProdPvt !== start) {
      c.rx_batches++;
      pass.notify = this.publish(start);
    }
    this.watchStall(c);
    c.rx_queue_bytes = this.queue.bytes;
    return pass;
  }

  /** One delivery round: queued frames, then frames 0..n-1 of `batch`, in one grant-copy call. */
  private round(batch: Batch | null, n: number, s: WorkerScratch, gnt: GrantDevice, c: VifCounters): void {
    const avail = this.available(this.pass);
    if (avail < 0) return;
    if (avail > 0) this.carrierOn(c);
    const q = this.queue;
    const segs = s.rxSegs;
    const segU16 = s.rxSegU16;
    const segU32 = s.rxSegU32;
    const segI16 = s.rxSegI16;
    const domid = this.domid;
    const grefs = this.grefs;
    const ids = s.rxReqId;
    const lensOut = s.rxLen;
    let k = 0;
    const fromQueue = Math.min(q.length, avail);
    for (; k < fromQueue; k++) {
      const len = q.lenOf(k);
      this.take(k, ids);
      const a = q.addrOf(k);
      const h = k * 12;
      segU32[k * 6] = a >>> 0;
      segU32[k * 6 + 1] = (a - (a >>> 0)) / 4294967296;
      segU32[k * 6 + 2] = grefs[k];
      segU16[h + 6] = RX_OFFSET;
      segU16[h + 7] = domid;
      segU16[h + 8] = len;
      segI16[h + 10] = 0;
      lensOut[k] = len;
    }
    q.take(fromQueue);
    let nq = 0;
    if (batch) {
      const stride = batch.stride;
      const lens = batch.lens;
      const carrier = this.carrier;
      const req = this.req;
      const cons = this.reqCons;
      // Order: once anything waits, later frames wait behind it (copied in below, in one call).
      let queueing = q.length > 0;
      const mf = this.mcast !== null && this.mcast.active ? this.mcast : null;
      for (let i = 0; i < n; i++) {
        const len = lens[i];
        if (mf !== null && !mf.passes(batch.bytes, i * stride)) {
          c.rx_drops++;
          c.rx_drops_mcast_filtered++;
          continue;
        }
        if (len > RX_MAX_FRAME || !carrier) {
          c.rx_drops++; // too big for one buffer (the seed drops these too), or the carrier is off
          if (len > RX_MAX_FRAME) c.rx_drops_oversize++;
          else c.rx_drops_carrier_off++;
          continue;
        }
        if (queueing || k >= avail) {
          queueing = true;
          const at = q.reserve(len);
          if (at < 0) {
            c.rx_drops++;
            c.rx_drops_queue_full++;
          } else {
            s.qDstOff[nq] = at;
            s.qSrcIdx[nq] = i;
            s.qLen[nq++] = len;
          }
          continue;
        }
        // Request (reqCons + k), copied out of the ring once (XSA-155): its id and gref.
        this.takeRequest(cons + k);
        ids[k] = req.id;
        const gref = req.gref;
        // Segment k: frame i (local) -> the request's page at offset 2 (foreign); direction set once in WorkerScratch.
        const a = batch.base + i * stride;
        const h = k * 12;
        segU32[k * 6] = a >>> 0;
        segU32[k * 6 + 1] = (a - (a >>> 0)) / 4294967296;
        segU32[k * 6 + 2] = gref;
        segU16[h + 6] = RX_OFFSET;
        segU16[h + 7] = domid;
        segU16[h + 8] = len;
        segI16[h + 10] = 0;
        lensOut[k] = len;
        k++;
      }
    }
    if (nq > 0) {
      workerNative().qw_gather(q.base as Pointer, s.qDstOff, batch!.base as Pointer, batch!.stride, s.qSrcIdx, s.qLen, nq);
      c.ffi_calls++;
    }
    if (k === 0) return;
    if (gnt.copy(segs, k) > 0) for (let j = 0; j < k; j++) if (segI16[j * 12 + 10] !== 0) countCopyFailure(c, "rx", segI16[j * 12 + 10]);
    c.ffi_calls++;
    c.syscalls++; // IOCTL_GNTDEV_GRANT_COPY on Xen
    let bytes = 0;
    let ok = 0;
    for (let j = 0; j < k; j++) {
      // The response goes where its request was: slot (rspProdPvt + j) = slot (reqCons + j).
      if (segI16[j * 12 + 10] === 0) {
        this.stageResponse(this.rspProdPvt + j, ids[j], RX_OFFSET, 0, lensOut[j]);
        bytes += lensOut[j];
        ok++;
      } else {
        this.stageResponse(this.rspProdPvt + j, ids[j], 0, 0, NETIF_RSP_ERROR);
      }
    }
    c.rx_packets += ok;
    c.rx_bytes += bytes;
    c.rx_errors += k - ok;
    this.reqCons = (this.reqCons + k) >>> 0;
    this.rspProdPvt = (this.rspProdPvt + k) >>> 0;
    q.commit();
  }

  /** Gref of request k this round, read in take() (kept beside the id). */
  private readonly grefs = new Uint32Array(SIZE);

  /** Copies request (reqCons + k) out of the ring once: id and gref. */
  private take(k: number, ids: Uint16Array): void {
    this.takeRequest(this.reqCons + k);
    ids[k] = this.req.id;
    this.grefs[k] = this.req.gref;
  }

}
