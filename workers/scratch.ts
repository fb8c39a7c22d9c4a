// Per-worker data-path memory, allocated once when the worker starts and shared by every vif it
// serves (vifs are served one after another, never at once). Native memory for frames and
// grant-copy segments (BUN-FACTS pitfalls 1 and 2), typed arrays for the per-pass bookkeeping:
// nothing on the data path allocates.
import { createFrameBatch, freeFrameBatch, type FrameBatch } from "../src/net/index.ts";
import { GrantCopyBatch } from "../src/platform/index.ts";
import { NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE, FATAL_SKB_SLOTS_DEFAULT } from "../src/xen/netif.ts";

/** Without scatter-gather a tx frame is one slot of one page: offset + size <= 4096. */
export const TX_STRIDE = 4096;
/** With scatter-gather a packet is up to 0xffff bytes (the size field): one frame slot holds any. */
export const TX_SG_STRIDE = 65536;
/**
 * Tx frame memory per worker with scatter-gather: 64 slots of 64 KiB (4 MiB, a batch as large as the
 * default budget). More would sit idle: one pass consumes at most a ring (256 slots of <= 4 KiB, so
 * at most 1 MiB of guest data, i.e. ~16 full GSO packets); fewer would cut the batches of small
 * packets. Workers whose vifs can never negotiate scatter-gather keep 4 KiB slots.
 */
export const TX_SG_BYTES = 4 << 20;
/**
 * Rx frames are read with room past the largest deliverable one (4094: a page less NET_IP_ALIGN),
 * so an oversize frame shows as len > 4094 (a TAP read truncates at the stride) and is dropped.
 */
export const RX_STRIDE = 4096 + 64;
/**
 * Rx frame slots on a worker whose vifs may negotiate feature-sg: a TAP with rx offloads on hands over
 * TCP frames of up to 64 KiB (plus the Ethernet header), so a slot takes the largest frame stride
 * (one more than MAX_SG_FRAME: a read that fills the slot reads as cut short and is dropped).
 */
export const RX_SG_STRIDE = 65536 + 64;
/** Frames per peer receive() call. */
export const RX_BATCH = 64;

export type Batch = FrameBatch & { readonly bytes: Uint8Array };

export class WorkerScratch {
  readonly txFrames: Batch;
  readonly txSegs: GrantCopyBatch;
  /** Views of txSegs / rxSegs (24-byte segments: see GrantCopyBatch) for writing fields inline. */
  readonly txSegU16: Uint16Array;
  readonly txSegU32: Uint32Array;
  readonly txSegI16: Int16Array;
  readonly rxSegU16: Uint16Array;
  readonly rxSegU32: Uint32Array;
  readonly rxSegI16: Int16Array;
  /** csum_blank marks for fillChecksums (one byte per tx frame; C writes results through it). */
  readonly txCsum: Uint8Array;
  /** Per tx segment: the frame it lands in (a multi-slot packet is several segments into one frame). */
  readonly txSegFrame = new Uint16Array(NETIF_TX_RING_SIZE);
  /** Per tx frame of a pass: every one of its segments copied. */
  readonly txFrameOk: Uint8Array;
  /** Tx segment k no longer lands at the start of frame slot k (a multi-slot packet moved it). */
  readonly txSegMoved = new Uint8Array(NETIF_TX_RING_SIZE);
  /** Each tx frame slot's native address as the two 32-bit words a grant-copy segment holds. */
  readonly txSlotLo: Uint32Array;
  readonly txSlotHi: Uint32Array;
  /** The fragment slots of one packet, copied out of the ring once (XSA-155) before any is used. */
  readonly txFragRef = new Uint32Array(FATAL_SKB_SLOTS_DEFAULT);
  readonly txFragOff = new Uint16Array(FATAL_SKB_SLOTS_DEFAULT);
  readonly txFragSize = new Uint16Array(FATAL_SKB_SLOTS_DEFAULT);
  /** Per response of a tx pass: the request id, and what answers it (segment index, or an RSP_ code). */
  readonly txRespId = new Uint16Array(NETIF_TX_RING_SIZE);
  readonly txRespSeg = new Int32Array(NETIF_TX_RING_SIZE);
  readonly rxFrames: Batch;
  readonly rxSegs: GrantCopyBatch;
  /** Per rx request taken this round: the copied-out id and the length of the frame it carries. */
  readonly rxReqId = new Uint16Array(NETIF_RX_RING_SIZE);
  readonly rxLen = new Uint16Array(NETIF_RX_RING_SIZE);
  /** Frames of one receive batch to queue: where each goes in the queue, which frame, how long (qw_gather's arguments). */
  readonly qDstOff = new Uint32Array(RX_BATCH);
  readonly qSrcIdx = new Uint32Array(RX_BATCH);
  readonly qLen = new Uint32Array(RX_BATCH);

  /**
   * `txBudget` packets per tx pass at most. `scatterGather`: some vif of this worker may send
   * multi-slot packets (up to 64 KiB frames, TX_SG_BYTES bounds the memory).
   */
  constructor(readonly txBudget: number, opts: { scatterGather?: boolean } = {}) {
    const sg = opts.scatterGather === true;
    const frames = sg ? Math.max(1, Math.min(txBudget, Math.floor(TX_SG_BYTES / TX_SG_STRIDE))) : txBudget;
    this.txFrames = createFrameBatch(frames, sg ? TX_SG_STRIDE : TX_STRIDE);
    // A pass answers at most a ring of requests, and each becomes at most one segment.
    this.txSegs = new GrantCopyBatch(NETIF_TX_RING_SIZE);
    this.txCsum = new Uint8Array(frames);
    this.txFrameOk = new Uint8Array(frames);
    this.txSlotLo = new Uint32Array(frames);
    this.txSlotHi = new Uint32Array(frames);
    for (let k = 0; k < frames; k++) {
      const a = this.txFrames.base + k * this.txFrames.stride;
      this.txSlotLo[k] = a >>> 0;
      this.txSlotHi[k] = Math.floor(a / 4294967296);
    }
    // Direction and local side written once: segment k lands in frame slot k, the single-slot case;
    // a multi-slot packet rewrites where its segments land (txSegMoved marks them).
    for (let k = 0; k < NETIF_TX_RING_SIZE; k++) {
      this.txSegs.setGrantToLocal(k, 0, 0, 0, this.txFrames.base + Math.min(k, frames - 1) * this.txFrames.stride, 0);
      this.txSegMoved[k] = k < frames ? 0 : 1;
    }
    this.txSegU16 = new Uint16Array(this.txSegs.buffer);
    this.txSegU32 = new Uint32Array(this.txSegs.buffer);
    this.txSegI16 = new Int16Array(this.txSegs.buffer);
    this.rxFrames = createFrameBatch(RX_BATCH, sg ? RX_SG_STRIDE : RX_STRIDE);
    // Queued frames and one receive() batch can be delivered in one round: at most a ring's worth.
    this.rxSegs = new GrantCopyBatch(NETIF_RX_RING_SIZE);
    for (let k = 0; k < NETIF_RX_RING_SIZE; k++) this.rxSegs.setLocalToGrant(k, 0, 0, 0, 0, 0);
    this.rxSegU16 = new Uint16Array(this.rxSegs.buffer);
    this.rxSegU32 = new Uint32Array(this.rxSegs.buffer);
    this.rxSegI16 = new Int16Array(this.rxSegs.buffer);
  }

  /** Native addresses of every allocation (for the worker's device registry). */
  allocations(): number[] {
    return [this.txFrames.lensAddr, this.rxFrames.lensAddr, this.txSegs.addr, this.rxSegs.addr];
  }

  free(): void {
    freeFrameBatch(this.txFrames);
    freeFrameBatch(this.rxFrames);
    this.txSegs.free();
    this.rxSegs.free();
  }
}
