// What a worker needs from src/net: batch memory, a Peer for each PeerHandle the main thread hands
// it, and checksum fill. The main thread creates the SwitchFabric (if --peer switch) and passes its
// address to every worker once; TAP fds come in the PeerHandle.
//
// Contract for the worker loop:
//  - createFrameBatch(capacity, stride) once per worker (or vif); never per wake-up.
//  - When a peer's pollFd is readable (TAP fd, or a switch port's eventfd), call receive() until it
//    returns less than batch.capacity: a switch port re-arms its wake-up only when it finds its ring
//    empty, and clears its own eventfd then (ports given a shared wakeFd leave that to the worker).
//  - send() returns the frames taken; the rest are in the peer's `drops`.
//  - For csum_blank tx frames: a peer with `offloads` (a TAP with virtio_net_hdr) gets them as the
//    batch's meta words (FRAME_META_*), with GSO; for any other peer, mark them in a Uint8Array owned
//    by the worker and call fillChecksums(batch, status) once before peer.send(batch).
import type { Peer, PeerHandle } from "./peer.ts";
import { NullPeer } from "./null-peer.ts";
import { SwitchPeer } from "./switch.ts";
import { TapPeer, type TapIoMode } from "./tap.ts";

export type { FrameBatch, Peer, PeerHandle } from "./peer.ts";
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
}

/** The worker-side Peer for a handle. Throws a one-line Error naming the peer and the cure. */
export function openPeer(handle: PeerHandle, opts: OpenPeerOptions = {}): Peer {
  switch (handle.kind) {
    case "tap":
      if (handle.fd < 0) throw new Error(`TAP ${handle.name}: no fd in the peer handle: the backend must create the TAP before connecting the vif`);
      return new TapPeer(handle.name, handle.fd, { io: opts.tapIo });
    case "switch":
      if (opts.switchAddress === undefined) throw new Error(`switch port ${handle.name}: this worker has no switch address: the pool must pass SwitchFabric.address to workers when --peer switch`);
      return new SwitchPeer(opts.switchAddress, handle.name);
    case "null":
      return new NullPeer(handle.name);
  }
}
