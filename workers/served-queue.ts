// One queue a worker serves: its two mapped rings, its bound ports, its rx backlog, its host side
// and its counter slot. A single-queue vif is one of these; a multi-queue vif is several, each
// connected on its own (and usually on its own worker), as netback serves each queue on its own
// threads. setUp() is all or nothing: a failing step releases what the earlier steps took and
// throws one line naming the queue and the step ("vif3.0: failed to map tx-ring-ref 9:
// bad_gntref"), like vhost-user's set_vring_*.
import { RESOURCE_MEMORY, RESOURCE_PEER, type DeviceRegistryWriter } from "../src/pool/device-registry.ts";
import type { VifConnectSpec, VifSettings } from "../src/pool/types.ts";
import { PlatformError, type EventChannelDevice, type GrantDevice, type GrantMapping } from "../src/platform/types.ts";
import { VIF_COUNTERS, VifCounters, type SlotRef, type StatsArena, type VifStats } from "../src/stats/index.ts";
import { openPeer, type Peer } from "../src/net/index.ts";
import type { TapIoMode } from "../src/net/tap.ts";
import { EPROTO, ErrnoError } from "./failure-errno.ts";
import { RxPath, rxGsoMask, rxOffloadFlags } from "./rx.ts";
import { TapPeer } from "../src/net/tap.ts";
import { SwitchPeer } from "../src/net/switch.ts";
import { SeedRxPath } from "./seed-rx.ts";
import { SeedTxPath } from "./seed-tx.ts";
import { TxPath } from "./tx.ts";
import { McastFilter } from "./mcast-filter.ts";
import type { RingJournal } from "./back-ring.ts";
import type { Timer } from "./timers.ts";
import { ServedCtrl } from "./served-ctrl.ts";
import { VifHash } from "./vif-hash.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ } from "../src/xen/ctrl-netif.ts";
import { J_LIVE, J_RX_COMMITTED, J_RX_PUBLISHED, J_TX_COMMITTED, J_TX_PUBLISHED, MappedJournal } from "../src/state/vif-journal.ts";

export interface QueueDevices {
  gnt: GrantDevice;
  ev: EventChannelDevice;
  registry: DeviceRegistryWriter;
  arena: StatsArena;
}

/** How the worker opens peers and bounds rx (from WorkerInit and the connect message). */
export interface QueuePeerOptions {
  switchAddress?: number;
  /** The worker's shared wake eventfd, for peers that can share one (switch ports: one pollFd for all of them). */
  switchWakeFd: number;
  tapIo?: TapIoMode;
  rxQueueBytes: number;
  rxStallMs: number;
  /** batched (default), or seed: QEMU qnic's per-packet algorithm (workers/seed-*.ts), a baseline. */
  datapath?: "batched" | "seed";
}

export class ServedQueue {
  readonly key: string;
  readonly name: string;
  readonly domid: number;
  txMap: GrantMapping | null = null;
  rxMap: GrantMapping | null = null;
  private txEntry = -1;
  private rxEntry = -1;
  /** Registry entries of the rx queue's memory and the peer's native context, so a dead worker's are released. */
  private queueEntry = -1;
  private peerEntry = -1;
  private registry: DeviceRegistryWriter | null = null;
  localTxPort = 0;
  localRxPort = 0;
  tx!: TxPath | SeedTxPath;
  rx!: RxPath | SeedRxPath;
  peer: Peer | null = null;
  /** The peer has frames for us (its fd was readable, or the last pass stopped at its round limit). */
  peerReady = false;
  /** The tx ring has requests to take (its port fired, the final check found some, a pass ran out of budget). */
  txPending = false;
  /** The rx side has work: rx requests posted, frames from the peer, queued frames, a stall deadline. */
  rxPending = false;
  /** In the scheduler's ready list (kept here so scheduling never searches the list). */
  scheduled = false;
  /** The rx-stall deadline's timer (workers/timers.ts), while the queue is served. */
  stallTimer: Timer | null = null;
  /** The rate limiter's next credit window (workers/tx-credit.ts), while the tx ring is held back. */
  creditTimer: Timer | null = null;
  /** Retries a counter flush that was skipped (queue-scheduler.ts flushCounters). */
  flushTimer: Timer | null = null;
  counters!: VifCounters;
  /** The groups the guest added (MCAST_ADD/DEL on tx) and whether frames to it are filtered by them. */
  mcast!: McastFilter;
  /** Set on a protocol violation: the vif is no longer served and its ports stay masked. */
  disabled = false;
  /** The control ring, when the frontend has one; the hash state its requests set (always present: algorithm NONE until set). */
  ctrl: ServedCtrl | null = null;
  readonly hash: VifHash;
  /** The vif's journal, kept mapped for as long as the rings stage responses in it. */
  private journal: MappedJournal | null = null;
  /** McastFilter.version when the list was last journaled. */
  private savedMcastVersion = 0;

  constructor(readonly spec: VifConnectSpec) {
    this.key = spec.key;
    this.name = spec.name;
    this.domid = spec.frontendDomid;
    this.hash = new VifHash(spec.queues ?? 1);
  }

  setUp(d: QueueDevices, slot: SlotRef, carry: Partial<VifStats> | undefined, po: QueuePeerOptions): void {
    const s = this.spec;
    this.registry = d.registry;
    try {
      [this.txMap, this.txEntry] = this.mapRing(d, "tx-ring-ref", s.txRingRef);
      [this.rxMap, this.rxEntry] = this.mapRing(d, "rx-ring-ref", s.rxRingRef);
      const seed = po.datapath === "seed";
      const [jtx, jrx] = this.openJournal();
      // The seed never negotiates SG/GSO (features.ts) and answers such packets with errors regardless.
      const f = s.features;
      // A taken-over vif's multicast list died with its earlier owner: never filtered (mcast-filter.ts).
      this.mcast = new McastFilter(s.adopt !== true);
      // A multi-queue vif's list is one for the vif (netback's): each queue reports its changes and
      // the backend hands every queue the vif's list (applySettings).
      if ((s.queues ?? 1) > 1) this.mcast.changes = [];
      this.mcast.requested = s.settings?.multicastControl === true;
      // Taken over: queue 0's journal holds the vif's list as its predecessor last had it.
      const savedGroups = s.adopt === true && (s.queue ?? 0) === 0 ? this.journal?.loadMcast() : null;
      if (savedGroups) this.mcast.restore(savedGroups);
      this.savedMcastVersion = this.mcast.version;
      const txFeatures = { sg: f["feature-sg"] === true, gso: f["feature-gso-tcpv4"] === true || f["feature-gso-tcpv6"] === true, hashExtras: s.ctrlRingRef !== undefined };
      this.tx = seed ? new SeedTxPath(this.txMap.buffer, this.domid, jtx) : new TxPath(this.txMap.buffer, this.domid, txFeatures, jtx, { rate: s.settings?.rate ?? null, mcast: this.mcast });
      const bad = this.tx.attachError();
      if (bad) throw new ErrnoError(`${this.name}: ${bad}`, EPROTO);
      // Guest rx as the frontend asked (feature-sg, -gso-*, -rx-notify); the seed keeps one slot per frame.
      const rxOpts = { sg: f["feature-sg"] === true, gsoMask: rxGsoMask(f), rxNotify: f["feature-rx-notify"] === true };
      this.rx = seed ? new SeedRxPath(this.rxMap.buffer, this.domid, po.rxQueueBytes, po.rxStallMs, jrx, { rxNotify: rxOpts.rxNotify }) : new RxPath(this.rxMap.buffer, this.domid, po.rxQueueBytes, po.rxStallMs, jrx, rxOpts);
      if (this.rx instanceof RxPath) this.rx.mcast = this.mcast;
      this.queueEntry = this.record(RESOURCE_MEMORY, this.rx.queue.base, "its rx queue");
      const badRx = this.rx.attachError();
      if (badRx) throw new ErrnoError(`${this.name}: ${badRx}`, EPROTO);
      if (this.rx instanceof RxPath) this.rx.hash = this.hash;
      this.peer = this.openPeer(po);
      this.setRxOffloads(seed);
      if (this.peer.reclaimAddress) this.peerEntry = this.record(RESOURCE_PEER, this.peer.reclaimAddress, "its peer");
      this.localTxPort = this.bind(d, s.txEvtchn);
      // One event channel for both rings (no feature-split-event-channels): bind it once.
      this.localRxPort = s.rxEvtchn === s.txEvtchn ? this.localTxPort : this.bind(d, s.rxEvtchn);
      // The seed notifies per response, from inside its paths.
      if (s.ctrlRingRef !== undefined && s.ctrlEvtchn !== undefined) this.ctrl = new ServedCtrl(d, this.name, this.domid, s.ctrlRingRef, s.ctrlEvtchn, this.hash);
      // Taken over: the hash the frontend configured lives on in the journal (it will not configure
      // it again: it never learns of the restart), and so does the host side's queue choice.
      const saved = s.adopt === true && this.ctrl ? this.journal?.loadHash() : null;
      if (saved) {
        this.hash.apply(saved);
        this.steerPeer();
      }
      if (this.tx instanceof SeedTxPath) this.tx.notifyTarget = { ev: d.ev, port: this.localTxPort };
      if (this.rx instanceof SeedRxPath) this.rx.notifyTarget = { ev: d.ev, port: this.localRxPort };
      this.counters = new VifCounters(d.arena, slot);
    } catch (e) {
      this.tearDown(d);
      throw e;
    }
    const c = this.counters as unknown as Record<string, number>;
    for (const row of VIF_COUNTERS) if (row.kind === "counter") c[row.name] += carry?.[row.name] ?? 0;
    this.counters.carrier = 1;
    this.counters.flush();
    this.markJournalLive();
  }

  /**
   * New B/rate or request-multicast-control from the backend. Returns true when the tx ring should
   * be served now (a held-back packet may go: the rate changed while throttled).
   */
  /** Ms until a throttled tx ring's credit window opens, or -1 when it is not held back (the seed has no limiter). */
  creditDueIn(now: number): number {
    return this.tx instanceof TxPath ? this.tx.credit.timerDueIn(now) : -1;
  }

  /** The credit window opened at `now`: fresh credit added, the ring may be served again. */
  creditDue(now: number): boolean {
    return this.tx instanceof TxPath && this.tx.credit.due(now);
  }

  applySettings(settings: VifSettings): boolean {
    if (this.mcast) this.mcast.requested = settings.multicastControl;
    if (settings.hash) {
      this.hash.apply(settings.hash);
      this.steerPeer();
    }
    if (settings.mcastGroups && this.mcast) {
      if (settings.mcastRestored) this.mcast.restore(settings.mcastGroups);
      else this.mcast.setList(settings.mcastGroups);
      this.journalMcast();
    }
    if (!(this.tx instanceof TxPath)) return false;
    const credit = this.tx.credit;
    // The same rate again (the message carried another setting): the credit window runs on untouched.
    const was = credit.rate, now = settings.rate;
    if (was === now || (was !== null && now !== null && was.bytes === now.bytes && was.usecs === now.usecs)) return false;
    const wasThrottled = credit.throttled;
    credit.set(now);
    return wasThrottled;
  }

  /**
   * Queue 0 journals the vif's multicast list whenever it changed (its own MCAST extras, or the
   * backend's list for a multi-queue vif), so a successor filters on as the guest asked.
   */
  journalMcast(): void {
    const m = this.mcast;
    if (!m || m.version === this.savedMcastVersion || !this.journal || (this.spec.queue ?? 0) !== 0) return;
    this.savedMcastVersion = m.version;
    this.journal.saveMcast(m.list());
  }

  /** This queue's control ring changed the hash: the host side follows, the journal keeps it for a successor. */
  onHashChange(): void {
    this.steerPeer();
    this.journal?.saveHash(this.hash.snapshot());
  }

  /**
   * The hash configuration changed (this queue's control ring, or another queue's through the
   * backend): a host side that picks the vif's guest-rx queue in this worker (the switch) follows
   * it, as netback's xenvif_select_queue does. A TAP's queue choice is the main thread's (the
   * kernel picks; src/net/tap-steering.ts).
   */
  steerPeer(): void {
    const h = this.hash;
    if (!this.peer?.steer) return;
    this.peer.steer(h.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ && h.queues > 1 ? { queues: h.queues, flags: h.flags, key: h.key, size: h.size, mapping: h.mapping } : null);
  }

  /** Releases everything set up so far; safe to call twice and after a partial setUp(). */
  tearDown(d: QueueDevices): void {
    this.closePeer();
    this.ctrl?.close(d);
    this.ctrl = null;
    if (this.queueEntry >= 0) d.registry.removeMapping(this.queueEntry); // forget first: a death in between leaks, never double-frees
    this.queueEntry = -1;
    this.rx?.close();
    if (this.counters) {
      this.counters.carrier = 0;
      this.counters.flush();
    }
    for (const port of new Set([this.localTxPort, this.localRxPort])) {
      if (port === 0) continue;
      try {
        d.ev.unbind(port);
      } catch {
        // already gone (the frontend's domain died): nothing left to release
      }
    }
    this.localTxPort = this.localRxPort = 0;
    if (this.txMap) {
      this.txMap.unmap();
      d.registry.removeMapping(this.txEntry);
      this.txMap = null;
    }
    if (this.rxMap) {
      this.rxMap.unmap();
      d.registry.removeMapping(this.rxEntry);
      this.rxMap = null;
    }
  }

  /**
   * Stops moving frames to and from the host side (a disabled vif's TAP fd must leave the poll set).
   * The rings keep being served: every tx request is still answered, its frame counted in tx_drops.
   */
  closePeer(): void {
    if (this.peerEntry >= 0) this.registry?.removeMapping(this.peerEntry);
    this.peerEntry = -1;
    this.peer?.close();
    this.peer = this.peer ? new GonePeer(this.spec.peer.name) : null;
    this.peerReady = false;
  }

  /**
   * A TAP (or switch port) hands over GSO and checksum-partial frames only to a vif whose frontend
   * takes them (the TAP may have served another frontend before: set at every connect, off included).
   */
  private setRxOffloads(seed: boolean): void {
    const p = this.peer;
    const flags = seed ? 0 : rxOffloadFlags(this.spec.features);
    if (p instanceof SwitchPeer) {
      // Its frames always carry meta words; what the guest cannot take is finished in the switch.
      p.setRxOffloads(flags);
      if (this.rx instanceof RxPath) this.rx.peerMeta = true;
      return;
    }
    if (!(p instanceof TapPeer) || !p.offloads) return;
    try {
      p.setRxOffloads(flags);
    } catch (e) {
      throw new Error(`${this.name}: ${reason(e)}`, { cause: e });
    }
    if (this.rx instanceof RxPath) this.rx.peerMeta = flags !== 0;
  }

  /** The rings' journals, or none (responses then staged in private memory: nothing to take over from). */
  private openJournal(): [RingJournal | null, RingJournal | null] {
    const path = this.spec.journal;
    if (path === undefined) return [null, null];
    let j: MappedJournal;
    try {
      j = MappedJournal.open(path);
    } catch (e) {
      throw new Error(`${this.name}: ${(e as Error).message}`, { cause: e });
    }
    // A journal no worker attached yet: its owner died before serving a single request, so it
    // wrote no response and the ring's rsp_prod is the truth.
    const adopt = this.spec.adopt === true && Atomics.load(j.words, J_LIVE) === 1;
    this.journal = j;
    return [
      { words: j.words, published: J_TX_PUBLISHED, committed: J_TX_COMMITTED, staging: j.stagingBytes("tx"), adopt },
      { words: j.words, published: J_RX_PUBLISHED, committed: J_RX_COMMITTED, staging: j.stagingBytes("rx"), adopt },
    ];
  }

  /** Marks the journal as holding this vif's ring state (after both rings attached cleanly). */
  markJournalLive(): void {
    if (this.journal) Atomics.store(this.journal.words, J_LIVE, 1);
  }

  /** Responses published again at attach, per ring (a predecessor died mid-publish). */
  get replayed(): { tx: number; rx: number } {
    return { tx: this.tx?.replayed ?? 0, rx: this.rx?.replayed ?? 0 };
  }

  private record(kind: typeof RESOURCE_MEMORY | typeof RESOURCE_PEER, addr: number, what: string): number {
    const e = this.registry!.addResource(kind, addr);
    if (e < 0) throw new Error(`${this.name}: cannot record ${what}: the worker's resource table is full`);
    return e;
  }

  private openPeer(po: QueuePeerOptions): Peer {
    const h = this.spec.peer;
    try {
      return openPeer(h, { switchAddress: po.switchAddress, tapIo: po.tapIo, sharedWakeFd: po.switchWakeFd });
    } catch (e) {
      throw new Error(`${this.name}: opening its peer failed: ${reason(e)}`, { cause: e });
    }
  }

  private mapRing(d: QueueDevices, node: string, ref: number): [GrantMapping, number] {
    let m: GrantMapping;
    try {
      m = d.gnt.map(this.domid, [ref], true);
    } catch (e) {
      throw new Error(`${this.name}: failed to map ${node} ${ref}: ${reason(e)}`, { cause: e });
    }
    const entry = d.registry.addMapping(m.addr, m.pages);
    if (entry < 0) {
      m.unmap();
      throw new Error(`${this.name}: failed to map ${node} ${ref}: the worker's mapping table is full`);
    }
    return [m, entry];
  }

  private bind(d: QueueDevices, remotePort: number): number {
    try {
      return d.ev.bindInterdomain(this.domid, remotePort);
    } catch (e) {
      throw new Error(`${this.name}: failed to bind event-channel ${remotePort} of dom${this.domid}: ${reason(e)}`, { cause: e });
    }
  }
}

/** The host side after it broke: takes nothing (the tx path counts every frame as dropped), gives nothing. */
class GonePeer implements Peer {
  readonly kind = "null" as const;
  readonly pollFd = -1;
  readonly wake = "none" as const;
  readonly drops = 0;
  readonly ffiCalls = 0;
  readonly syscalls = 0;
  readonly reclaimAddress = 0;
  constructor(readonly name: string) {}
  send(): number {
    return 0;
  }
  receive(batch: { count: number }): number {
    return (batch.count = 0);
  }
  close(): void {}
}

/** The short cause: GNTST name or errno name for platform errors, else the message. */
function reason(e: unknown): string {
  if (e instanceof PlatformError) return e.code.replace(/^GNTST_/, "");
  return e instanceof Error ? e.message : String(e);
}
