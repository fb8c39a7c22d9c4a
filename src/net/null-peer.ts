// The null peer: a sink for benchmarks and for vifs with nowhere to go. Takes every frame, counts
// it, keeps nothing, never has frames to give.
import type { FrameBatch, Peer } from "./peer.ts";

export class NullPeer implements Peer {
  readonly kind = "null" as const;
  readonly pollFd = -1;
  readonly wake = "none" as const;
  /** Pure JS: no native call, no syscall, nothing native to release. */
  readonly ffiCalls = 0;
  readonly syscalls = 0;
  readonly reclaimAddress = 0;
  /** Frames taken and discarded. */
  frames = 0;
  /** Nothing is dropped against the caller's will: discarding is this peer's job. */
  readonly drops = 0;

  constructor(readonly name: string) {}

  send(batch: FrameBatch): number {
    this.frames += batch.count;
    return batch.count;
  }
  receive(batch: FrameBatch): number {
    batch.count = 0;
    return 0;
  }
  close(): void {}
}
