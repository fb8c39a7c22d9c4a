// A vif's hash configuration, as its frontend sets it over the control ring (workers/ctrl-ring.ts),
// and what the data path asks of it: the hash of a frame (the guest-rx hash extra) and the queue a
// frame goes to. Every setter is one operation of Linux netback's drivers/net/xen-netback/hash.c
// with the same checks in the same order and the same XEN_NETIF_CTRL_STATUS_* answers.
//
// The mapping table is double-buffered as netback's (hash.mapping[2] and mapping_sel): a
// SET_HASH_MAPPING is built in the inactive table, from a copy of the active one, checked entry by
// entry against the queue count, and only then made active, so a table naming a queue that does
// not exist never selects a queue. It lives in the worker that serves the vif's rings, the only
// thread that reads it, so no lock is needed.
//
// Lifetime: a fresh state (algorithm NONE) on every connect. A take-over by a restarted qnicd starts
// from what the control ring's worker journaled at each change (src/state/vif-journal.ts saveHash):
// the guest never learns of the restart, so it would not configure hashing again (netback loses the
// state when its driver is unbound, but its frontend reconnects and configures it anew).
import { FlowHasher } from "../src/net/toeplitz.ts";
import type { HashConfig } from "../src/pool/types.ts";
import {
  XEN_NETBK_MAX_HASH_KEY_SIZE,
  XEN_NETBK_MAX_HASH_MAPPING_COPY,
  XEN_NETBK_MAX_HASH_MAPPING_SIZE,
  XEN_NETIF_CTRL_HASH_ALGORITHM_NONE,
  XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ,
  XEN_NETIF_CTRL_HASH_TYPES_ALL,
  XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER as INVALID,
  XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED as NOT_SUPPORTED,
  XEN_NETIF_CTRL_STATUS_SUCCESS as SUCCESS,
} from "../src/xen/ctrl-netif.ts";

/**
 * The key queue selection uses while the frontend configured no hash (algorithm NONE): the usual
 * RSS default key. Netback picks by the kernel's own flow hash then (netdev_pick_tx); any hash that
 * keeps a flow on one queue does, and this one needs no second implementation.
 */
const DEFAULT_KEY = Uint8Array.from([
  0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
  0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
]);

/** SET_HASH_MAPPING's bounds, before anything is copied: off + len must not wrap or pass the table size, len at most a page of entries. */
export function mappingBoundsOk(size: number, len: number, off: number): boolean {
  const end = (off + len) >>> 0;
  return end >= off >>> 0 && end <= size && len >>> 0 <= XEN_NETBK_MAX_HASH_MAPPING_COPY;
}

export class VifHash {
  /** Bumped by every change a control-ring request makes (the worker then shares the new configuration). */
  version = 0;
  alg: number = XEN_NETIF_CTRL_HASH_ALGORITHM_NONE;
  flags = 0;
  readonly key = new Uint8Array(XEN_NETBK_MAX_HASH_KEY_SIZE);
  /** Entries of the mapping table in use (0: queue = hash % queues). */
  size = 0;
  private readonly tables = [new Uint32Array(XEN_NETBK_MAX_HASH_MAPPING_SIZE), new Uint32Array(XEN_NETBK_MAX_HASH_MAPPING_SIZE)];
  private sel = 0;
  private readonly hasher = new FlowHasher();
  /** What hashFrame() found: the value and the _XEN_NETIF_CTRL_HASH_TYPE_* bit number a hash extra carries. */
  value = 0;
  type = -1;

  /** `queues`: the vif's queue count (mapping entries must name one of them). */
  constructor(readonly queues: number) {}

  /** The active mapping table (its first `size` entries count). */
  get mapping(): Uint32Array {
    return this.tables[this.sel];
  }

  /** xenvif_set_hash_alg. */
  setAlgorithm(alg: number): number {
    if (alg !== XEN_NETIF_CTRL_HASH_ALGORITHM_NONE && alg !== XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ) return INVALID;
    this.alg = alg;
    this.version++;
    return SUCCESS;
  }

  /** xenvif_get_hash_flags: the status; the flags supported (every type) are XEN_NETIF_CTRL_HASH_TYPES_ALL. */
  getFlags(): number {
    return this.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_NONE ? NOT_SUPPORTED : SUCCESS;
  }

  /** xenvif_set_hash_flags: unknown bits first, then "no algorithm yet". */
  setFlags(flags: number): number {
    if ((flags >>> 0) & ~XEN_NETIF_CTRL_HASH_TYPES_ALL) return INVALID;
    if (this.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_NONE) return INVALID;
    this.flags = flags >>> 0;
    this.version++;
    return SUCCESS;
  }

  /**
   * xenvif_set_hash_key, after its grant copy: `copied` holds the `len` bytes read from the
   * frontend's grant, or is null when that copy failed (the key then stays as it was). The octets
   * past `len` are cleared. The caller refused len > XEN_NETBK_MAX_HASH_KEY_SIZE before copying.
   */
  setKey(copied: Uint8Array | null, len: number): number {
    if (len > XEN_NETBK_MAX_HASH_KEY_SIZE) return INVALID;
    if (len !== 0 && copied === null) return INVALID;
    if (len !== 0) this.key.set(copied!.subarray(0, len));
    this.key.fill(0, len);
    this.version++;
    return SUCCESS;
  }

  /** xenvif_set_hash_mapping_size: the active table's first `size` entries are zeroed (queue 0 always exists). */
  setMappingSize(size: number): number {
    if (size >>> 0 > XEN_NETBK_MAX_HASH_MAPPING_SIZE) return INVALID;
    this.size = size;
    this.tables[this.sel].fill(0, 0, size);
    this.version++;
    return SUCCESS;
  }

  /**
   * xenvif_set_hash_mapping, after its grant copy: `entries` holds the `len` u32 entries read from
   * the frontend's grant (null: the copy failed). Built in the inactive table and made active only
   * when every new entry names an existing queue.
   */
  setMapping(entries: Uint32Array | null, len: number, off: number): number {
    if (!mappingBoundsOk(this.size, len, off)) return INVALID;
    const next = this.tables[this.sel ^ 1];
    next.set(this.tables[this.sel].subarray(0, this.size));
    if (len !== 0) {
      if (entries === null) return INVALID;
      next.set(entries.subarray(0, len), off);
    }
    for (let i = off; i < off + len; i++) if (next[i] >= this.queues) return INVALID;
    this.sel ^= 1;
    this.version++;
    return SUCCESS;
  }

  /** The configuration as plain data (to share with the vif's other queues). */
  snapshot(): HashConfig {
    return { alg: this.alg, flags: this.flags, key: Array.from(this.key), size: this.size, mapping: Array.from(this.mapping.subarray(0, this.size)) };
  }

  /**
   * Takes on the configuration another queue's control ring set. It was validated there; it is
   * bounded again here all the same (it crossed two threads as JSON), and dropped if out of bounds.
   */
  apply(c: HashConfig): void {
    if (c.key.length > XEN_NETBK_MAX_HASH_KEY_SIZE || c.size > XEN_NETBK_MAX_HASH_MAPPING_SIZE || c.mapping.length > c.size) return;
    if (c.mapping.some((q) => !(q >= 0 && q < this.queues))) return;
    if (c.alg !== XEN_NETIF_CTRL_HASH_ALGORITHM_NONE && c.alg !== XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ) return;
    this.alg = c.alg;
    this.flags = (c.flags >>> 0) & XEN_NETIF_CTRL_HASH_TYPES_ALL;
    this.key.fill(0).set(c.key);
    this.size = c.size;
    const next = this.tables[this.sel ^ 1];
    next.fill(0, 0, c.size).set(c.mapping);
    this.sel ^= 1;
  }

  /**
   * The frame's hash under the frontend's configuration (xenvif_set_skb_hash): true with `value`
   * and `type` set when the algorithm is Toeplitz and the frame is of an enabled type.
   */
  hashFrame(frame: Uint8Array, off: number, len: number): boolean {
    if (this.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_NONE || this.flags === 0) return this.none();
    const h = this.hasher;
    if (!h.hash(frame, off, len, this.flags, this.key, XEN_NETBK_MAX_HASH_KEY_SIZE)) return this.none();
    this.value = h.value;
    this.type = h.type;
    return true;
  }

  private none(): boolean {
    this.value = 0;
    this.type = -1;
    return false;
  }

  /**
   * The guest-rx queue for a frame (netback's xenvif_select_queue): with one queue, 0. With a hash
   * configured, the mapping table's entry hash % size, or hash % queues when the table is empty; a
   * frame with no hash of an enabled type counts as hash 0, as Linux clears the skb's hash. With no
   * hash configured, a flow hash of the frame's addresses and TCP ports % queues.
   */
  selectQueue(frame: Uint8Array, off: number, len: number): number {
    const queues = this.queues;
    if (queues <= 1) return 0;
    if (this.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_NONE) {
      const h = this.hasher;
      const v = h.hash(frame, off, len, XEN_NETIF_CTRL_HASH_TYPES_ALL, DEFAULT_KEY, DEFAULT_KEY.length) ? h.value : 0;
      return v % queues;
    }
    const v = this.hashFrame(frame, off, len) ? this.value : 0;
    return this.size === 0 ? v % queues : this.tables[this.sel][v % this.size];
  }
}
