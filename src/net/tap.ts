// TAP peer: frames of a batch go to / come from an existing TAP fd (IFF_TAP|IFF_NO_PI, nonblocking,
// created by the backend in the main thread; with IFF_VNET_HDR, a virtio_net_hdr per frame, see
// native/peerio.c) in one native call per batch. Through io_uring that
// call makes one io_uring_enter per batch (BUN-FACTS: ~0.62 us/frame vs ~1.05 us for write() loops);
// where io_uring cannot be set up it falls back to plain read()/write() loops in C, and where the TAP
// refuses RWF_NOWAIT (Debian 12's 6.1 kernel) only reads fall back: writes stay in the ring.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import type { FrameBatch, Peer } from "./peer.ts";
import { peerio } from "./peerio-lib.ts";
import { errnoName } from "./errno.ts";

export type TapIoMode = "auto" | "uring" | "plain";
/** What a TapPeer can be asked for: a TapIoMode, or uring-writes (io_uring for writes only, as auto gives where RWF_NOWAIT is refused). */
export type TapPeerIo = TapIoMode | "uring-writes";

export interface TapPeerOptions {
  /**
   * auto: io_uring, plain loops if io_uring cannot be set up, plain reads only if the fd cannot do
   * nonblocking io_uring reads (RWF_NOWAIT); uring: io_uring for both or throw; plain: loops;
   * uring-writes: io_uring for writes and plain reads (what auto does where RWF_NOWAIT is refused).
   */
  io?: TapPeerIo;
  /** io_uring SQ entries: the most frames one io_uring_enter carries (larger batches take several). */
  ringEntries?: number;
}

const ST_SYSCALLS = 0, ST_SEND_FAILS = 1, ST_RECV_FAILS = 2, ST_LAST_ERRNO = 3, ST_URING = 4, ST_VNET = 6;
const MODE = { auto: 0, plain: 1, uring: 2, "uring-writes": 3 } as const;

/** TUNSETOFFLOAD bits (linux include/uapi/linux/if_tun.h). */
export const TAP_OFFLOAD_CSUM = 0x01;
export const TAP_OFFLOAD_TSO4 = 0x02;
export const TAP_OFFLOAD_TSO6 = 0x04;

export class TapPeer implements Peer {
  readonly kind = "tap" as const;
  readonly pollFd: number;
  readonly wake = "fd" as const;
  ffiCalls = 0;
  /** Why io_uring is not used (errno name), or null when it is / was not asked for. */
  readonly uringUnavailable: string | null;
  private ctx: number;
  private st: Uint32Array;
  private hardFails = 0;

  constructor(readonly name: string, fd: number, opts: TapPeerOptions = {}) {
    const err = new Int32Array(1);
    // QNICD_TAP_IO: the daemon's default path overridden for a diagnosis (e.g. plain on a kernel
    // whose io_uring misbehaves); the real-Xen suite measures plain against auto with it.
    const env = process.env.QNICD_TAP_IO;
    const io: TapPeerIo = opts.io ?? (env === "plain" || env === "uring" || env === "uring-writes" ? env : "auto");
    const ctx = peerio().pio_open(fd, opts.ringEntries ?? 256, MODE[io], err) as number | null;
    if (!ctx) {
      const why =
        errnoName(err[0]) === "EOPNOTSUPP"
          ? " (this kernel's TAP driver cannot do nonblocking io_uring reads and writes, RWF_NOWAIT; use io: 'auto' or 'plain')"
          : " (io_uring is off here: kernel.io_uring_disabled or a seccomp profile; use io: 'auto' or 'plain')";
      const what = err[0] === 9 ? "fd is not open (EBADF): pass the fd from the PeerHandle the backend created" : `${io === "uring" ? "io_uring_setup" : "setting up"} failed: ${errnoName(err[0])}${io === "uring" ? why : ""}`;
      throw new Error(`TAP ${name}: ${what}`);
    }
    this.ctx = ctx;
    this.pollFd = fd;
    this.st = new Uint32Array(toArrayBuffer(ctx, 0, 32));
    this.uringUnavailable = err[0] ? errnoName(err[0]) : null;
  }

  /**
   * The fd carries a virtio_net_hdr per frame (IFF_VNET_HDR, as the backend opens TAPs): send()
   * builds each from the batch's meta word (checksum offload, GSO) and receive() drops it.
   */
  get offloads(): boolean {
    return this.st[ST_VNET] !== 0;
  }

  /** True when frames move through io_uring both ways, false when reads (or both) use plain loops. */
  get usesUring(): boolean {
    return this.st[ST_URING] === 1;
  }
  /** True when sent frames move through io_uring (one io_uring_enter per batch), with or without reads. */
  get writesUseUring(): boolean {
    return this.st[ST_URING] !== 0;
  }
  /** The native/peerio.c context (its io_uring and memory), 0 once closed. */
  get reclaimAddress(): number {
    return this.ctx;
  }
  /** Syscalls made so far (io_uring_enter, or read/write): per-batch cost made visible. */
  get syscalls(): number {
    return this.st[ST_SYSCALLS];
  }
  /** Reads that failed with something other than EAGAIN (e.g. EIO while the link is down). */
  get receiveFails(): number {
    return this.st[ST_RECV_FAILS];
  }
  get drops(): number {
    return this.st[ST_SEND_FAILS] + this.hardFails;
  }
  /** errno name of the last failed frame or call, or null. */
  get lastError(): string | null {
    return this.st[ST_LAST_ERRNO] ? errnoName(this.st[ST_LAST_ERRNO]) : null;
  }

  send(batch: FrameBatch): number {
    if (batch.count === 0 || !this.ctx) return 0;
    if (batch.count > batch.capacity) throw new RangeError(`TAP ${this.name}: batch.count ${batch.count} is over its capacity ${batch.capacity}`);
    this.ffiCalls++;
    const rc = peerio().pio_send(this.ctx, batch.base, batch.stride, batch.lensAddr, batch.count, batch.metaAddr);
    if (rc < 0) {
      this.hardFails += batch.count; // the whole batch was lost (io_uring_enter itself failed)
      return 0;
    }
    return rc;
  }

  receive(batch: FrameBatch, max?: number): number {
    if (!this.ctx) return (batch.count = 0); // closed: the native context is gone
    this.ffiCalls++;
    const cap = max !== undefined && max < batch.capacity ? max : batch.capacity;
    const rc = peerio().pio_recv(this.ctx, batch.base, batch.stride, batch.lensAddr, cap, batch.metaAddr);
    batch.count = rc > 0 ? rc : 0;
    return batch.count;
  }

  /**
   * What the kernel may hand us on reads (TUNSETOFFLOAD, TAP_OFFLOAD_* bits): checksum-partial frames
   * and TCP GSO frames of up to 64 KiB, each described by its meta word. Set per vif from what its
   * frontend can take (workers/rx.ts rxOffloadFlags); 0 gives whole frames of at most the MTU. The
   * TAP may outlive a frontend (a persistent TAP, a reconnect), so it is set at every connect.
   * Throws one line naming the TAP when the kernel refuses.
   */
  setRxOffloads(flags: number): void {
    if (!this.ctx) return;
    if (flags !== 0 && !this.offloads) throw new Error(`TAP ${this.name}: rx offloads need a virtio_net_hdr (IFF_VNET_HDR) on the fd`);
    this.ffiCalls++;
    this.rxOffloadFlags = flags;
    const rc = peerio().pio_offload(this.ctx, flags);
    if (rc < 0) throw new Error(`TAP ${this.name}: TUNSETOFFLOAD 0x${flags.toString(16)} failed: ${errnoName(-rc)}`);
  }
  /** The offloads setRxOffloads() last set (0: none). */
  rxOffloadFlags = 0;

  /** Releases the ring; the TAP fd stays open (its owner, the backend, closes it). */
  close(): void {
    if (!this.ctx) return;
    this.st = this.st.slice(); // counters stay readable after the native context is gone
    peerio().pio_close(this.ctx as Pointer);
    this.ctx = 0;
  }
}
