// The host side of a vif as the worker's data path sees it: frames move in batches through native
// memory, one native call per batch in each direction (BUN-FACTS: syscalls, not JS, dominate
// per-packet cost), never one call per frame.

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
  /** How many frames (from 0) are valid. */
  count: number;
}

export interface Peer {
  readonly kind: "tap" | "switch" | "null" | "source";
  readonly name: string;
  /** Readable when frames are waiting for receive(); -1 for peers that wake their worker otherwise. */
  readonly pollFd: number;
  /** Hands frames 0..batch.count-1 to the host in one native call; returns how many were taken. */
  send(batch: FrameBatch): number;
  /** Fills `batch` with up to batch.capacity waiting frames in one native call; returns the count. */
  receive(batch: FrameBatch): number;
  /** Frames the peer itself dropped (queue full, interface down), for the vif's counters. */
  readonly drops: number;
  close(): void;
}
