// Unit-test doubles for the data path without threads or a simulated host: a ring page, a grant
// device that copies between "guest pages" held in JS and native memory (checking grants like Xen),
// a peer that records what it is sent and hands out queued frames, and plain counters.
import { toArrayBuffer } from "bun:ffi";
import type { FrameBatch, Peer } from "../../src/net/index.ts";
import type { GrantCopyBatchMemory, GrantDevice } from "../../src/platform/types.ts";
import { VIF_COUNTER_NAMES, type VifCounters } from "../../src/stats/index.ts";

export { GNTST_bad_copy_arg, GNTST_bad_gntref, GNTST_general_error } from "../../src/xen/grant-table.ts";
import { GNTST_bad_copy_arg, GNTST_bad_gntref, GNTST_general_error } from "../../src/xen/grant-table.ts";

export function counters(): VifCounters & Record<string, number> {
  const c: Record<string, number> = {};
  for (const n of VIF_COUNTER_NAMES) c[n] = 0;
  return c as unknown as VifCounters & Record<string, number>;
}

/** Pages a guest domain granted to dom0 (ref -> page), and refs granted to someone else. */
export class FakeGrants implements GrantDevice {
  readonly pages = new Map<number, Uint8Array>();
  /** Refs granted to another domain than us: GNTST_general_error, as Xen says. */
  readonly foreign = new Set<number>();
  calls = 0;
  /** Nothing native to release: the pages are JS memory. */
  readonly reclaimId = -1;
  constructor(readonly domid: number) {}

  grant(ref: number, page = new Uint8Array(4096)): Uint8Array {
    this.pages.set(ref, page);
    return page;
  }

  private check(ref: number, domid: number, offset: number, len: number): number {
    if (domid !== this.domid) return -2; // bad_domain
    if (offset + len > 4096) return GNTST_bad_copy_arg;
    if (this.foreign.has(ref)) return GNTST_general_error;
    if (!this.pages.has(ref)) return GNTST_bad_gntref;
    return 0;
  }

  copy(batch: GrantCopyBatchMemory, count: number): number {
    this.calls++;
    const u16 = new Uint16Array(batch.buffer);
    const u32 = new Uint32Array(batch.buffer);
    const i16 = new Int16Array(batch.buffer);
    let failed = 0;
    for (let i = 0; i < count; i++) {
      const len = u16[i * 12 + 8];
      const flags = u16[i * 12 + 9];
      const virt = (w: number) => u32[w] + u32[w + 1] * 4294967296;
      let st = 0;
      if (flags & 1) {
        // foreign source -> local dest (guest tx)
        const ref = u32[i * 6], off = u16[i * 12 + 2], dom = u16[i * 12 + 3];
        st = this.check(ref, dom, off, len);
        if (st === 0) new Uint8Array(toArrayBuffer(virt(i * 6 + 2), 0, len)).set(this.pages.get(ref)!.subarray(off, off + len));
      } else {
        // local source -> foreign dest (guest rx)
        const ref = u32[i * 6 + 2], off = u16[i * 12 + 6], dom = u16[i * 12 + 7];
        st = this.check(ref, dom, off, len);
        if (st === 0) this.pages.get(ref)!.set(new Uint8Array(toArrayBuffer(virt(i * 6), 0, len)), off);
      }
      i16[i * 12 + 10] = st;
      if (st) failed++;
    }
    return failed;
  }
  map(): never {
    throw new Error("not used");
  }
  close(): void {}
}

/** Records frames sent to it; hands out frames queued with give(). */
export class RecordingPeer implements Peer {
  readonly kind: Peer["kind"];
  readonly pollFd = -1;
  readonly wake = "none" as const;
  readonly drops = 0;
  /** Counted as the peer it stands in for: one native call per send() and receive(), none for a "null" stand-in. */
  ffiCalls = 0;
  private readonly native: number;
  /** None of its own; a subclass standing in for a peer that makes some adds them. */
  syscalls = 0;
  readonly reclaimAddress = 0;
  readonly sent: Uint8Array[] = [];
  sends = 0;
  private readonly inbox: Uint8Array[] = [];
  private readonly inboxMeta: number[] = [];
  /** The `max` of every receive() call (undefined: the batch's capacity). */
  readonly receiveMax: (number | undefined)[] = [];
  constructor(kind: Peer["kind"] = "switch", readonly name = "rec") {
    this.kind = kind;
    this.native = kind === "null" ? 0 : 1;
  }
  give(...frames: Uint8Array[]): void {
    this.inbox.push(...frames);
    for (const _ of frames) this.inboxMeta.push(0);
  }
  /** Queues a frame with its meta word (FRAME_META_*), as a TAP with rx offloads hands it over. */
  giveMeta(frame: Uint8Array, meta: number): void {
    this.inbox.push(frame);
    this.inboxMeta.push(meta);
  }
  get waiting(): number {
    return this.inbox.length;
  }
  send(batch: FrameBatch): number {
    this.sends++;
    this.ffiCalls += this.native;
    for (let i = 0; i < batch.count; i++) this.sent.push(new Uint8Array(toArrayBuffer(batch.base + i * batch.stride, 0, batch.lens[i])).slice());
    return batch.count;
  }
  receive(batch: FrameBatch, max?: number): number {
    this.ffiCalls += this.native;
    this.receiveMax.push(max);
    const cap = max !== undefined && max < batch.capacity ? max : batch.capacity;
    let n = 0;
    while (n < cap && this.inbox.length) {
      const f = this.inbox.shift()!;
      batch.meta[n] = this.inboxMeta.shift()!;
      const len = Math.min(f.length, batch.stride);
      new Uint8Array(toArrayBuffer(batch.base + n * batch.stride, 0, len)).set(f.subarray(0, len));
      batch.lens[n++] = f.length > batch.stride ? batch.stride : f.length;
    }
    batch.count = n;
    return n;
  }
  close(): void {}
}

/** A frame whose bytes encode its length and a seed, so a torn, shifted or swapped frame shows. */
export function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed * 13 + (i >> 8)) & 0xff;
  return f;
}

/** A shared ring page as a frontend sees it (SHARED_RING_INIT, optionally started at `at`). */
export function ringPage(at = 0) {
  const buf = new ArrayBuffer(4096);
  const w = new Uint32Array(buf);
  w[0] = w[2] = at >>> 0;
  w[1] = w[3] = (at + 1) >>> 0;
  return { buf, w, dv: new DataView(buf) };
}
