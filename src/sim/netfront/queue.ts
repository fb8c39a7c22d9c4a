// One netfront queue (Linux's struct netfront_queue): its tx and rx shared rings, each a page of
// guest RAM granted to the backend, its event channel(s), the TxQueue and RxQueue that drive the
// rings, and its own counters. setup_netfront (drivers/net/xen-netfront.c) builds it in this order:
// tx ring page and grant, rx ring page and grant, then either two event channels (tx, then rx:
// setup_netfront_split) or one shared by both directions (setup_netfront_single).
import { NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE } from "../../xen/netif.ts";
import type { GuestDomain } from "../hypervisor/index.ts";
import { newCounters, type NetfrontCounters } from "./counters.ts";
import { FrontRing } from "./front-ring.ts";
import { RxQueue, type RxMeta } from "./rx-queue.ts";
import { TxQueue, type TxOffloads } from "./tx-queue.ts";

/** What one queue wrote to xenstore (and what a backend maps and binds for it). */
export interface QueueInfo {
  /** 0-based queue index (queue-<id>/ when there is more than one queue). */
  id: number;
  /** Where its keys went, relative to the frontend directory: "" (flat) or "queue-<id>". */
  dir: string;
  txRingRef: number;
  rxRingRef: number;
  /** Equal when the queue uses one event channel for both directions. */
  txPort: number;
  rxPort: number;
}

export interface QueueDeps {
  guest: GuestDomain;
  backendDomid: number;
  /** Use two event channels (the backend offered feature-split-event-channels and we want them). */
  split: boolean;
  txOffloads: TxOffloads;
  maxBacklog: number;
  onTxResponse?: (id: number, status: number) => void;
  broken(why: string): void;
  warn(what: string): void;
  deliver(frame: Uint8Array, meta: RxMeta): void;
}

/**
 * setup_netfront_split, falling back to setup_netfront_single when split is not wanted or a second
 * port cannot be had (Linux does the same). Returns [tx port, rx port], equal when single.
 */
function bindPorts(g: GuestDomain, bd: number, split: boolean): [number, number] {
  if (split) {
    const tx = g.evtchn.bindUnboundPort(bd);
    try {
      return [tx, g.evtchn.bindUnboundPort(bd)];
    } catch {
      g.evtchn.unbind(tx);
    }
  }
  const port = g.evtchn.bindUnboundPort(bd);
  return [port, port];
}

export class NetfrontQueue {
  readonly counters: NetfrontCounters = newCounters();
  readonly txRing: FrontRing;
  readonly rxRing: FrontRing;
  readonly tx: TxQueue;
  readonly rx: RxQueue;
  readonly txRingRef: number;
  readonly rxRingRef: number;
  readonly txPort: number;
  readonly rxPort: number;
  /** An rx poll is queued (NAPI_STATE_SCHED). */
  pollScheduled = false;
  private readonly txFrame: number;
  private readonly rxFrame: number;
  private readonly g: GuestDomain;

  constructor(
    readonly id: number,
    d: QueueDeps,
  ) {
    const g = (this.g = d.guest);
    const bd = d.backendDomid;
    const undo: (() => void)[] = [];
    // A zeroed page, SHARED_RING_INIT + FRONT_RING_INIT, granted to the backend (xenbus_grant_ring).
    const sharedRing = (size: number) => {
      const frame = g.allocPage();
      undo.push(() => g.freePage(frame));
      const ring = new FrontRing(g.pageView(frame), size);
      ring.init();
      const ref = g.grantAccess(bd, frame, false);
      undo.push(() => g.endAccess(ref));
      return { frame, ring, ref };
    };
    try {
      ({ frame: this.txFrame, ring: this.txRing, ref: this.txRingRef } = sharedRing(NETIF_TX_RING_SIZE));
      ({ frame: this.rxFrame, ring: this.rxRing, ref: this.rxRingRef } = sharedRing(NETIF_RX_RING_SIZE));
      [this.txPort, this.rxPort] = bindPorts(g, bd, d.split);
    } catch (e) {
      // setup_netfront's unwinding: nothing was published yet, so every grant can simply end.
      for (const u of undo.reverse()) u();
      throw e;
    }
    const txPort = this.txPort;
    const rxPort = this.rxPort;
    this.tx = new TxQueue({
      guest: g,
      backendDomid: bd,
      ring: this.txRing,
      counters: this.counters,
      notify: () => g.evtchn.notify(txPort),
      broken: d.broken,
      onResponse: d.onTxResponse,
      maxBacklog: d.maxBacklog,
      offloads: d.txOffloads,
    });
    this.rx = new RxQueue({
      guest: g,
      backendDomid: bd,
      ring: this.rxRing,
      counters: this.counters,
      queue: id,
      notify: () => g.evtchn.notify(rxPort),
      broken: d.broken,
      warn: d.warn,
      deliver: d.deliver,
    });
  }

  get split(): boolean {
    return this.txPort !== this.rxPort;
  }

  /** Where write_queue_xenstore_keys puts this queue's keys: flat with one queue, queue-<id> with more. */
  info(hierarchical: boolean): QueueInfo {
    return { id: this.id, dir: hierarchical ? `queue-${this.id}` : "", txRingRef: this.txRingRef, rxRingRef: this.rxRingRef, txPort: this.txPort, rxPort: this.rxPort };
  }

  /** write_queue_xenstore_keys' keys and values, in its order, relative to the frontend directory. */
  keys(hierarchical: boolean): [string, string][] {
    const p = hierarchical ? `queue-${this.id}/` : "";
    const out: [string, string][] = [
      [`${p}tx-ring-ref`, String(this.txRingRef)],
      [`${p}rx-ring-ref`, String(this.rxRingRef)],
    ];
    if (!this.split) out.push([`${p}event-channel`, String(this.txPort)]);
    else out.push([`${p}event-channel-tx`, String(this.txPort)], [`${p}event-channel-rx`, String(this.rxPort)]);
    return out;
  }

  /**
   * This queue's part of xennet_disconnect_backend: event channels closed (the backend's ends
   * return to unbound), every grant ended and its page freed. Returns the grants the backend still
   * had mapped (Linux defers freeing those; the pages stay allocated).
   */
  release(): number {
    for (const p of this.split ? [this.txPort, this.rxPort] : [this.txPort]) {
      try {
        this.g.evtchn.unbind(p);
      } catch {}
    }
    let leaked = this.tx.release() + this.rx.release();
    for (const [ref, frame] of [
      [this.txRingRef, this.txFrame],
      [this.rxRingRef, this.rxFrame],
    ] as const) {
      if (this.g.endAccess(ref)) this.g.freePage(frame);
      else leaked++;
    }
    return leaked;
  }
}
