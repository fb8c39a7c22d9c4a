// Multicast control (feature-multicast-control, xen/include/public/io/netif.h): the groups a
// frontend asked for with XEN_NETIF_EXTRA_TYPE_MCAST_ADD / _DEL extras on its tx ring, and, once
// it wrote request-multicast-control = 1, the filter on frames to it: a multicast frame (group bit
// set, not broadcast) whose destination is not on the list is dropped before it is queued or
// copied. One per vif (netback keeps fe_mcast_addr in struct xenvif, shared by its queues).
//
// As netback's xenvif_mcast_add / xenvif_mcast_del / xenvif_mcast_match (netback.c) and
// xenvif_start_xmit (interface.c): at most XEN_NETBK_MCAST_MAX addresses, an add beyond that is
// refused (the guest gets NETIF_RSP_ERROR), duplicates are not checked (each takes a place), a del
// removes the first match and always succeeds. The list may change while filtering is not
// requested; it applies only when it is.

import { XEN_NETBK_MCAST_MAX } from "../src/xen/netif.ts";

/** netback's XEN_NETBK_MCAST_MAX (common.h). */
export const MCAST_MAX = XEN_NETBK_MCAST_MAX;
const ETH_ALEN = 6;

export class McastFilter {
  /** The frontend's request-multicast-control (read at connect, watched after). */
  requested = false;
  private readonly addrs = new Uint8Array(MCAST_MAX * ETH_ALEN);
  private n = 0;
  /**
   * A multi-queue vif's adds and removes since the worker last reported them: the backend keeps the
   * vif's one list (netback's is per vif) and hands it to every queue (setList). Null: one queue.
   */
  changes: { add: boolean; group: string }[] | null = null;

  /** Bumped by every change to the list (the queue then journals it: ServedQueue.journalMcast). */
  version = 0;

  /**
   * `listKnown`: false for a vif taken over from an earlier owner (a restart, a dead worker) until
   * its list is restored from the journal (restore()): the guest will not add its groups again, so
   * without the journaled list such a vif is never filtered (it gets what a backend without
   * multicast control would give it). A journal from before the list was journaled has none.
   */
  constructor(public listKnown = true) {}

  /** Addresses on the list. */
  get count(): number {
    return this.n;
  }

  /** Whether frames to the guest are filtered right now. */
  get active(): boolean {
    return this.requested && this.listKnown;
  }

  /** MCAST_ADD of the 6 bytes at `src[at]`: false when the list is full. */
  add(src: Uint8Array, at: number): boolean {
    if (this.n === MCAST_MAX) return false;
    this.addrs.set(src.subarray(at, at + ETH_ALEN), this.n * ETH_ALEN);
    this.n++;
    this.version++;
    this.changes?.push({ add: true, group: macString(src, at) });
    return true;
  }

  /** MCAST_DEL of the 6 bytes at `src[at]`: the first match goes (none: nothing happens). */
  del(src: Uint8Array, at: number): void {
    this.changes?.push({ add: false, group: macString(src, at) });
    const i = this.find(src, at);
    if (i < 0) return;
    // Order kept, as netback's list: later adds of the same group stay behind the removed one.
    this.addrs.copyWithin(i * ETH_ALEN, (i + 1) * ETH_ALEN, this.n * ETH_ALEN);
    this.n--;
    this.version++;
  }

  /** Whether the frame whose destination MAC starts at `frame[at]` may go to the guest (only called while active). */
  passes(frame: Uint8Array, at: number): boolean {
    if ((frame[at] & 1) === 0) return true; // unicast
    if ((frame[at] & frame[at + 1] & frame[at + 2] & frame[at + 3] & frame[at + 4] & frame[at + 5]) === 0xff) return true; // broadcast
    return this.find(frame, at) >= 0;
  }

  /** The list as "xx:xx:..." strings (tests, diagnostics). */
  list(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.n; i++) out.push(macString(this.addrs, i * ETH_ALEN));
    return out;
  }

  /** The vif's list as the backend keeps it (a multi-queue vif's adds on any queue); bad entries are skipped. */
  setList(groups: readonly string[]): void {
    this.version++;
    this.n = 0;
    for (const g of groups) {
      if (this.n === MCAST_MAX || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(g)) continue;
      const o = this.n * ETH_ALEN;
      g.split(":").forEach((h, k) => (this.addrs[o + k] = Number.parseInt(h, 16)));
      this.n++;
    }
  }

  /** The list a predecessor journaled: known again, so filtering goes on as the guest asked. */
  restore(groups: readonly string[]): void {
    this.setList(groups);
    this.listKnown = true;
  }

  private find(src: Uint8Array, at: number): number {
    const a = this.addrs;
    for (let i = 0, o = 0; i < this.n; i++, o += ETH_ALEN) {
      if (a[o] === src[at] && a[o + 1] === src[at + 1] && a[o + 2] === src[at + 2] && a[o + 3] === src[at + 3] && a[o + 4] === src[at + 4] && a[o + 5] === src[at + 5]) return i;
    }
    return -1;
  }
}

function macString(src: Uint8Array, at: number): string {
  let s = "";
  for (let k = 0; k < ETH_ALEN; k++) s += (k ? ":" : "") + src[at + k].toString(16).padStart(2, "0");
  return s;
}
