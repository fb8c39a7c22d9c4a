// A simulated guest's netfront: the xenbus side of Linux's xen-netfront (probe, netback_changed,
// xennet_connect/talk_to_netback, xenbus_frontend_closed, xennet_remove) and the reset walk of
// xenbus_reset_frontend, driving one TxQueue and one RxQueue. It behaves like Linux booted with
// xen-netfront.max_queues=1, so a backend meets what a real Linux guest writes and does.
//
//   const nf = await createNetfront({ dir, domid, devid });
//   nf.onReceive((frame) => ...);
//   await nf.whenConnected();
//   nf.send(frame);
import { XenbusState, xenbusStateName } from "../../xen/xenbus-state.ts";
import { NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE } from "../../xen/netif.ts";
import { XenstoreClient, type XsTrace } from "../../xenstore/index.ts";
import { openGuestDomain, type GuestDomain } from "../hypervisor/index.ts";
import { simPaths } from "../paths.ts";
import { newCounters, type NetfrontCounters } from "./counters.ts";
import { EventWaker } from "./event-waker.ts";
import { createResponder, parseIPv4, parseMac, formatMac, type Responder } from "./frames.ts";
import { FrontRing } from "./front-ring.ts";
import { RxQueue, type RxMeta } from "./rx-queue.ts";
import { TxQueue, type TxFrameOptions, type TxOffloads } from "./tx-queue.ts";
import { readState, readUnsigned, waitForState, writeDevError, writeOwnState } from "./xenbus.ts";

/** XENNET_TIMEOUT and xenbus_reset_wait_for_backend's wait: 5 s in Linux. */
export const LINUX_XENBUS_WAIT_MS = 5000;
/** NAPI's default weight: packets per poll before yielding. */
const NAPI_BUDGET = 64;
/** A Linux netdev's default txqueuelen: how many frames wait while the ring is full. */
const TX_QUEUE_LEN = 1000;

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
   * Behave like the Windows PV drivers' multicast control (Linux netfront has none): where the
   * backend offers feature-multicast-control, write request-multicast-control = 1 with the rings.
   * Groups are then added and removed with multicast().
   */
  multicastControl?: boolean;
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
  txRingRef: number;
  rxRingRef: number;
  /** Equal when a single event channel is used. */
  txPort: number;
  rxPort: number;
  split: boolean;
  mac: string;
  /** multi-queue-num-queues, when the backend offered multi-queue-max-queues. */
  numQueues?: number;
  /** What the backend offered for our tx (xennet_fix_features): multi-slot packets and TCP GSO. */
  txOffloads: TxOffloads;
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
  readonly counters: NetfrontCounters;
  /** The shared ring headers, for tests of notification suppression. */
  ringHeaders(): { tx: ReturnType<FrontRing["header"]>; rx: ReturnType<FrontRing["header"]> } | undefined;
  /** Posted rx requests not yet answered; tx requests in flight; frames waiting for ring space. */
  queueDepths(): { rxPosted: number; txInFlight: number; txBacklog: number };
  send(frame: Uint8Array, opts?: TxFrameOptions): boolean;
  /**
   * An MCAST_ADD / MCAST_DEL request for `mac` ("01:00:5e:..") on the tx ring (tx-queue.ts says how
   * the Windows drivers build one). Returns the request's id (its status comes to onTxResponse), or
   * -1 when not connected or the ring has no room.
   */
  multicast(op: "add" | "del", mac: string): number;
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
}

interface Conn {
  info: ConnectionInfo;
  txFrame: number;
  rxFrame: number;
  txRing: FrontRing;
  rxRing: FrontRing;
  tx: TxQueue;
  rx: RxQueue;
  announced?: boolean;
}

const ENOENT = 2;
const EINVAL = 22;
const EIO = 5;

class SimNetfront implements Netfront {
  state: number = XenbusState.Initialising;
  backendState: number = XenbusState.Unknown;
  broken = false;
  readonly counters = newCounters();
  private conn: Conn | undefined;
  /** netif_carrier_ok: rx buffers are only posted and packets only sent while it is on. */
  private carrier = false;
  private chain: Promise<void> = Promise.resolve();
  private readonly receivers = new Set<(f: Uint8Array, m: RxMeta) => void>();
  private readonly listeners = new Set<(e: NetfrontEvent) => void>();
  private waker: EventWaker | undefined;
  private readonly pending = new Uint32Array(8);
  private pollScheduled = false;
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
    this.emit({ type: "connected", info: c.info });
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
    const maxQueues = await readUnsigned(this.xs, `${B}/multi-queue-max-queues`, 1);
    const numQueues = Math.min(maxQueues, 1); // one queue: Linux with xen-netfront.max_queues=1
    const split = (await readUnsigned(this.xs, `${B}/feature-split-event-channels`, 0)) !== 0;
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
    if (numQueues === 0) {
      await this.devFatal(EINVAL, "creating queues");
      return false;
    }
    // A reconnect destroys the previous queues first (talk_to_netback: xennet_destroy_queues).
    if (this.conn) this.releaseConn();
    this.broken = false;

    // xennet_fix_features: SG and TSO only where the backend offered them.
    const txOffloads: TxOffloads = {
      sg: (await readUnsigned(this.xs, `${B}/feature-sg`, 0)) !== 0,
      gsoTcpv4: (await readUnsigned(this.xs, `${B}/feature-gso-tcpv4`, 0)) !== 0,
      gsoTcpv6: (await readUnsigned(this.xs, `${B}/feature-gso-tcpv6`, 0)) !== 0,
    };
    const conn = this.setupRings(split, formatMac(mac), txOffloads);
    const mqOffered = (await this.xs.tryRead(`${B}/multi-queue-max-queues`)) !== undefined;
    const mcastOffered = this.opts.multicastControl === true && (await readUnsigned(this.xs, `${B}/feature-multicast-control`, 0)) !== 0;
    if (mqOffered) conn.info.numQueues = numQueues;
    try {
      // Everything in ONE transaction, in Linux's order; on EAGAIN the client runs it again.
      await this.xs.transaction(async (t) => {
        if (mqOffered) await t.write(`${F}/multi-queue-num-queues`, String(numQueues));
        await t.write(`${F}/tx-ring-ref`, String(conn.info.txRingRef));
        await t.write(`${F}/rx-ring-ref`, String(conn.info.rxRingRef));
        if (!split) await t.write(`${F}/event-channel`, String(conn.info.txPort));
        else {
          await t.write(`${F}/event-channel-tx`, String(conn.info.txPort));
          await t.write(`${F}/event-channel-rx`, String(conn.info.rxPort));
        }
        await t.write(`${F}/request-rx-copy`, "1");
        await t.write(`${F}/feature-rx-notify`, "1");
        if (this.advertise.sg) await t.write(`${F}/feature-sg`, "1");
        if (this.advertise.gsoTcpv4) await t.write(`${F}/feature-gso-tcpv4`, "1");
        if (this.advertise.gsoTcpv6) await t.write(`${F}/feature-gso-tcpv6`, "1");
        if (this.advertise.ipv6CsumOffload) await t.write(`${F}/feature-ipv6-csum-offload`, "1");
        if (mcastOffered) await t.write(`${F}/request-multicast-control`, "1");
      });
    } catch (e) {
      this.conn = conn;
      this.releaseConn();
      await this.devFatal(EIO, `completing transaction: ${(e as Error).message}`);
      return false;
    }
    this.conn = conn;
    this.responder = this.ip ? createResponder(mac, this.ip) : undefined;
    this.counters.connects++;
    // "Give the driver domain a kick": notify, then fill the rx ring (before we say Connected).
    this.carrier = true;
    this.guest.evtchn.notify(conn.info.txPort);
    if (split) this.guest.evtchn.notify(conn.info.rxPort);
    conn.rx.fill();
    // xennet_open: ask for an event on the first rx response.
    conn.rxRing.setRspEvent((conn.rxRing.rspCons + 1) >>> 0);
    return true;
  }

  /** setup_netfront: two ring pages granted to the backend, one or two unbound event channels. */
  private setupRings(split: boolean, mac: string, txOffloads: TxOffloads): Conn {
    const g = this.guest;
    const bd = this.backendDomid;
    const txFrame = g.allocPage();
    const rxFrame = g.allocPage();
    const txRing = new FrontRing(g.pageView(txFrame), NETIF_TX_RING_SIZE);
    const rxRing = new FrontRing(g.pageView(rxFrame), NETIF_RX_RING_SIZE);
    txRing.init();
    rxRing.init();
    const txRingRef = g.grantAccess(bd, txFrame, false);
    const rxRingRef = g.grantAccess(bd, rxFrame, false);
    const txPort = g.evtchn.bindUnboundPort(bd);
    const rxPort = split ? g.evtchn.bindUnboundPort(bd) : txPort;
    const broken = (why: string) => this.markBroken(why);
    const tx = new TxQueue({
      guest: g,
      backendDomid: bd,
      ring: txRing,
      counters: this.counters,
      notify: () => g.evtchn.notify(txPort),
      broken,
      onResponse: this.opts.onTxResponse,
      maxBacklog: this.opts.txBacklog ?? TX_QUEUE_LEN,
      offloads: txOffloads,
    });
    const rx = new RxQueue({
      guest: g,
      backendDomid: bd,
      ring: rxRing,
      counters: this.counters,
      notify: () => g.evtchn.notify(rxPort),
      broken,
      warn: (w) => this.log(`netfront: ${this.nodename}: ${w}`),
      deliver: (f, m) => this.deliver(f, m),
    });
    return { info: { txRingRef, rxRingRef, txPort, rxPort, split, mac, txOffloads }, txFrame, rxFrame, txRing, rxRing, tx, rx };
  }

  private markBroken(why: string): void {
    if (this.broken) return;
    this.broken = true;
    this.log(`netfront: ${this.nodename}: ${why}`);
    this.log(`netfront: ${this.nodename}: Disabled for further use`);
    this.emit({ type: "broken", reason: why });
  }

  /**
   * xennet_disconnect_backend: carrier off, event channels closed (the backend's ends return to
   * unbound), every grant ended and the pages freed. Grants the backend still maps are counted.
   */
  private releaseConn(): void {
    const c = this.conn;
    if (!c) return;
    this.conn = undefined;
    this.carrier = false;
    const ev = this.guest.evtchn;
    for (const p of new Set([c.info.txPort, c.info.rxPort])) {
      try {
        ev.unbind(p);
      } catch {}
    }
    let leaked = c.tx.release() + c.rx.release();
    for (const [ref, frame] of [
      [c.info.txRingRef, c.txFrame],
      [c.info.rxRingRef, c.rxFrame],
    ] as const) {
      if (this.guest.endAccess(ref)) this.guest.freePage(frame);
      else leaked++;
    }
    if (leaked) this.log(`netfront: ${this.nodename}: ${leaked} grants still in use by the backend domain`);
    this.counters.leakedGrants += leaked;
  }

  private deliver(frame: Uint8Array, meta: RxMeta): void {
    for (const r of this.receivers) r(frame, meta);
    const a = this.responder?.answer(frame);
    if (a) {
      if (a.kind === "arp") this.counters.arpReplies++;
      else this.counters.echoReplies++;
      this.send(a.reply);
    }
  }

  /** The event-channel "interrupt": tx completions now, rx via a NAPI-style poll. */
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
      if (!c || this.broken) continue;
      this.counters.events++;
      if (port === c.info.txPort) c.tx.gc();
      if (port === c.info.rxPort && c.rx.checkProducer()) this.schedulePoll();
    }
    // Unmask after handling (lateeoi); a notification while masked fires again at once.
    if (n > 0) ev.unmask(this.pending, n);
    this.waker?.rearm();
  }

  private schedulePoll(): void {
    if (this.pollScheduled) return;
    this.pollScheduled = true;
    setImmediate(() => {
      this.pollScheduled = false;
      const c = this.conn;
      if (!c || this.broken || !this.carrier) return;
      if (c.rx.poll(this.opts.rxBudget ?? NAPI_BUDGET)) this.schedulePoll();
    });
  }

  ringHeaders() {
    const c = this.conn;
    return c ? { tx: c.txRing.header(), rx: c.rxRing.header() } : undefined;
  }

  queueDepths() {
    const c = this.conn;
    return { rxPosted: c?.rx.posted() ?? 0, txInFlight: c?.tx.inFlight() ?? 0, txBacklog: c?.tx.backlogLength ?? 0 };
  }

  send(frame: Uint8Array, opts?: TxFrameOptions): boolean {
    const c = this.conn;
    // xennet_start_xmit drops when broken or the carrier is off.
    if (!c || this.broken || !this.carrier) {
      this.counters.txDropped++;
      return false;
    }
    return c.tx.send(frame, opts);
  }

  multicast(op: "add" | "del", mac: string): number {
    const c = this.conn;
    if (!c || this.broken) return -1;
    const bytes = Uint8Array.from(mac.split(":").map((h) => Number.parseInt(h, 16)));
    if (bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255))) throw new RangeError(`multicast group ${JSON.stringify(mac)} is not a MAC`);
    return c.tx.multicastRequest(op, bytes);
  }

  async requestMulticastControl(on: boolean): Promise<void> {
    await this.xs.write(`/local/domain/${this.opts.domid}/${this.nodename}/request-multicast-control`, on ? "1" : "0");
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
      this.counters.resets++;
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
