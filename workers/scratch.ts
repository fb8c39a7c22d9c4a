// Per-worker data-path memory, allocated once when the worker starts and shared by every vif it
// serves (vifs are served one after another, never at once). Native memory for frames and
// grant-copy segments (BUN-FACTS pitfalls 1 and 2), typed arrays for the per-pass bookkeeping:
// nothing on the data path allocates.
import { createFrameBatch, freeFrameBatch, type FrameBatch } from "../src/net/index.ts";
import { GrantCopyBatch } from "../src/platform/index.ts";
import { NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE } from "../src/xen/netif.ts";

/** A tx frame is one slot of one page: offset + size <= 4096. */
export const TX_STRIDE = 4096;
/**
 * Rx frames are read with room past the largest deliverable one (4094: a page less NET_IP_ALIGN),
 * so an oversize frame shows as len > 4094 (a TAP read truncates at the stride) and is dropped.
 */
export const RX_STRIDE = 4096 + 64;
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

  constructor(readonly txBudget: number) {
    this.txFrames = createFrameBatch(txBudget, TX_STRIDE);
    this.txSegs = new GrantCopyBatch(txBudget);
    this.txCsum = new Uint8Array(txBudget);
    // Tx segment k always lands in frame slot k: its local side and direction are written once here,
    // so a packet writes only the guest's side (ref, offset, domid) and its length.
    for (let k = 0; k < txBudget; k++) this.txSegs.setGrantToLocal(k, 0, 0, 0, this.txFrames.base + k * TX_STRIDE, 0);
    this.txSegU16 = new Uint16Array(this.txSegs.buffer);
    this.txSegU32 = new Uint32Array(this.txSegs.buffer);
    this.txSegI16 = new Int16Array(this.txSegs.buffer);
    this.rxFrames = createFrameBatch(RX_BATCH, RX_STRIDE);
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
