// The in-daemon learning switch (native/l2switch.c): vifs on any worker thread exchange frames
// through one shared mapping the main thread creates. The main thread holds a SwitchFabric and hands
// its `address` to workers; a worker opens a SwitchPeer on it per vif (PeerHandle kind "switch").
// Per batch: one native call to send (learn, look up, enqueue, wake) and one to receive. Frames keep
// their meta word across (a guest's 64 KiB GSO packet and partial checksums cross whole); a port
// whose guest cannot take them gets them finished on receive (segmented, checksums completed: see
// setRxOffloads), as a TAP whose offloads are off gets them from the kernel.
import { dlopen, FFIType, toArrayBuffer, type Pointer } from "bun:ffi";
import { nativeLibraryPath } from "../native/lib.ts";
import { errnoName } from "./errno.ts";
import type { FrameBatch, Peer } from "./peer.ts";
import type { SteeringConfig } from "./steering-program.ts";
import { XEN_NETBK_MAX_HASH_KEY_SIZE, XEN_NETBK_MAX_HASH_MAPPING_SIZE } from "../xen/netif.ts";

function open() {
  return dlopen(nativeLibraryPath("l2switch"), {
    sw_create: { args: [FFIType.u32, FFIType.u32, FFIType.u32, FFIType.u32, FFIType.ptr], returns: FFIType.ptr },
    sw_destroy: { args: [FFIType.ptr], returns: FFIType.i32 },
    sw_check: { args: [FFIType.ptr], returns: FFIType.i32 },
    sw_port_open: { args: [FFIType.ptr, FFIType.cstring, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sw_port_close: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    sw_port_find: { args: [FFIType.ptr, FFIType.cstring], returns: FFIType.i32 },
    sw_send: { args: [FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
    sw_recv: { args: [FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
    sw_port_accept: { args: [FFIType.ptr, FFIType.u32, FFIType.u32], returns: FFIType.i32 },
    sw_port_steer: { args: [FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.u32, FFIType.u32, FFIType.u32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    sw_lookup: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    sw_eventfd: { args: [], returns: FFIType.i32 },
    sw_close_fd: { args: [FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}
let lib: ReturnType<typeof open> | undefined;
const sw = () => (lib ??= open());

// Mirrors struct sw_hdr / struct sw_port in native/l2switch.c.
const HDR_BYTES = 4096;
const PORT_BYTES = 256;
const H_NPORTS = 4, H_SKEW = 24, H_PORTS_OFF = 32;
const P = { rxFrames: 72, rxDropped: 80, wakes: 88, rxOversize: 136, txFrames: 144, txDropped: 152, txFlooded: 160 } as const;

export interface SwitchOptions {
  /** Most ports (vifs) at once, 1..256. */
  ports?: number;
  /** Inbound ring per port in bytes (frames past it are dropped and counted); >= 16384, multiple of 8; frames over half of it may never fit. */
  ringBytes?: number;
  /** MAC table buckets (4 MACs each), a power of two. */
  macBuckets?: number;
  /** A learned MAC is forgotten after this long without a frame from it (Linux bridge: 300 s). */
  agingMs?: number;
}

/** The switch's shared memory; created and destroyed by the main thread. */
export class SwitchFabric {
  readonly address: number;
  private destroyed = false;

  constructor(opts: SwitchOptions = {}) {
    const err = new Int32Array(1);
    const ports = opts.ports ?? 64, ring = opts.ringBytes ?? 1 << 20, buckets = opts.macBuckets ?? 1024, age = opts.agingMs ?? 300_000;
    const addr = sw().sw_create(ports, ring, buckets, age, err) as number | null;
    if (!addr)
      throw new Error(`creating the switch (${ports} ports x ${ring} B rings) failed: ${errnoName(err[0])}${err[0] === 22 ? " (ports 1..256, ringBytes >= 16384 and a multiple of 8, macBuckets a power of two)" : " (lower ports or ringBytes)"}`);
    this.address = addr;
  }

  /** Moves the switch's clock forward (tests age MAC entries without waiting). */
  advanceClock(ms: number): void {
    const v = new BigInt64Array(toArrayBuffer(this.address, H_SKEW, 8));
    v[0] += BigInt(ms);
  }

  /**
   * Closes the port named `name` if it is open, from the main thread: for ports a dead worker left
   * behind (their vifs reopen them elsewhere). Returns whether one was open. Never use it for a port
   * a live worker still serves.
   */
  closePortByName(name: string): boolean {
    if (this.destroyed) return false;
    const idx = sw().sw_port_find(this.address as Pointer, Buffer.from(`${name}\0`));
    if (idx < 0) return false;
    sw().sw_port_close(this.address as Pointer, idx);
    return true;
  }

  /** Unmaps the switch. Every port must be closed first (workers stopped). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    sw().sw_destroy(this.address as Pointer);
  }
}

export interface SwitchPortOptions {
  /**
   * An eventfd shared by several ports of one worker (one pollFd for all of them): the worker then
   * clears it itself and calls receive() on every port sharing it. Default: the port makes its own
   * eventfd and clears it in receive().
   */
  wakeFd?: number;
}

/** One vif's port on the switch; opened in the worker that serves the vif. */
export class SwitchPeer implements Peer {
  readonly kind = "switch" as const;
  /** Takes checksum-partial and GSO frames (their meta words cross the switch; receivers finish what they cannot take). */
  readonly offloads = true;
  /** What this port's guest takes (TAP_OFFLOAD_* bits); 0 until setRxOffloads. */
  rxOffloadFlags = 0;
  readonly pollFd: number;
  readonly wake: "fd" | "shared";
  ffiCalls = 0;
  /** The wake write() a send makes for a port on another worker is not counted (no one is charged). */
  readonly syscalls = 0;
  /** Its slot lives in the fabric, which the main thread owns and cleans (closePortByName). */
  readonly reclaimAddress = 0;
  readonly index: number;
  private readonly ownFd: boolean;
  private readonly fabric: number;
  private counters: Float64Array | null = null;
  private view: Uint32Array;
  private closed = false;

  constructor(fabricAddress: number, readonly name: string, opts: SwitchPortOptions = {}) {
    if (sw().sw_check(fabricAddress as Pointer) !== 0) throw new Error(`switch port ${name}: address ${fabricAddress} is not a live switch: pass SwitchFabric.address from the main thread`);
    this.fabric = fabricAddress;
    this.ownFd = opts.wakeFd === undefined;
    this.wake = this.ownFd ? "fd" : "shared";
    const fd = opts.wakeFd ?? sw().sw_eventfd();
    if (fd < 0) throw new Error(`switch port ${name}: eventfd failed: ${errnoName(-fd)}`);
    const idx = sw().sw_port_open(fabricAddress, Buffer.from(`${name}\0`), fd, this.ownFd ? 1 : 0);
    if (idx < 0) {
      if (this.ownFd) sw().sw_close_fd(fd);
      const why = -idx === 17 ? "a port by that name is open" : -idx === 28 ? "every port is in use (raise SwitchOptions.ports)" : -idx === 36 ? "name must be 1..31 bytes" : errnoName(-idx);
      throw new Error(`opening switch port ${name} failed: ${why}`);
    }
    this.index = idx;
    this.pollFd = fd;
    const hdr = new Uint32Array(toArrayBuffer(fabricAddress, 0, HDR_BYTES));
    const portsOff = hdr[H_PORTS_OFF / 4];
    if (idx >= hdr[H_NPORTS / 4]) throw new Error("switch layout mismatch");
    this.view = new Uint32Array(toArrayBuffer(fabricAddress, portsOff + idx * PORT_BYTES, PORT_BYTES));
  }

  private u64(off: number): number {
    if (this.counters) return this.counters[off / 8];
    return this.view[off / 4] + this.view[off / 4 + 1] * 4294967296;
  }
  /** Frames for this port dropped because its ring was full (its guest was not draining). */
  get drops(): number {
    return this.u64(P.rxDropped) + this.u64(P.rxOversize);
  }
  get stats() {
    return {
      rxFrames: this.u64(P.rxFrames), rxDropped: this.u64(P.rxDropped), rxOversize: this.u64(P.rxOversize), wakes: this.u64(P.wakes),
      txFrames: this.u64(P.txFrames), txDropped: this.u64(P.txDropped), txFlooded: this.u64(P.txFlooded),
    };
  }

  send(batch: FrameBatch): number {
    if (batch.count === 0 || this.closed) return 0; // closed: the slot may belong to another vif now
    if (batch.count > batch.capacity) throw new RangeError(`switch port ${this.name}: batch.count ${batch.count} is over its capacity ${batch.capacity}`);
    this.ffiCalls++;
    const rc = sw().sw_send(this.fabric, this.index, batch.base, batch.stride, batch.lensAddr, batch.count, batch.metaAddr);
    return rc > 0 ? rc : 0;
  }

  /**
   * Fills the batch, meta words included. A GSO frame takes one slot per MSS-sized segment when this
   * port does not accept its type, so fewer frames than slots may come back while more wait.
   */
  receive(batch: FrameBatch, max?: number): number {
    if (this.closed) return (batch.count = 0);
    this.ffiCalls++;
    const cap = max !== undefined && max < batch.capacity ? max : batch.capacity;
    const rc = sw().sw_recv(this.fabric, this.index, batch.base, batch.stride, batch.lensAddr, cap, batch.metaAddr);
    batch.count = rc > 0 ? rc : 0;
    return batch.count;
  }

  /**
   * What this port's guest takes, as a TAP's TUNSETOFFLOAD (TAP_OFFLOAD_CSUM / _TSO4 / _TSO6): frames
   * asking more are segmented and their checksums completed in receive(). 0 (as opened): finished
   * frames of at most the sender's MTU only.
   */
  setRxOffloads(flags: number): void {
    if (this.closed) return;
    this.rxOffloadFlags = flags;
    sw().sw_port_accept(this.fabric as Pointer, this.index, flags);
  }

  /**
   * Frames for this vif go to the port of the queue the frontend's hash names (native/l2switch.c
   * sw_port_steer), or to the port the destination MAC was learned on again for null. Each of the
   * vif's queue ports is told the same configuration by its own worker. A configuration the switch
   * refuses (it was bounded twice before: VifHash) leaves steering off.
   */
  steer(c: SteeringConfig | null): void {
    if (this.closed) return;
    if (c === null) {
      sw().sw_port_steer(this.fabric as Pointer, this.index, 0, 0, 0, 0, null, null);
      return;
    }
    const key = new Uint8Array(XEN_NETBK_MAX_HASH_KEY_SIZE);
    key.set(Array.from(c.key).slice(0, key.length));
    const size = Math.min(c.size, XEN_NETBK_MAX_HASH_MAPPING_SIZE);
    const mapping = new Uint8Array(Math.max(size, 1));
    for (let i = 0; i < size; i++) mapping[i] = Math.min(c.mapping[i] ?? 0, 255);
    const rc = sw().sw_port_steer(this.fabric as Pointer, this.index, 1, c.queues, c.flags, size, key, mapping);
    if (rc < 0) sw().sw_port_steer(this.fabric as Pointer, this.index, 0, 0, 0, 0, null, null);
  }

  /** The port a MAC ("xx:.." bytes) was learned on, or -1. */
  lookup(mac: Uint8Array): number {
    return sw().sw_lookup(this.fabric as Pointer, mac);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.stats;
    const c = new Float64Array(PORT_BYTES / 8);
    for (const [k, off] of Object.entries(P)) c[off / 8] = s[k as keyof typeof s];
    this.counters = c; // counters stay readable after the slot is reused
    sw().sw_port_close(this.fabric, this.index);
    if (this.ownFd) sw().sw_close_fd(this.pollFd);
  }
}
