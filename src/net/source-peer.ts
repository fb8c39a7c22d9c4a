// The source peer: a generator for benchmarks. receive() fills the whole batch with copies of one
// valid frame (Ethernet + IPv4 + UDP, correct checksums) in one native call, as fast as asked;
// frames sent to it are discarded like the null peer's.
import { buildUdpFrame, parseMac, type UdpFrameSpec } from "./frames.ts";
import type { FrameBatch, Peer } from "./peer.ts";
import { peerio } from "./peerio-lib.ts";

export interface SourceOptions {
  /** Frame length in bytes (no FCS), 42..65535. */
  size: number;
  /** Destination MAC: the guest's, so its stack accepts the frames. */
  dstMac?: string;
  srcMac?: string;
  srcIp?: UdpFrameSpec["srcIp"];
  dstIp?: UdpFrameSpec["dstIp"];
  srcPort?: number;
  dstPort?: number;
  /** Stop after this many frames (default: never). */
  limit?: number;
  /** Hand out this frame instead of the UDP one built from the fields above (its length wins over `size`). */
  frame?: Uint8Array;
  /** Meta word every frame carries (FRAME_META_*: a TAP with rx offloads describing a GSO frame); default 0. */
  meta?: number;
}

export class SourcePeer implements Peer {
  readonly kind = "source" as const;
  readonly pollFd = -1;
  readonly wake = "none" as const;
  /** One pio_fill per receive() that hands out frames. */
  ffiCalls = 0;
  readonly syscalls = 0;
  readonly reclaimAddress = 0;
  readonly drops = 0;
  /** Frames handed out so far. */
  generated = 0;
  /** The frame every receive() hands out; kept referenced: native code copies from it (pitfall 2). */
  readonly template: Uint8Array;
  private readonly limit: number;
  private readonly meta: number;

  constructor(readonly name: string, opts: SourceOptions) {
    this.meta = opts.meta ?? 0;
    this.template = opts.frame ?? buildUdpFrame({
      size: opts.size,
      dstMac: parseMac(opts.dstMac ?? "00:16:3e:00:00:01"),
      srcMac: parseMac(opts.srcMac ?? "02:00:00:00:00:fe"),
      srcIp: opts.srcIp ?? [10, 200, 0, 1],
      dstIp: opts.dstIp ?? [10, 200, 0, 2],
      srcPort: opts.srcPort ?? 9,
      dstPort: opts.dstPort ?? 9,
    });
    this.limit = opts.limit ?? Infinity;
  }

  send(batch: FrameBatch): number {
    return batch.count;
  }

  receive(batch: FrameBatch, max?: number): number {
    const n = Math.min(max !== undefined && max < batch.capacity ? max : batch.capacity, this.limit - this.generated);
    if (this.template.length > batch.stride) throw new RangeError(`source ${this.name}: ${this.template.length} B frames do not fit a ${batch.stride} B batch stride: use a larger stride`);
    if (n <= 0) return (batch.count = 0);
    this.ffiCalls++;
    peerio().pio_fill(batch.base, batch.stride, batch.lensAddr, n, this.template, this.template.length);
    if (this.meta !== 0) batch.meta.fill(this.meta, 0, n);
    this.generated += n;
    batch.count = n;
    return n;
  }
  close(): void {}
}
