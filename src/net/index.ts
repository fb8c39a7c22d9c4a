// What a worker needs from src/net: batch memory, a Peer for each PeerHandle the main thread hands
// it, and checksum fill. The main thread creates the SwitchFabric (if --peer switch) and passes its
// address to every worker once; TAP fds come in the PeerHandle.
//
// Contract for the worker loop:
//  - createFrameBatch(capacity, stride) once per worker (or vif); never per wake-up.
//  - A peer says how it wakes the worker (Peer.wake): poll its own pollFd ("fd"), or the worker's
//    shared wake eventfd ("shared", given as sharedWakeFd), which the worker clears itself. When it
//    fires, call receive() until it returns less than batch.capacity: a switch port re-arms its
//    wake-up only when it finds its ring empty.
//  - Charge a vif what its peer spent: the change in Peer.ffiCalls and Peer.syscalls across each
//    send() and receive(); record Peer.reclaimAddress (if not 0) so a dead worker's is released.
//  - send() returns the frames taken; the rest are in the peer's `drops`.
//  - For csum_blank tx frames: a peer with `offloads` (a TAP with virtio_net_hdr) gets them as the
//    batch's meta words (FRAME_META_*), with GSO; for any other peer, mark them in a Uint8Array owned
//    by the worker and call fillChecksums(batch, status) once before peer.send(batch).
import type { Pointer } from "bun:ffi";
import type { Peer, PeerHandle } from "./peer.ts";
import { peerio } from "./peerio-lib.ts";
import { NullPeer } from "./null-peer.ts";
import { SwitchPeer } from "./switch.ts";
import { TapPeer, type TapIoMode } from "./tap.ts";

export type { FrameBatch, Peer, PeerHandle, PeerWake } from "./peer.ts";
export { createFrameBatch, freeFrameBatch } from "./frame-batch.ts";
export { CsumStatus, fillChecksums } from "./checksum.ts";
export { SwitchFabric, SwitchPeer } from "./switch.ts";
export { TapPeer } from "./tap.ts";
export { NullPeer } from "./null-peer.ts";
export { SourcePeer } from "./source-peer.ts";

export interface OpenPeerOptions {
  /** SwitchFabric.address from the main thread; needed for "switch" handles. */
  switchAddress?: number;
  /** TAP I/O path (default auto: io_uring, plain loops if it cannot be set up). */
  tapIo?: TapIoMode;
  /** The worker's shared wake eventfd, for peers that can share one (switch ports); absent: each opens its own. */
  sharedWakeFd?: number;
}

/** The worker-side Peer for a handle. Throws a one-line Error naming the peer and the cure. */
export function openPeer(handle: PeerHandle, opts: OpenPeerOptions = {}): Peer {
  switch (handle.kind) {
    case "tap":
      if (handle.fd < 0) throw new Error(`TAP ${handle.name}: no fd in the peer handle: the backend must create the TAP before connecting the vif`);
      return new TapPeer(handle.name, handle.fd, { io: opts.tapIo });
    case "switch":
      if (opts.switchAddress === undefined) throw new Error(`switch port ${handle.name}: this worker has no switch address: the pool must pass SwitchFabric.address to workers when --peer switch`);
      return new SwitchPeer(opts.switchAddress, handle.name, { wakeFd: opts.sharedWakeFd });
    case "null":
      return new NullPeer(handle.name);
  }
}

/**
 * Frees a peer's native memory (Peer.reclaimAddress) from another thread of the process, once the
 * worker thread that opened the peer died. Every peer's reclaimAddress is a native/peerio.c context.
 */
export function releaseOrphanedPeer(address: number): void {
  peerio().pio_close(address as Pointer);
}
