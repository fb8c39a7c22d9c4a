// A simulated guest's netfront: the xenbus side of Linux's xen-netfront (probe, netback_changed,
// xennet_connect/talk_to_netback, xenbus_frontend_closed, xennet_remove) and the reset walk of
// xenbus_reset_frontend, driving one NetfrontQueue (rings, event channels, TxQueue, RxQueue) per
// negotiated queue. Queues are negotiated as talk_to_netback does: min(B/multi-queue-max-queues,
// xennet_max_queues), the latter min(8, vCPUs) unless set (xen_netfront.max_queues); split event
// channels when the backend offers them. A backend meets what a real Linux guest writes and does.
//
//   const nf = await createNetfront({ dir, domid, devid });
//   nf.onReceive((frame) => ...);
//   await nf.whenConnected();
//   nf.send(frame);
import { XenbusState, xenbusStateName } from "../../xen/xenbus-state.ts";
import { XenstoreClient, type XsTrace } from "../../xenstore/index.ts";
import { openGuestDomain, type GuestDomain } from "../hypervisor/index.ts";
import { simPaths } from "../paths.ts";
import { addCounters, newCounters, totalsView, type NetfrontCounters } from "./counters.ts";
import { EventWaker } from "./event-waker.ts";
import { DEFAULT_FLOW_HASH_SEED, selectQueue } from "./flow-hash.ts";
import { createResponder, parseIPv4, parseMac, formatMac, type Responder } from "./frames.ts";
import type { FrontRing } from "./front-ring.ts";
import { NetfrontQueue, type QueueInfo } from "./queue.ts";
import { CtrlClient, type CtrlHostility, type CtrlResult, type HashSetup } from "./ctrl-client.ts";
import type { RxMeta } from "./rx-queue.ts";
import type { TxFrameOptions, TxOffloads } from "./tx-queue.ts";
import { readState, readUnsigned, waitForState, writeDevError, writeOwnState } from "./xenbus.ts";

/** XENNET_TIMEOUT and xenbus_reset_wait_for_backend's wait: 5 s in Linux. */
export const LINUX_XENBUS_WAIT_MS = 5000;
/** NAPI's default weight: packets per poll before yielding. */
const NAPI_BUDGET = 64;
/** A Linux netdev's default txqueuelen: how many frames wait while the ring is full. */
const TX_QUEUE_LEN = 1000;
/** MAX_QUEUES_DEFAULT: xennet_max_queues is min(8, online CPUs) unless the module parameter is set. */
export const MAX_QUEUES_DEFAULT = 8;

/**
 * The feature keys the frontend writes. They describe what the frontend can RECEIVE: feature-sg
 * lets the backend send multi-slot packets, feature-gso-* lets it send GSO packets (an extra-info
 * slot), feature-ipv6-csum-offload lets it send IPv6 with a blank checksum. The rx path handles
 * all three as Linux does, so by default every one is written with Linux's value ("1").
 */
export interface AdvertisedFeatures {
  sg: boolean;
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
  ipv6CsumOffload: boolean;
}

export interface NetfrontOptions {
  dir: string;
  domid: number;
  devid: number;
  log?: (line: string) => void;
  /** Per-step wait of the reset walk and of removal (Linux: 5 s). Tests shorten it. */
  resetWaitMs?: number;
  /** Per-round wait at probe for the backend to leave Closed/Unknown (Linux: 5 s, forever). */
  probeWaitMs?: number;
  /** Answer ARP and ICMP echo for this IPv4 address. */
  ip?: string;
  advertise?: Partial<AdvertisedFeatures>;
  /** Packets per rx poll (NAPI budget, default 64). */
  rxBudget?: number;
  /** Frames waiting for tx ring space before we drop (default 1000). */
  txBacklog?: number;
  /** Called for every tx response (id, status). */
  onTxResponse?: (id: number, status: number) => void;
  /** Sees every xenstore request the driver sends (op, transaction id, arguments): tests. */
  trace?: XsTrace;
  /**
   * Opt-in: a control ring as the Windows PV drivers set one up (ctrl-client.ts), where the backend
   * offers feature-ctrl-ring, configuring Toeplitz hashing once connected; `hostile` for tests.
   */
  ctrlRing?: { hash?: HashSetup; hostile?: CtrlHostility };
  /**
   * Behave like the Windows PV drivers' multicast control (Linux netfront has none): where the
   * backend offers feature-multicast-control, write request-multicast-control = 1 with the rings.
   * Groups are then added and removed with multicast().
   */
  multicastControl?: boolean;
  /** The guest's online vCPUs (num_online_cpus): the default queue limit is min(8, vcpus). Default 1. */
  vcpus?: number;
  /** xen_netfront.max_queues: the queue limit instead of min(8, vcpus); 0 or absent means unset. */
  maxQueues?: number;
  /** Use split event channels when the backend offers them (default true; false: an old netfront). */
  splitEventChannels?: boolean;
  /** Seed of the tx flow hash (Linux: random at boot; here a constant unless given). */
  flowHashSeed?: number;
  /** Deliberately wrong queue keys, for a backend's validation tests. Never what Linux writes. */
  hostile?: HostileQueueKeys;
}

/**
 * Ways to write the queue keys that Linux never does, to see a backend refuse them (netback's
 * connect: "multi-queue-num-queues" of 0, over what it offered or not a number, a queue directory
 * missing a key). The ring pages and event channels are still set up for the queues created.
 */
export interface HostileQueueKeys {
  /** Create exactly this many queues (>= 1), whatever the backend offered. */
  queues?: number;
  /** Write this string as multi-queue-num-queues (even when the backend offered no multi-queue). */
  numQueuesValue?: string;
  /** Keys not to write, relative to the frontend directory (e.g. "queue-1/rx-ring-ref"). */
  omitKeys?: string[];
}

/** Options of send(): where the frame is laid out, and optionally which queue (else per flow). */
export interface SendOptions extends TxFrameOptions {
  /** Send on this queue instead of the one the flow hash picks (tests). */
  queue?: number;
}

export type NetfrontEvent =
  | { type: "state"; state: number; name: string }
  | { type: "backend-state"; state: number; name: string }
  | { type: "connected"; info: ConnectionInfo }
  | { type: "gave-up"; reason: string }
  | { type: "broken"; reason: string }
  | { type: "reset-done" }
  | { type: "removed" };

/** What this connection wrote to xenstore (and what a backend maps and binds). */
export interface ConnectionInfo {
  /** Queue 0's ring refs and ports (the only queue's, when there is one). */
  txRingRef: number;
  rxRingRef: number;
  /** Equal when a single event channel is used. */
  txPort: number;
  rxPort: number;
  split: boolean;
  mac: string;
  /** multi-queue-num-queues, when the backend offered multi-queue-max-queues. */
  numQueues?: number;
  /** Every queue, in order: its directory, ring refs and ports. */
  queues: QueueInfo[];
  /** What the backend offered for our tx (xennet_fix_features): multi-slot packets and TCP GSO. */
  txOffloads: TxOffloads;
  /** The control ring, when asked for (NetfrontOptions.ctrlRing) and offered. */
  ctrl?: { ref: number; port: number };
}

export interface Netfront {
  readonly frontendPath: string;
  readonly backendPath: string;
  readonly backendDomid: number;
  /** Our xenbus state (dev->state). */
  readonly state: number;
  readonly backendState: number;
  readonly connection: ConnectionInfo | undefined;
  readonly broken: boolean;
  /** The device's totals: every queue's counts (including torn-down connections') plus its own. */
  readonly counters: NetfrontCounters;
  /** Each queue of the current connection: its own counters (since it was set up) and depths. */
  queueStats(): QueueStats[];
  /** The shared ring headers of queue `queue` (default 0), for tests of notification suppression. */
  ringHeaders(queue?: number): { tx: ReturnType<FrontRing["header"]>; rx: ReturnType<FrontRing["header"]> } | undefined;
  /** Posted rx requests not yet answered; tx requests in flight; frames waiting for ring space (all queues). */
  queueDepths(): QueueDepths;
  /** The queue a frame would leave on (xennet_select_queue), or undefined when not connected. */
  txQueueFor(frame: Uint8Array): number | undefined;
  send(frame: Uint8Array, opts?: SendOptions): boolean;
  /**
   * An MCAST_ADD / MCAST_DEL request for `mac` ("01:00:5e:..") on queue `queue`'s (default 0) tx ring (tx-queue.ts
   * says how the Windows drivers build one). Returns the request's id (its status comes to
   * onTxResponse), or -1 when not connected or the ring has no room.
   */
  multicast(op: "add" | "del", mac: string, queue?: number): number;
  /** Writes request-multicast-control (the Windows drivers' dynamic multicast control). */
  requestMulticastControl(on: boolean): Promise<void>;
  onReceive(cb: (frame: Uint8Array, meta: RxMeta) => void): () => void;
  onEvent(cb: (e: NetfrontEvent) => void): () => void;
  /** Resolves once we and the backend are both Connected. */
  whenConnected(timeoutMs?: number): Promise<ConnectionInfo>;
  /** xenbus_reset_frontend (5, 6, 1 with waits), then a fresh connection. Resolves when walked. */
  reset(): Promise<void>;
  /** Stops this guest's driver without touching xenstore (like the guest being destroyed). */
  close(): Promise<void>;
  /** The control ring's hash configuration of the current connection (each response), once run; undefined without a control ring. */
  hashConfigured(): Promise<CtrlResult[]> | undefined;
  /** The current connection's control ring (tests: hostile moves). */
  readonly ctrl: CtrlClient | undefined;
}

export interface QueueDepths {
  rxPosted: number;
  txInFlight: number;
  txBacklog: number;
}

export interface QueueStats extends QueueDepths {
  id: number;
  counters: NetfrontCounters;
}

interface Conn {
  info: ConnectionInfo;
  queues: NetfrontQueue[];
  /** Which queue each of our bound ports belongs to. */
  byPort: Map<number, NetfrontQueue>;
  announced?: boolean;
  ctrl?: CtrlClient;
  /** configureHash() of this connection, started once both ends are Connected. */
  hashDone?: Promise<CtrlResult[]>;
}

const ENOENT = 2;
const EINVAL = 22;
const EIO = 5;
const ENOMEM = 12;

class SimNetfront implements Netfront {
  state: number = XenbusState.Initialising;
  backendState: number = XenbusState.Unknown;
  broken = false;
  /** Device-level counts, plus the counts of queues already torn down. */
  private readonly own = newCounters();
  readonly counters = totalsView(this.own, () => this.liveQueueCounters);
  private liveQueueCounters: NetfrontCounters[] = [];
  private conn: Conn | undefined;
  /** netif_carrier_ok: rx buffers are only posted and packets only sent while it is on. */
  private carrier = false;
  private chain: Promise<void> = Promise.resolve();
  private readonly receivers = new Set<(f: Uint8Array, m: RxMeta) => void>();
  private readonly listeners = new Set<(e: NetfrontEvent) => void>();
  private waker: EventWaker | undefined;
  /** Up to 8 queues x 2 ports fit in one read; more stay pending for the next. */
  private readonly pending = new Uint32Array(32);
  private closed = false;
  private removed = false;
  private responder: Responder | undefined;
  private readonly ip: Uint8Array | undefined;
  private readonly resetWaitMs: number;
  private readonly probeWaitMs: number;
  private readonly advertise: AdvertisedFeatures;
  private readonly log: (line: string) => void;
  private readonly nodename: string;

  constructor(
    private readonly opts: NetfrontOptions,
    private readonly xs: XenstoreClient,
    private readonly guest: GuestDomain,
    readonly frontendPath: string,
    readonly backendPath: string,
    readonly backendDomid: number,
  ) {
    this.log = opts.log ?? (() => {});
    this.resetWaitMs = opts.resetWaitMs ?? LINUX_XENBUS_WAIT_MS;
    this.probeWaitMs = opts.probeWaitMs ?? LINUX_XENBUS_WAIT_MS;
    this.advertise = { sg: true, gsoTcpv4: true, gsoTcpv6: true, ipv6CsumOffload: true, ...opts.advertise };
    this.nodename = `device/vif/${opts.devid}`;
    if (opts.ip !== undefined) {
      this.ip = parseIPv4(opts.ip);
      if (!this.ip) throw new Error(`netfront: --ip ${opts.ip} is not an IPv4 address`);
    }
  }

  get connection(): ConnectionInfo | undefined {
    return this.conn?.info;
  }

  private emit(e: NetfrontEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** Runs `fn` after everything queued before it: xenbus callbacks are serialised, as in xenwatch. */
  private enqueue(what: string, fn: () => Promise<void>): Promise<void> {
    const p = this.chain.then(() => (this.closed ? undefined : fn()));
    this.chain = p.catch((e) => this.log(`netfront: ${what} failed: ${(e as Error).message}`));
    return p;
  }

  private async switchState(s: number): Promise<void> {
    if (s === this.state) return; // xenbus_switch_state: nothing to do
    if (await writeOwnState(this.xs, this.frontendPath, s)) {
      this.state = s;
      this.emit({ type: "state", state: s, name: xenbusStateName(s) });
    }
  }

  /** xenbus_dev_fatal: error node, then Closing. */
  private async devFatal(errno: number, message: string): Promise<void> {
    this.log(`netfront: ${this.nodename}: ${message} (error ${errno})`);
    await writeDevError(this.xs, this.opts.domid, this.nodename, errno, message);
    await this.switchState(XenbusState.Closing);
  }

  async start(): Promise<void> {
    this.waker = new EventWaker(this.guest.evtchn.fd, () => this.onEvtchn());
    // xenbus_check_frontend (boot): a frontend left Connected or Closed by a previous kernel is
    // walked back to Initialising first.
    const fe = await readState(this.xs, this.frontendPath);
    if (fe === XenbusState.Connected || fe === XenbusState.Closed) {
      const be = await this.xs.tryRead(`${this.backendPath}/state`);
      if (be !== undefined) await this.resetWalk(Number.parseInt(be, 10) || 0, async () => {});
    }
    void this.enqueue("probe", () => this.probe());
    await this.xs.watch(this.frontendPath, () => {
      void this.enqueue("frontend watch", async () => {
        if ((await this.xs.tryRead(`${this.frontendPath}/state`)) === undefined) await this.remove();
      });
    });
  }

  /**
   * xennet_create_dev's wait: until the backend is neither Closed nor Unknown (Linux waits 5 s
   * per round, forever); then the otherend watch is registered, which fires once at once.
   */
  private async probe(): Promise<void> {
    while (!this.closed && !this.removed) {
      const ok = await waitForState(this.xs, this.backendPath, (s) => s !== XenbusState.Closed && s !== XenbusState.Unknown, this.probeWaitMs);
      if (ok) break;
    }
    if (this.closed || this.removed) return;
    if (this.otherendWatchSet) {
      // After a reset the watch is still there: look at the backend once, as a new probe would.
      void this.enqueue("backend changed", () => this.otherendChanged());
      return;
    }
    this.otherendWatchSet = true;
    await this.xs.watch(`${this.backendPath}/state`, () => void this.enqueue("backend changed", () => this.otherendChanged()));
  }
  private otherendWatchSet = false;

  /** netback_changed, with the state read when the callback runs. */
  private async otherendChanged(): Promise<void> {
    if (this.removed) return;
    const bs = await readState(this.xs, this.backendPath);
    if (bs !== this.backendState) {
      this.backendState = bs;
      this.emit({ type: "backend-state", state: bs, name: xenbusStateName(bs) });
    }
    switch (bs) {
      case XenbusState.InitWait:
        if (this.state !== XenbusState.Initialising) break;
        if (!(await this.connect())) break;
        await this.switchState(XenbusState.Connected);
        this.maybeConnected();
        break;
      case XenbusState.Connected:
        // Linux: netdev_notify_peers (gratuitous ARP only with arp_notify set; off by default).
        this.maybeConnected();
        break;
      case XenbusState.Closed:
        if (this.state === XenbusState.Closed) break;
      // falls through: we missed the backend's Closing
      case XenbusState.Closing:
        // xenbus_frontend_closed: straight to Closed. The rings stay as they are until removal or reset.
        await this.switchState(XenbusState.Closed);
        break;
      default:
        break;
    }
  }

  /** Announces a connection once, when both ends are Connected. */
  private maybeConnected(): void {
    const c = this.conn;
    if (!c || c.announced || this.state !== XenbusState.Connected || this.backendState !== XenbusState.Connected) return;
    c.announced = true;
    if (c.ctrl && this.opts.ctrlRing) {
      c.hashDone = c.ctrl.configureHash(this.opts.ctrlRing.hash, this.opts.ctrlRing.hostile);
      c.hashDone.catch((e) => this.log(`netfront: ${this.nodename}: control ring: ${(e as Error).message}`));
    }
    this.emit({ type: "connected", info: c.info });
  }

  /**
   * talk_to_netback's queue count: min(B/multi-queue-max-queues (1 when absent or not a number),
   * xennet_max_queues); the latter is the max_queues module parameter, or min(8, online vCPUs).
   */
  private queueCount(offered: number): number {
    const vcpus = Math.max(1, this.opts.vcpus ?? 1);
    const limit = this.opts.maxQueues || Math.min(MAX_QUEUES_DEFAULT, vcpus);
    return this.opts.hostile?.queues ?? Math.min(offered, limit);
  }

  /** xennet_connect + talk_to_netback. False when it gave up (the state is then left as it is). */
  private async connect(): Promise<boolean> {
    const B = this.backendPath;
    const F = this.frontendPath;
    if (!(await readUnsigned(this.xs, `${B}/feature-rx-copy`, 0))) {
      // Linux: dev_info "backend does not support copying receive path", -ENODEV, nothing written.
      const reason = "backend does not support copying receive path";
      this.log(`netfront: ${this.nodename}: ${reason}`);
      this.emit({ type: "gave-up", reason });
      return false;
    }
    const numQueues = this.queueCount(await readUnsigned(this.xs, `${B}/multi-queue-max-queues`, 1));
    const split = (await readUnsigned(this.xs, `${B}/feature-split-event-channels`, 0)) !== 0 && this.opts.splitEventChannels !== false;
    const macStr = await this.xs.tryRead(`${F}/mac`);
    const mac = macStr === undefined ? undefined : parseMac(macStr);
    if (!mac) {
      await this.devFatal(ENOENT, `parsing ${this.nodename}/mac`);
      return false;
    }
    if (await readUnsigned(this.xs, `${B}/feature-xdp-headroom`, 0)) {
      // talk_to_netback_xdp(disabled): XDP is off, so the headroom asked for is 0.
      await this.xs.write(`${F}/xdp-headroom`, "0");
    }
    // A reconnect destroys the previous queues first (talk_to_netback: xennet_destroy_queues).
    if (this.conn) this.releaseConn();
    if (numQueues === 0) {
      // xennet_create_queues: "no queues" (a backend offering multi-queue-max-queues = 0).
      await this.devFatal(EINVAL, "creating queues");
      return false;
    }
    this.broken = false;

    // xennet_fix_features: SG and TSO only where the backend offered them.
    const txOffloads: TxOffloads = {
      sg: (await readUnsigned(this.xs, `${B}/feature-sg`, 0)) !== 0,
      gsoTcpv4: (await readUnsigned(this.xs, `${B}/feature-gso-tcpv4`, 0)) !== 0,
      gsoTcpv6: (await readUnsigned(this.xs, `${B}/feature-gso-tcpv6`, 0)) !== 0,
    };
    // setup_netfront for each queue in turn; a failure unwinds the queues already built.
    const queues: NetfrontQueue[] = [];
    try {
      for (let i = 0; i < numQueues; i++) queues.push(this.createQueue(i, split, txOffloads));
    } catch (e) {
      this.releaseQueues(queues);
      await this.devFatal(ENOMEM, `setting up queue ${queues.length}: ${(e as Error).message}`);
      return false;
    }
    const hierarchical = numQueues > 1;
    const mqOffered = (await this.xs.tryRead(`${B}/multi-queue-max-queues`)) !== undefined;
    const infos = queues.map((q) => q.info(hierarchical));
    const q0 = infos[0]!;
    const info: ConnectionInfo = { txRingRef: q0.txRingRef, rxRingRef: q0.rxRingRef, txPort: q0.txPort, rxPort: q0.rxPort, split: queues[0]!.split, mac: formatMac(mac), txOffloads, queues: infos };
    if (mqOffered) info.numQueues = numQueues;
    const conn: Conn = { info, queues, byPort: new Map() };
    for (const q of queues) for (const p of [q.txPort, q.rxPort]) conn.byPort.set(p, q);
    if (this.opts.ctrlRing && (await readUnsigned(this.xs, `${B}/feature-ctrl-ring`, 0))) {
      conn.ctrl = new CtrlClient(this.guest, this.backendDomid);
      conn.info.ctrl = { ref: conn.ctrl.ref, port: conn.ctrl.port };
    }

    // Everything in ONE transaction, in Linux's order: multi-queue-num-queues (only if the backend
    // offered multi-queue, even for one queue), each queue's keys (flat for one queue, under
    // queue-<i> for more), then the device's; on EAGAIN the client runs it again.
    const hostile = this.opts.hostile;
    const omit = new Set(hostile?.omitKeys ?? []);
    const keys: [string, string][] = [];
    if (hostile?.numQueuesValue !== undefined) keys.push(["multi-queue-num-queues", hostile.numQueuesValue]);
    else if (mqOffered) keys.push(["multi-queue-num-queues", String(numQueues)]);
    for (const q of queues) keys.push(...q.keys(hierarchical));
    keys.push(...Object.entries(conn.ctrl?.nodes() ?? {}));
    keys.push(["request-rx-copy", "1"], ["feature-rx-notify", "1"]);
    if (this.advertise.sg) keys.push(["feature-sg", "1"]);
    if (this.advertise.gsoTcpv4) keys.push(["feature-gso-tcpv4", "1"]);
    if (this.advertise.gsoTcpv6) keys.push(["feature-gso-tcpv6", "1"]);
    if (this.advertise.ipv6CsumOffload) keys.push(["feature-ipv6-csum-offload", "1"]);
    if (this.opts.multicastControl === true && (await readUnsigned(this.xs, `${B}/feature-multicast-control`, 0)) !== 0) keys.push(["request-multicast-control", "1"]);
    try {
      await this.xs.transaction(async (t) => {
        for (const [k, v] of keys) if (!omit.has(k)) await t.write(`${F}/${k}`, v);
      });
    } catch (e) {
      this.releaseQueues(queues);
      this.releaseCtrl(conn);
      await this.devFatal(EIO, `completing transaction: ${(e as Error).message}`);
      return false;
    }
    this.conn = conn;
    this.liveQueueCounters = queues.map((q) => q.counters);
    this.responder = this.ip ? createResponder(mac, this.ip) : undefined;
    this.own.connects++;
    // "Give the driver domain a kick" on every queue: notify, then fill the rx ring (before we
    // say Connected).
    this.carrier = true;
    for (const q of queues) {
      this.guest.evtchn.notify(q.txPort);
      if (q.split) this.guest.evtchn.notify(q.rxPort);
      try {
        q.rx.fill();
      } catch (e) {
        // Linux retries on a 100 ms refill timer; the sim's guest RAM does not grow, so say why
        // this queue's rx ring stays short (each queue posts 256 pages).
        this.log(`netfront: ${this.nodename}: queue ${q.id}: posting rx buffers failed: ${(e as Error).message}`);
      }
      // xennet_open: ask for an event on the first rx response.
      q.rxRing.setRspEvent((q.rxRing.rspCons + 1) >>> 0);
    }
    return true;
  }

  /** xennet_init_queue + setup_netfront for queue `id`. */
  private createQueue(id: number, split: boolean, txOffloads: TxOffloads): NetfrontQueue {
    return new NetfrontQueue(id, {
      guest: this.guest,
      backendDomid: this.backendDomid,
      split,
      txOffloads,
      maxBacklog: this.opts.txBacklog ?? TX_QUEUE_LEN,
      onTxResponse: this.opts.onTxResponse,
      broken: (why) => this.markBroken(why),
      warn: (w) => this.log(`netfront: ${this.nodename}: ${w}`),
      deliver: (f, m) => this.deliver(f, m),
    });
  }

  private markBroken(why: string): void {
    if (this.broken) return;
    this.broken = true;
    this.log(`netfront: ${this.nodename}: ${why}`);
    this.log(`netfront: ${this.nodename}: Disabled for further use`);
    this.emit({ type: "broken", reason: why });
  }

  /**
   * xennet_disconnect_backend: carrier off, every queue's event channels closed (the backend's ends
   * return to unbound), every grant ended and the pages freed. Grants the backend still maps are
   * counted. The queues' counts join the device's own so the totals survive the teardown.
   */
  private releaseConn(): void {
    const c = this.conn;
    if (!c) return;
    this.conn = undefined;
    this.carrier = false;
    this.releaseQueues(c.queues);
    this.releaseCtrl(c);
  }

  private releaseCtrl(c: Conn): void {
    const leaked = c.ctrl?.release() ?? 0;
    if (leaked) this.log(`netfront: ${this.nodename}: the control ring's grant is still in use by the backend domain`);
    this.own.leakedGrants += leaked;
  }

  private releaseQueues(queues: NetfrontQueue[]): void {
    let leaked = 0;
    for (const q of queues) {
      leaked += q.release();
      addCounters(this.own, q.counters);
    }
    this.liveQueueCounters = [];
    if (leaked) this.log(`netfront: ${this.nodename}: ${leaked} grants still in use by the backend domain`);
    this.own.leakedGrants += leaked;
  }

  private deliver(frame: Uint8Array, meta: RxMeta): void {
    for (const r of this.receivers) r(frame, meta);
    const a = this.responder?.answer(frame);
    if (a) {
      if (a.kind === "arp") this.own.arpReplies++;
      else this.own.echoReplies++;
      this.send(a.reply);
    }
  }

  /**
   * The event-channel "interrupt": per port, its queue's tx completions now (xennet_tx_interrupt)
   * and its rx via a NAPI-style poll (xennet_rx_interrupt); a single-channel queue's port does
   * both (xennet_interrupt).
   */
  private onEvtchn(): void {
    const ev = this.guest.evtchn;
    let n = 0;
    try {
      n = ev.readPending(this.pending);
    } catch {
      return;
    }
    const c = this.conn;
    for (let i = 0; i < n; i++) {
      const port = this.pending[i]!;
      const q = c?.byPort.get(port);
      if (!q || this.broken) continue;
      q.counters.events++;
      if (port === q.txPort) q.tx.gc();
      if (port === q.rxPort && q.rx.checkProducer()) this.schedulePoll(q);
    }
    // Unmask after handling (lateeoi); a notification while masked fires again at once.
    if (n > 0) ev.unmask(this.pending, n);
    this.waker?.rearm();
  }

  private schedulePoll(q: NetfrontQueue): void {
    if (q.pollScheduled) return;
    q.pollScheduled = true;
    setImmediate(() => {
      q.pollScheduled = false;
      // The queue may belong to a connection torn down meanwhile.
      if (this.conn?.queues[q.id] !== q || this.broken || !this.carrier) return;
      if (q.rx.poll(this.opts.rxBudget ?? NAPI_BUDGET)) this.schedulePoll(q);
    });
  }

  hashConfigured(): Promise<CtrlResult[]> | undefined {
    return this.conn?.hashDone;
  }

  get ctrl(): CtrlClient | undefined {
    return this.conn?.ctrl;
  }

  ringHeaders(queue = 0) {
    const q = this.conn?.queues[queue];
    return q ? { tx: q.txRing.header(), rx: q.rxRing.header() } : undefined;
  }

  private static depths(q: NetfrontQueue): QueueDepths {
    return { rxPosted: q.rx.posted(), txInFlight: q.tx.inFlight(), txBacklog: q.tx.backlogLength };
  }

  queueDepths(): QueueDepths {
    const d = { rxPosted: 0, txInFlight: 0, txBacklog: 0 };
    for (const q of this.conn?.queues ?? []) {
      const e = SimNetfront.depths(q);
      d.rxPosted += e.rxPosted;
      d.txInFlight += e.txInFlight;
      d.txBacklog += e.txBacklog;
    }
    return d;
  }

  queueStats(): QueueStats[] {
    return (this.conn?.queues ?? []).map((q) => ({ id: q.id, counters: { ...q.counters }, ...SimNetfront.depths(q) }));
  }

  txQueueFor(frame: Uint8Array): number | undefined {
    const c = this.conn;
    return c ? selectQueue(frame, c.queues.length, this.opts.flowHashSeed ?? DEFAULT_FLOW_HASH_SEED) : undefined;
  }

  multicast(op: "add" | "del", mac: string, queue = 0): number {
    const c = this.conn;
    if (!c || this.broken || !c.queues[queue]) return -1;
    const bytes = Uint8Array.from(mac.split(":").map((h) => Number.parseInt(h, 16)));
    if (bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255))) throw new RangeError(`multicast group ${JSON.stringify(mac)} is not a MAC`);
    return c.queues[queue]!.tx.multicastRequest(op, bytes);
  }

  async requestMulticastControl(on: boolean): Promise<void> {
    await this.xs.write(`/local/domain/${this.opts.domid}/${this.nodename}/request-multicast-control`, on ? "1" : "0");
  }

  send(frame: Uint8Array, opts?: SendOptions): boolean {
    const c = this.conn;
    // xennet_start_xmit drops when broken or the carrier is off.
    if (!c || this.broken || !this.carrier) {
      this.own.txDropped++;
      return false;
    }
    const qi = opts?.queue ?? selectQueue(frame, c.queues.length, this.opts.flowHashSeed ?? DEFAULT_FLOW_HASH_SEED);
    const q = c.queues[qi];
    if (!q) throw new RangeError(`queue ${qi}: this connection has ${c.queues.length} queue(s)`);
    return q.tx.send(frame, opts);
  }

  onReceive(cb: (frame: Uint8Array, meta: RxMeta) => void): () => void {
    this.receivers.add(cb);
    return () => this.receivers.delete(cb);
  }

  onEvent(cb: (e: NetfrontEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  whenConnected(timeoutMs = 10_000): Promise<ConnectionInfo> {
    if (this.conn && this.state === XenbusState.Connected && this.backendState === XenbusState.Connected) return Promise.resolve(this.conn.info);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new Error(`netfront ${this.frontendPath}: not connected within ${timeoutMs} ms (frontend ${xenbusStateName(this.state)}, backend ${xenbusStateName(this.backendState)})`));
      }, timeoutMs);
      const off = this.onEvent((e) => {
        if (e.type !== "connected") return;
        clearTimeout(t);
        off();
        resolve(e.info);
      });
    });
  }

  /**
   * xenbus_reset_frontend: with a watch on the backend's state, walk our state from where the
   * backend is: Connected -> write 5, wait for 5; Closing -> write 6, wait for 6; Closed -> write 1,
   * wait for 2. Each wait gives up after resetWaitMs with Linux's "timed out" line and goes on.
   * `beforeInitialising` runs between Closed and Initialising (the old rings are released there,
   * once the backend has let go of them).
   */
  private async resetWalk(beState: number, beforeInitialising: () => Promise<void>): Promise<void> {
    const B = this.backendPath;
    const F = this.frontendPath;
    this.log(`netfront: XENBUS: triggering reconnect on ${B}`);
    let latest: number = XenbusState.Unknown;
    let wake: () => void = () => {};
    const w = await this.xs.watch(`${B}/state`, () => {
      void readState(this.xs, B).then((s) => {
        latest = s;
        wake();
      });
    });
    const waitFor = async (expected: number) => {
      const deadline = Date.now() + this.resetWaitMs;
      while (latest !== expected) {
        const left = deadline - Date.now();
        if (left <= 0) {
          this.log(`netfront: XENBUS: backend ${B} timed out`);
          return;
        }
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    };
    const put = async (s: number) => {
      await this.xs.write(`${F}/state`, String(s)); // xenbus_printf: a plain write
      this.state = s;
      this.emit({ type: "state", state: s, name: xenbusStateName(s) });
    };
    try {
      switch (beState) {
        case XenbusState.Connected:
          await put(XenbusState.Closing);
          await waitFor(XenbusState.Closing);
        // falls through
        case XenbusState.Closing:
          await put(XenbusState.Closed);
          await waitFor(XenbusState.Closed);
        // falls through
        case XenbusState.Closed:
          await beforeInitialising();
          await put(XenbusState.Initialising);
          await waitFor(XenbusState.InitWait);
          break;
        default:
          await beforeInitialising();
      }
    } finally {
      await w.unwatch().catch(() => {});
    }
    this.log(`netfront: XENBUS: reconnect done on ${B}`);
  }

  reset(): Promise<void> {
    return this.enqueue("reset", async () => {
      this.own.resets++;
      // The old kernel's data path stops at once; its grants are ended once the backend let go.
      this.carrier = false;
      const be = await readState(this.xs, this.backendPath);
      await this.resetWalk(be, async () => this.releaseConn());
      // A new kernel's xenbus device starts in Initialising and probes again.
      this.state = XenbusState.Initialising;
      this.emit({ type: "reset-done" });
      void this.enqueue("probe", () => this.probe());
    });
  }

  /**
   * The device's nodes are gone (the toolstack removed it): xennet_remove. xennet_bus_close walks
   * Closing/Closed unless the backend is already Closed or gone, then the rings are released.
   */
  private async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    const B = this.backendPath;
    const closedOrGone = (s: number) => s === XenbusState.Closed || s === XenbusState.Unknown;
    if (!closedOrGone(await readState(this.xs, B))) {
      while (!this.closed) {
        await this.switchState(XenbusState.Closing);
        if (await waitForState(this.xs, B, (s) => s === XenbusState.Closing || closedOrGone(s), this.resetWaitMs)) break;
      }
      while (!this.closed && (await readState(this.xs, B)) !== XenbusState.Closed) {
        await this.switchState(XenbusState.Closed);
        if (await waitForState(this.xs, B, closedOrGone, this.resetWaitMs)) break;
      }
    }
    this.releaseConn();
    this.emit({ type: "removed" });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.waker?.stop();
    this.releaseConn();
    this.guest.close();
    this.xs.close();
  }
}

/**
 * Starts the netfront of vif `devid` in guest `domid` on the simulated host in `dir`: connects to
 * the guest's xenstore socket, reads F/backend and F/backend-id, and runs the driver in the
 * background. Connection happens when a backend reaches InitWait (see whenConnected()).
 */
export async function createNetfront(opts: NetfrontOptions): Promise<Netfront> {
  const F = `/local/domain/${opts.domid}/device/vif/${opts.devid}`;
  const xs = await XenstoreClient.connect({
    path: simPaths(opts.dir).domainSocket(opts.domid),
    reconnect: { initialDelayMs: 10, maxDelayMs: 200 },
    trace: opts.trace,
    onError: (e) => opts.log?.(`netfront: xenstore: ${e.message}`),
  });
  let guest: GuestDomain | undefined;
  let backend: string | undefined;
  let backendId: string | undefined;
  try {
    // read_backend_details (xenbus_read_otherend_details): both nodes must be there.
    backend = await xs.tryRead(`${F}/backend`);
    backendId = await xs.tryRead(`${F}/backend-id`);
    if (backend === undefined || backendId === undefined || !/^\d+$/.test(backendId))
      throw new Error(`netfront: reading other end details from ${F} failed: no backend/backend-id (is vif ${opts.devid} configured for dom${opts.domid}?)`);
    guest = openGuestDomain(opts.dir, opts.domid);
  } catch (e) {
    guest?.close();
    xs.close();
    throw e;
  }
  const nf = new SimNetfront(opts, xs, guest, F, backend, Number(backendId));
  try {
    await nf.start();
  } catch (e) {
    await nf.close(); // stops the waker, closes the guest devices and xenstore
    throw e;
  }
  return nf;
}
