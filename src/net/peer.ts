// The host side of a vif as the worker's data path sees it: frames move in batches through native
// memory, one native call per batch in each direction (BUN-FACTS: syscalls, not JS, dominate
// per-packet cost), never one call per frame.
import type { SteeringConfig } from "./steering-program.ts";

/**
 * Frames in native memory: frame i lives at `base + i * stride` and is `lens[i]` bytes long.
 * Native-allocated so the grant-copy batch can name these buffers by virtual address and peers can
 * hand them to the kernel without a JS copy. `lens` is a view of native memory (BUN-FACTS pitfall 1).
 */
export interface FrameBatch {
  readonly base: number;
  readonly stride: number;
  readonly capacity: number;
  readonly lens: Uint32Array;
  readonly lensAddr: number;
  /**
   * Per frame, what the guest asked of the host side beyond the bytes (FRAME_META_*; 0 = a plain
   * frame): checksum offload and GSO. Only peers with `offloads` read it; others get frames that
   * need none of it (the worker fills checksums in software for them, and GSO is never negotiated).
   */
  readonly meta: Uint32Array;
  readonly metaAddr: number;
  /** How many frames (from 0) are valid. */
  count: number;
}

/** Meta word bits (native/peerio.c reads the same): GSO segment size, GSO type, checksum partial. */
export const FRAME_META_GSO_SIZE_MASK = 0xffff;
/** XEN_NETIF_GSO_TYPE_TCPV4 (1) or _TCPV6 (2), shifted. */
export const FRAME_META_GSO_TYPE_SHIFT = 16;
/** The L4 checksum is partial (NETTXF_csum_blank / NETRXF_csum_blank): the receiving side completes it. */
export const FRAME_META_CSUM = 1 << 24;
/** Guest rx only: the host verified the checksums (virtio DATA_VALID -> NETRXF_data_validated). */
export const FRAME_META_DATA_VALID = 1 << 25;
/** Guest rx only: a GSO type no frontend takes (UDP, ECN: never asked for with TUNSETOFFLOAD); dropped. */
export const FRAME_META_GSO_BAD = 0xf;

/** The host side of a vif, created by the main thread when the vif is realized; it
 * crosses to the worker in the connect message, which opens the Peer for it (openPeer). */
export interface PeerHandle {
  readonly kind: "tap" | "switch" | "null";
  /** Interface name (for a TAP) or switch port name. */
  readonly name: string;
  /** A file descriptor the worker reads and writes frames on, or -1 for in-process peers. */
  readonly fd: number;
}

export type PeerWake = "fd" | "shared" | "none";

export interface Peer {
  readonly kind: "tap" | "switch" | "null" | "source";
  readonly name: string;
  /**
   * The peer takes checksum-partial and GSO frames as described by the batch's meta words (a TAP
   * with virtio_net_hdr). Absent or false: frames must be complete (the worker fills checksums).
   */
  readonly offloads?: boolean;
  /** Readable when frames are waiting for receive() (see `wake`); -1 for peers that never wake their worker. */
  readonly pollFd: number;
  /**
   * How the peer tells its worker that frames wait: "fd", pollFd is its own, readable while they
   * wait (the worker polls it; receive() clears it); "shared", pollFd is the worker's shared wake
   * eventfd (the worker polls it once, clears it, then receives on every peer sharing it); "none",
   * it never has frames unasked (a sink; a generator the bench drives).
   */
  readonly wake: PeerWake;
  /** Native calls send() and receive() made so far: the paths charge each batch's difference to the vif. */
  readonly ffiCalls: number;
  /** Syscalls send() and receive() made so far (io_uring_enter, read, write), charged the same way. */
  readonly syscalls: number;
  /**
   * Native memory the peer holds that a dead worker thread would leak (a TAP's I/O context), or 0:
   * the worker records it while the peer is open; the pool frees it with releaseOrphanedPeer.
   */
  readonly reclaimAddress: number;
  /** Hands frames 0..batch.count-1 to the host in one native call; returns how many were taken. */
  send(batch: FrameBatch): number;
  /**
   * Fills `batch` with up to batch.capacity (or `max`, when smaller) waiting frames in one native
   * call; returns the count. A peer that hands over GSO or checksum-partial frames (a TAP with rx
   * offloads on) describes each in batch.meta; the others leave meta alone, so a reader must know
   * which peer filled the batch.
   */
  receive(batch: FrameBatch, max?: number): number;
  /** Frames the peer itself dropped (queue full, interface down), for the vif's counters. */
  readonly drops: number;
  /**
   * For a peer that picks which of a multi-queue vif's queues a frame for the guest goes to (the
   * switch): pick by the frontend's hash configuration from now on, or as before for null.
   */
  steer?(config: SteeringConfig | null): void;
  close(): void;
}
