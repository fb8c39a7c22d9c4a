// Guest rx (the vif's peer -> the frontend's rx ring). Per round: frames waiting in the vif's queue
// first, then one peer receive() batch; all of them go into the guest's pages in ONE batched grant
// copy, each request copied out of the ring once (XSA-155). Responses are written into each
// request's OWN slot (Linux netfront looks the buffer up by slot, not by id).
//
// A frontend without feature-sg: one request per frame, at offset 2 with flags 0, as the seed does:
// NET_IP_ALIGN, and the frame's checksums are complete (its TAP's offloads stay off, so the kernel
// hands over only whole, checksummed frames of at most the MTU, and the switch carries finished
// frames), so nothing is claimed.
// Pushed once and notified at most once per wake-up, by the caller.
//
// A frontend that wrote feature-sg (and feature-gso-tcpv4/-tcpv6) gets frames the way Linux netback
// lays them out (drivers/net/xen-netback/rx.c, xenvif_rx_skb): each frame over as many rx buffers as
// its bytes fill, 4096 per buffer from offset 0 (xenvif_rx_data_slot packs every slot full; status =
// the bytes in THAT slot, NETRXF_more_data on all but the last); a GSO frame's first response carries
// NETRXF_extra_info and the slot right after it holds the GSO extra (xenvif_rx_extra_slot: type GSO,
// size = MSS, TCPV4/TCPV6, written over the response); a checksum-partial frame is flagged
// csum_blank|data_validated, a host-verified one data_validated. Each response still sits in the slot
// of the request it consumed, and every data slot is one copy segment of the round's single batched
// grant copy, so a packet is whole or its failed slots say NETIF_RSP_ERROR (netfront then drops the
// packet and reposts the buffers; the chain of more_data flags stays intact so it can walk it).
// Frames come from a TAP whose offloads were turned on for this frontend (rxOffloadFlags), so the
// host stack hands over 64 KiB TCP frames instead of segmenting them.
//
// No rx requests posted: frames wait in the byte-bounded RxQueue, dropped and counted past it. A
// frontend that leaves frames waiting with no requests for `stallMs` (Linux: rx_stall_timeout, 60 s)
// loses its carrier: the queue is purged and frames are dropped until it posts again (Linux's
// "Guest Rx stalled" / "Guest Rx ready"). Both live in rx-backlog.ts, shared with the seed's path.
import type { Pointer } from "bun:ffi";
import type { Peer } from "../src/net/index.ts";
import type { GrantDevice } from "../src/platform/types.ts";
import type { VifCounters } from "../src/stats/index.ts";
import {
  NETIF_RSP_ERROR,
  NETIF_RX_RING_SIZE,
  NETRXF_csum_blank,
  NETRXF_data_validated,
  NETRXF_extra_info,
  NETRXF_more_data,
  XEN_NETIF_GSO_TYPE_TCPV4,
  XEN_NETIF_GSO_TYPE_TCPV6,
} from "../src/xen/netif.ts";
import { FRAME_META_CSUM, FRAME_META_DATA_VALID } from "../src/net/peer.ts";
import { TAP_OFFLOAD_CSUM, TAP_OFFLOAD_TSO4, TAP_OFFLOAD_TSO6 } from "../src/net/tap.ts";
import { workerNative } from "../src/pool/worker-native.ts";
import type { Batch, WorkerScratch } from "./scratch.ts";
import type { RxQueue } from "./rx-queue.ts";
import type { RingJournal } from "./back-ring.ts";
import { BackloggedRxRing, type RxOptions, type RxPass } from "./rx-backlog.ts";
import { countCopyFailure } from "./fault-reasons.ts";
import type { CaptureWriter } from "./capture-writer.ts";
import { DIR_GUEST_RX } from "../src/capture/capture-ring.ts";
import type { VifHash } from "./vif-hash.ts";
import { stageHashExtra } from "./rx-hash-extra.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_NONE } from "../src/xen/ctrl-netif.ts";
import { NETIF_RX_SLOT_SIZE, XEN_NETIF_EXTRA_FLAG_MORE } from "../src/xen/netif.ts";
import { RING_HEADER_SIZE } from "../src/xen/ring.ts";
import type { McastFilter } from "./mcast-filter.ts";

const SIZE = NETIF_RX_RING_SIZE;
/** NET_IP_ALIGN: the seed writes frames at offset 2 so the IP header lands 4-byte aligned. */
export const RX_OFFSET = 2;
/** Largest frame one rx buffer takes at that offset (the seed's XEN_PAGE_SIZE - NET_IP_ALIGN). */
export const RX_MAX_FRAME = 4096 - RX_OFFSET;
/** Linux netback's rx_stall_timeout_msecs default. */
export const DEFAULT_RX_STALL_MS = 60_000;
/** The most rx buffers one frame takes on a feature-sg vif: 17 data slots and the GSO extra. */
const MAX_SLOTS_PER_FRAME = 18;

/** Netback's gso_mask from the frontend's feature keys (bit 1 << XEN_NETIF_GSO_TYPE_*). */
export function rxGsoMask(f: Readonly<Record<string, boolean | undefined>>): number {
  return (f["feature-gso-tcpv4"] ? 1 << XEN_NETIF_GSO_TYPE_TCPV4 : 0) | (f["feature-gso-tcpv6"] ? 1 << XEN_NETIF_GSO_TYPE_TCPV6 : 0);
}

/**
 * The TAP offloads (TUNSETOFFLOAD) a vif's frontend can take, from its negotiated feature keys, as
 * netback derives its vif's netdev features (xenvif_fix_features): GSO needs scatter-gather and a
 * frontend that takes blank checksums (no feature-no-csum-offload). TUN_F_CSUM hands over IPv6
 * checksum-partial frames too, so offloads need feature-ipv6-csum-offload as well (Linux netfront
 * writes every one of these keys); TSO6 needs feature-gso-tcpv6. 0: the kernel hands over whole,
 * checksummed frames of at most the MTU, the only kind a frontend without GSO takes.
 */
export function rxOffloadFlags(f: Readonly<Record<string, boolean | undefined>>): number {
  if (!f["feature-sg"] || f["feature-no-csum-offload"] || !f["feature-ipv6-csum-offload"]) return 0;
  if (!f["feature-gso-tcpv4"] && !f["feature-gso-tcpv6"]) return 0;
  return TAP_OFFLOAD_CSUM | (f["feature-gso-tcpv4"] ? TAP_OFFLOAD_TSO4 : 0) | (f["feature-gso-tcpv6"] ? TAP_OFFLOAD_TSO6 : 0);
}

// Per-slot and per-frame bookkeeping of one scatter-gather round, shared by every vif of the worker
// thread (one module instance per thread; vifs are served one after another): nothing allocated.
/** Per slot of the round: the request id, the copy segment (-1: an extra slot), flags, status or MSS, GSO type. */
const slotId = new Uint16Array(NETIF_RX_RING_SIZE);
const slotSeg = new Int16Array(NETIF_RX_RING_SIZE);
const slotFlags = new Uint16Array(NETIF_RX_RING_SIZE);
const slotLen = new Uint16Array(NETIF_RX_RING_SIZE);
const slotGso = new Uint8Array(NETIF_RX_RING_SIZE);
/** Per slot of the round: a hash extra's value (its hash type is in slotGso). */
const slotHash = new Uint32Array(NETIF_RX_RING_SIZE);
/** slotSeg of an extra slot: the GSO extra, the hash extra. */
const SEG_GSO_EXTRA = -1;
const SEG_HASH_EXTRA = -2;
/** Per frame of the round: its first slot, its slot count, its length. */
const pktFirst = new Uint16Array(NETIF_RX_RING_SIZE);
const pktSlots = new Uint8Array(NETIF_RX_RING_SIZE);
const pktLen = new Uint32Array(NETIF_RX_RING_SIZE);
const pktGso = new Uint8Array(NETIF_RX_RING_SIZE);

/**
 * Copy segment k of the round: `len` bytes at native address `addr` -> the guest's granted page
 * `gref` at `off` (direction set once in WorkerScratch).
 */
function setSegment(s: WorkerScratch, k: number, addr: number, gref: number, off: number, domid: number, len: number): void {
  const h = k * 12;
  s.rxSegU32[k * 6] = addr >>> 0;
  s.rxSegU32[k * 6 + 1] = (addr - (addr >>> 0)) / 4294967296;
  s.rxSegU32[k * 6 + 2] = gref;
  s.rxSegU16[h + 6] = off;
  s.rxSegU16[h + 7] = domid;
  s.rxSegU16[h + 8] = len;
  s.rxSegI16[h + 10] = 0;
}

/**
 * Frame i of the batch waits in the vif's queue (no room on the ring, or frames already wait): its
 * place is reserved now and it is copied in with the round's other waiting frames in one native
 * call. Returns the next entry of that call, or `nq` with the frame dropped and counted (queue full).
 */
function enqueue(q: RxQueue, s: WorkerScratch, nq: number, i: number, len: number, meta: number, c: VifCounters): number {
  const at = q.reserve(len, meta);
  if (at < 0) {
    c.rx_drops++;
    c.rx_drops_queue_full++;
    return nq;
  }
  s.qDstOff[nq] = at;
  s.qSrcIdx[nq] = i;
  s.qLen[nq] = len;
  return nq + 1;
}

/** A frame to a group the guest did not add, once it asked for multicast control: dropped at intake and counted. */
function dropsMulticast(mf: McastFilter, batch: Batch, i: number, c: VifCounters): boolean {
  if (mf.passes(batch.bytes, i * batch.stride)) return false;
  c.rx_drops++;
  c.rx_drops_mcast_filtered++;
  return true;
}

export class RxPath extends BackloggedRxRing {
  /** Set by the worker while this vif is captured: frames from the host side are recorded per receive batch. */
  captureEntry = -1;
  captureWriter: CaptureWriter | null = null;
  /** The vif's hash (control ring): a frame with a hash of an enabled type takes a hash extra slot (rx-hash-extra.ts). */
  hash: VifHash | null = null;
  /** The vif's multicast control: frames from the peer to groups the guest did not add are dropped at intake. */
  mcast: McastFilter | null = null;

  protected override hashSlots(): number {
    return this.hash !== null && this.hash.alg !== XEN_NETIF_CTRL_HASH_ALGORITHM_NONE ? 1 : 0;
  }

  /** Frame bytes at `off` of `bytes` hashed when the frontend configured hashing: the hash type (value in hash.value), or -1. */
  private hashOf(bytes: Uint8Array, off: number, len: number): number {
    const h = this.hash;
    if (h === null || h.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_NONE || !h.hashFrame(bytes, off, len)) return -1;
    return h.type;
  }

  constructor(page: ArrayBuffer, private readonly domid: number, queueBytes: number, stallMs: number, journal?: RingJournal | null, opts: RxOptions = {}) {
    super(page, queueBytes, stallMs, journal, opts);
  }

  /**
   * The peer hands over frames described by their meta words (a TAP with rx offloads on): set by the
   * worker after setRxOffloads. Off, meta words are not read (another peer of the worker may have
   * left them in the shared batch) and every frame counts as whole and checksummed.
   */
  peerMeta = false;

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
        // A feature-sg vif reads no more frames than its posted buffers can take at 18 apiece (the
        // rest wait in the host's queue, not ours); at least one, so a readable fd is always read.
        const max = this.sg ? this.receiveRoom(batch.capacity) : batch.capacity;
        const n = peer.receive(batch, max);
        if (this.captureEntry >= 0) this.captureWriter!.write(this.captureEntry, DIR_GUEST_RX, batch.base, batch.stride, batch.lens, n);
        c.ffi_calls += peer.ffiCalls - ffi;
        c.syscalls += peer.syscalls - sys;
        this.round(batch, n, s, gnt, c);
        if (pass.fault !== null || n < max) break;
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

  /** Frames to read now: what the free requests take at the worst case, after the queue's share. */
  private receiveRoom(capacity: number): number {
    const q = this.queue;
    const free = this.available(this.pass);
    if (free <= 0) return 1;
    const queued = q.length === 0 ? 0 : q.length + Math.ceil(q.bytes / 4096);
    const room = Math.floor((free - queued) / MAX_SLOTS_PER_FRAME);
    return room < 1 ? 1 : room > capacity ? capacity : room;
  }

  /** One delivery round: queued frames, then frames 0..n-1 of `batch`, in one grant-copy call. */
  private round(batch: Batch | null, n: number, s: WorkerScratch, gnt: GrantDevice, c: VifCounters): void {
    if (this.sg) return this.roundSg(batch, n, s, gnt, c);
    const avail = this.available(this.pass);
    if (avail < 0) return;
    if (!this.carrier) this.carrierOn(c, avail);
    const q = this.queue;
    const segs = s.rxSegs;
    const segI16 = s.rxSegI16;
    const domid = this.domid;
    const grefs = this.grefs;
    const ids = s.rxReqId;
    const lensOut = s.rxLen;
    const hash = this.hash;
    const slotOf = this.slotOf;
    const hashType = this.hashType;
    const hashValue = this.hashValue;
    // Else one slot per frame: frame k in request (reqCons + k), as before hashing existed.
    const hashing = this.hashSlots() !== 0;
    let k = 0;
    let used = 0; // requests taken this round: one per frame, two for a frame with a hash extra
    for (; k < q.length && used < avail; k++) {
      const len = q.lenOf(k);
      const a = q.addrOf(k);
      const ht = hashing ? this.hashOf(q.mem, a - q.base, len) : -1;
      const need = ht >= 0 ? 2 : 1;
      if (used + need > avail) break;
      hashType[k] = ht;
      if (ht >= 0) hashValue[k] = hash!.value;
      this.take(used, k, ids);
      slotOf[k] = used;
      used += need;
      setSegment(s, k, a, grefs[k], RX_OFFSET, domid, len);
      lensOut[k] = len;
    }
    q.take(k);
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
        if (mf !== null && dropsMulticast(mf, batch, i, c)) continue;
        if (len > RX_MAX_FRAME || !carrier) {
          c.rx_drops++; // too big for one buffer (the seed drops these too), or the carrier is off
          if (len > RX_MAX_FRAME) c.rx_drops_oversize++;
          else c.rx_drops_carrier_off++;
          continue;
        }
        const ht = hashing && !queueing ? this.hashOf(batch.bytes, i * stride, len) : -1;
        const need = ht >= 0 ? 2 : 1;
        if (queueing || used + need > avail) {
          queueing = true;
          nq = enqueue(q, s, nq, i, len, 0, c);
          continue;
        }
        if (hashing) {
          hashType[k] = ht;
          if (ht >= 0) hashValue[k] = hash!.value;
          slotOf[k] = used;
        }
        // Request (reqCons + used), copied out of the ring once (XSA-155): its id and gref.
        this.takeRequest(cons + used);
        used += need;
        ids[k] = req.id;
        // Segment k: frame i (local) -> the request's page at offset 2 (foreign).
        setSegment(s, k, batch.base + i * stride, req.gref, RX_OFFSET, domid, len);
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
    if (!hashing) {
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
    } else {
      for (let j = 0; j < k; j++) {
        // Frame j's data in slot (rspProdPvt + slotOf[j]) = its request's; a hash extra in the slot
        // after it (netback's xenvif_rx_extra_slot), whatever the copy did.
        const at = this.rspProdPvt + slotOf[j];
        const flags = hashType[j] >= 0 ? NETRXF_extra_info : 0;
        if (segI16[j * 12 + 10] === 0) {
          this.stageResponse(at, ids[j], RX_OFFSET, flags, lensOut[j]);
          bytes += lensOut[j];
          ok++;
        } else {
          this.stageResponse(at, ids[j], 0, flags, NETIF_RSP_ERROR);
        }
        if (flags !== 0) stageHashExtra(this.s16, at + 1, hashType[j], hashValue[j]);
      }
    }
    c.rx_packets += ok;
    c.rx_bytes += bytes;
    c.rx_errors += k - ok;
    this.reqCons = (this.reqCons + used) >>> 0;
    this.rspProdPvt = (this.rspProdPvt + used) >>> 0;
    this.rxSeq++;
    q.commit();
  }
  /**
   * The feature-sg round (netback's layout: see the header): queued frames, then frames 0..n-1 of
   * `batch`, each placed only when all the slots it needs are posted (a frame never straddles a
   * round), all data slots copied in one grant-copy call.
   */
  private roundSg(batch: Batch | null, n: number, s: WorkerScratch, gnt: GrantDevice, c: VifCounters): void {
    const avail = this.available(this.pass);
    if (avail < 0) return;
    if (!this.carrier) this.carrierOn(c, avail);
    const q = this.queue;
    let used = 0;
    let npkt = 0;
    let nseg = 0;
    let fromQueue = 0;
    while (fromQueue < q.length) {
      const len = q.lenOf(fromQueue);
      const meta = q.metaOf(fromQueue);
      const addr = q.addrOf(fromQueue);
      const ht = this.hashOf(q.mem, addr - q.base, len);
      const need = this.slotsFor(len, meta) + (ht >= 0 ? 1 : 0); // > 0: checked when it was queued
      if (used + need > avail) break;
      nseg = this.place(addr, len, meta, need, used, npkt++, nseg, s, ht);
      used += need;
      fromQueue++;
    }
    q.take(fromQueue);
    let nq = 0;
    if (batch) {
      const stride = batch.stride;
      const lens = batch.lens;
      const metas = batch.meta;
      const readMeta = this.peerMeta;
      const carrier = this.carrier;
      let queueing = q.length > 0;
      const mf = this.mcast !== null && this.mcast.active ? this.mcast : null;
      for (let i = 0; i < n; i++) {
        const len = lens[i];
        if (mf !== null && dropsMulticast(mf, batch, i, c)) continue;
        const meta = readMeta ? metas[i] : 0;
        // A read that filled its frame slot may have been cut short: never deliver it.
        const base = len >= stride ? -1 : this.slotsFor(len, meta);
        const ht = base < 0 || queueing ? -1 : this.hashOf(batch.bytes, i * stride, len);
        const need = base < 0 ? -1 : base + (ht >= 0 ? 1 : 0);
        if (need < 0 || !carrier) {
          c.rx_drops++;
          if (need < 0) c.rx_drops_oversize++;
          else c.rx_drops_carrier_off++;
          continue;
        }
        if (queueing || used + need > avail) {
          queueing = true;
          nq = enqueue(q, s, nq, i, len, meta, c);
          continue;
        }
        nseg = this.place(batch.base + i * stride, len, meta, need, used, npkt++, nseg, s, ht);
        used += need;
      }
    }
    if (nq > 0) {
      workerNative().qw_gather(q.base as Pointer, s.qDstOff, batch!.base as Pointer, batch!.stride, s.qSrcIdx, s.qLen, nq);
      c.ffi_calls++;
    }
    if (used === 0) return;
    const segI16 = s.rxSegI16;
    if (nseg > 0) {
      if (gnt.copy(s.rxSegs, nseg) > 0) for (let j = 0; j < nseg; j++) if (segI16[j * 12 + 10] !== 0) countCopyFailure(c, "rx", segI16[j * 12 + 10]);
      c.ffi_calls++;
      c.syscalls++; // IOCTL_GNTDEV_GRANT_COPY on Xen
    }
    const rsp = this.rspProdPvt;
    let bytes = 0;
    let ok = 0;
    let gso = 0;
    for (let p = 0; p < npkt; p++) {
      const first = pktFirst[p];
      const end = first + pktSlots[p];
      let whole = true;
      for (let j = first; j < end; j++) {
        const seg = slotSeg[j];
        if (seg === SEG_GSO_EXTRA) {
          this.stageGsoExtra(rsp + j, slotLen[j], slotGso[j]);
          // A hash extra follows: XEN_NETIF_EXTRA_FLAG_MORE (the flags byte above the type's).
          if (j + 1 < end && slotSeg[j + 1] === SEG_HASH_EXTRA) this.s16[(RING_HEADER_SIZE + ((rsp + j) & (SIZE - 1)) * NETIF_RX_SLOT_SIZE) >> 1] |= XEN_NETIF_EXTRA_FLAG_MORE << 8;
          continue;
        }
        if (seg === SEG_HASH_EXTRA) {
          stageHashExtra(this.s16, rsp + j, slotGso[j], slotHash[j]);
          continue;
        }
        // A failed copy's slot says so; its flags stay, so the frontend still walks the whole chain.
        const failed = segI16[seg * 12 + 10] !== 0;
        if (failed) whole = false;
        this.stageResponse(rsp + j, slotId[j], 0, slotFlags[j], failed ? NETIF_RSP_ERROR : slotLen[j]);
      }
      if (whole) {
        ok++;
        bytes += pktLen[p];
        gso += pktGso[p];
      }
    }
    c.rx_packets += ok;
    c.rx_bytes += bytes;
    c.rx_errors += npkt - ok;
    c.rx_gso_packets += gso;
    this.reqCons = (this.reqCons + used) >>> 0;
    this.rspProdPvt = (this.rspProdPvt + used) >>> 0;
    this.rxSeq++;
    q.commit();
  }

  /**
   * Lays out frame `p` (at native address `addr`) over the `need` requests from (reqCons + at): its
   * data slots as copy segments from `nseg` on, its GSO extra in the second slot. Each request is
   * copied out of the ring once (XSA-155). Returns the next free segment index.
   */
  private place(addr: number, len: number, meta: number, need: number, at: number, p: number, nseg: number, s: WorkerScratch, hashType = -1): number {
    const req = this.req;
    const cons = this.reqCons;
    const domid = this.domid;
    const gsoType = (meta >>> 16) & 0xf;
    let flags0 = 0;
    if (meta & FRAME_META_CSUM) flags0 = NETRXF_csum_blank | NETRXF_data_validated;
    else if (meta & FRAME_META_DATA_VALID) flags0 = NETRXF_data_validated;
    if (gsoType !== 0 || hashType >= 0) flags0 |= NETRXF_extra_info;
    // The extras right after the first data slot, in netback's order (xenvif_rx_extra_slot): GSO, then the hash.
    const hashAt = hashType < 0 ? -1 : gsoType !== 0 ? 2 : 1;
    pktFirst[p] = at;
    pktSlots[p] = need;
    pktLen[p] = len;
    pktGso[p] = gsoType !== 0 ? 1 : 0;
    let off = 0;
    for (let j = 0; j < need; j++) {
      const slot = at + j;
      this.takeRequest(cons + slot);
      slotId[slot] = req.id;
      if (j === hashAt) {
        slotSeg[slot] = SEG_HASH_EXTRA;
        slotGso[slot] = hashType;
        slotHash[slot] = this.hash!.value;
        continue;
      }
      if (j === 1 && gsoType !== 0) {
        slotSeg[slot] = SEG_GSO_EXTRA;
        slotLen[slot] = meta & 0xffff;
        slotGso[slot] = gsoType;
        continue;
      }
      const chunk = len - off > 4096 ? 4096 : len - off;
      setSegment(s, nseg, addr + off, req.gref, 0, domid, chunk);
      off += chunk;
      slotSeg[slot] = nseg++;
      slotLen[slot] = chunk;
      slotFlags[slot] = (j === 0 ? flags0 : 0) | (off < len ? NETRXF_more_data : 0);
    }
    return nseg;
  }

  /** Gref of frame k's request this round, read in take() (kept beside the id). */
  private readonly grefs = new Uint32Array(SIZE);
  /** Per frame k of a round: the request (reqCons + slotOf[k]) its data goes to, and its hash extra (type -1: none). */
  private readonly slotOf = new Uint16Array(SIZE);
  private readonly hashType = new Int8Array(SIZE);
  private readonly hashValue = new Uint32Array(SIZE);

  /** Copies request (reqCons + slot) out of the ring once, for frame k: id and gref. */
  private take(slot: number, k: number, ids: Uint16Array): void {
    this.takeRequest(this.reqCons + slot);
    ids[k] = this.req.id;
    this.grefs[k] = this.req.gref;
  }

}
