// The vif device: what the generic bus (xenbus.ts) calls at each step, like QEMU's xen_nic.c hooks.
// realize: features + host interface; frontendChanged: the Linux netback state mapping; connect:
// validated frontend nodes handed to the worker pool; disconnect/unrealize: given back; adopt: a
// vif an earlier qnicd left Connected, taken over through its journal without touching a state node.
import * as v from "valibot";
import type { Logger } from "../log.ts";
import type { PeerProvisioner, PeerSettings } from "../net/peer-provisioner.ts";
import type { ConnectedVif, VifFault, WorkerPool } from "../pool/types.ts";
import type { PeerHandle } from "../net/peer.ts";
import { XenbusState } from "../xen/xenbus-state.ts";
import { XEN_NETBK_MCAST_MAX } from "../xen/netif.ts";
import { XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ } from "../xen/ctrl-netif.ts";
import { XenstoreConnectionError, type XenstoreClient } from "../xenstore/index.ts";
import type { TargetState } from "./backend-state.ts";
import type { XenDevice } from "./device.ts";
import { Errno, oneLine, quoteGuest, VifFatalError } from "./errors.ts";
import { BACKEND_FEATURES, type FeatureNode } from "./features.ts";
import { FRONTEND_KEYS, readFrontendConfig, type FrontendConfig } from "./frontend-nodes.ts";
import { isQueueJournalOf, journalPath, listJournals, listQueueJournalNames, MappedJournal, queueJournalPath, queueRefsOf, readJournalIdentity, removeJournal, removeQueueJournals, writeFreshJournal, type VifIdentity } from "../state/vif-journal.ts";
import { join } from "node:path";
import { readVifStats, type StatsArena, type VifStats } from "../stats/index.ts";
import type { DeviceHooks, XenBus } from "./xenbus.ts";
import { describeRate, RATE_NODE, VifSettingsWatch } from "./vif-settings.ts";
import type { HashConfig, VifSettings } from "../pool/types.ts";

const S = XenbusState;

/** Linux's dev_valid_name(): shorter than IFNAMSIZ (16), not "." or "..", no '/', ':' or whitespace. */
export function validInterfaceName(s: string): boolean {
  return /^[^/:\s]{1,15}$/.test(s) && s !== "." && s !== "..";
}

/**
 * B/bridge as the toolstack wrote it: an interface name, at most 15 BYTES (IFNAMSIZ less its NUL:
 * a name of 15 multi-byte characters does not fit), checked before the name reaches sysfs paths
 * or an ioctl. Undefined: not a valid name.
 */
const BRIDGE_NODE = v.pipe(
  v.string(),
  v.check(validInterfaceName),
  v.check((s) => Buffer.byteLength(s) <= 15),
);
export function parseBridgeNode(raw: string): string | undefined {
  const r = v.safeParse(BRIDGE_NODE, raw);
  return r.success ? r.output : undefined;
}

/** One queue the pool serves for a connected vif. */
export interface QueueLink {
  connection: ConnectedVif;
  /** Its host side: the vif's own peer for queue 0, a queue of it (peers.openQueue) for the others. */
  peer: PeerHandle;
  /** The queue's journal, mapped here too so its counters can be saved into it. */
  journal: MappedJournal | null;
}

/** What the vif layer holds per device. */
export interface VifInfo {
  peer: PeerHandle | null;
  config: FrontendConfig | null;
  /** Queue 0 first; empty while the vif is not connected. */
  queues: QueueLink[];
  /** How this connection began: by the guest's handshake, or taken over from an earlier qnicd. */
  origin: "connected" | "adopted" | null;
  /** B/rate and F/request-multicast-control, watched while connected (vif-settings.ts). */
  settings: VifSettingsWatch | null;
  /** A multi-queue vif's multicast list, from every queue's MCAST extras (one list per vif, as netback's). */
  mcastGroups: string[];
  /**
   * The hash configuration the host side's queue choice waits to take (steerLater), or undefined
   * when none waits; `steerWarned`: a failure was logged for this connection already.
   */
  steerPending?: HashConfig | null;
  steerWarned?: boolean;
}

export interface VifHooksOptions {
  xs: XenstoreClient;
  pool: WorkerPool;
  peers: PeerProvisioner;
  log: Logger;
  /** --vifname-prefix: TAPs are named <prefix><domid>.<devid> unless B/vifname says otherwise. */
  vifnamePrefix: string;
  /**
   * How long a worker may take to map and bind a vif (default 10 s, libxl's own patience). A worker
   * that never answers then costs one vif, not the control plane: device runs are serialised, so a
   * connect that never settles would wedge that vif's teardown and the daemon's shutdown.
   */
  connectTimeoutMs?: number;
  /** The feature nodes written at realize (features.ts backendFeatures; default the seed's set). */
  features?: readonly FeatureNode[];
  /**
   * Where each connected vif's journal lives (src/state/vif-journal.ts): what lets the next qnicd
   * take the vif over. Absent: no journals, and Connected vifs found at start are closed (tests).
   */
  journalDir?: string;
  /** The counters, saved into each journal so a successor carries them on. */
  stats?: StatsArena;
}

/** The hint on every vif that could not be taken over from an earlier qnicd. */
const readoptHint = (dev: XenDevice) => `its guest cannot reconnect by itself: run 'xl network-detach ${dev.domid} ${dev.devid}' and 'xl network-attach ${dev.domid}' with the vif's settings`;

/** A queue's journal: where it is, the mapping if the caller has one, the counters it carried. */
interface JournalSource {
  path: string | undefined;
  mapped: MappedJournal | null;
  carry: Partial<VifStats> | undefined;
}

export class VifHooks implements DeviceHooks {
  private readonly info = new Map<XenDevice, VifInfo>();
  /** Each journal's slot version when its counters were last saved (saveCounters skips vifs that did not move). */
  private readonly savedVersion = new WeakMap<MappedJournal, number>();
  private serial = 0;
  /**
   * How many queue journals each vif ("domid/devid") has on disk from this process (its connect
   * wrote them, or its take-over found them), so removing them needs no directory listing: a
   * listing per connect made connecting N vifs cost O(N^2) directory entries read.
   */
  private readonly journalQueues = new Map<string, number>();
  /** Queue journals (q1 and up) an earlier qnicd left: listed once, at the first removal; names. */
  private strayQueueJournals: Set<string> | undefined;
  private bus: XenBus | undefined;
  private readonly features: readonly FeatureNode[];
  /** Present only with journals: without one nothing can be taken over safely (DeviceHooks.adopt). */
  readonly adopt?: (dev: XenDevice) => Promise<void>;

  constructor(private readonly opts: VifHooksOptions) {
    this.features = opts.features ?? BACKEND_FEATURES;
    if (opts.journalDir !== undefined) this.adopt = (dev) => this.takeOver(dev, opts.journalDir!);
    opts.pool.onFault((f) => this.onFault(f));
    opts.pool.onHash?.((key, config) => this.onHash(key, config));
    opts.pool.onMcast?.((key, changes) => this.onMcast(key, changes));
    opts.pool.onWorkerLost((worker, moved) => {
      for (const c of moved) {
        for (const i of this.info.values()) for (const q of i.queues) if (q.connection.key === c.key) q.connection = c;
      }
      opts.log.warn(`worker ${worker} died: its ${moved.length} vif(s) moved to other workers`);
    });
  }

  /** The bus, once built: pool faults are handed to it. */
  attach(bus: XenBus): void {
    this.bus = bus;
  }

  vif(dev: XenDevice): VifInfo | undefined {
    return this.info.get(dev);
  }

  private entry(dev: XenDevice): VifInfo {
    let e = this.info.get(dev);
    if (!e) this.info.set(dev, (e = { peer: null, config: null, queues: [], origin: null, settings: null, mcastGroups: [] }));
    return e;
  }

  async realize(dev: XenDevice): Promise<void> {
    const B = dev.backendPath;
    // One transaction, as netback_probe: a frontend never sees half the feature set.
    await this.opts.xs.transaction(async (t) => {
      if ((await t.tryRead(`${B}/state`)) === undefined) return; // being removed: do not resurrect B
      for (const [key, value] of this.features) await t.write(`${B}/${key}`, value);
    });
    await this.hostSide(dev);
  }

  /** The vif's host interface (a persistent TAP is re-opened by name: a restart keeps it, bridge and all). */
  private async hostSide(dev: XenDevice): Promise<void> {
    const B = dev.backendPath;
    const e = this.entry(dev);
    if (e.peer) return; // a reconnect keeps its interface, as Linux keeps vifN.M across reconnects
    // Before InitWait: libxl runs vif-bridge right after it sees InitWait, and the script needs the
    // interface. B/vifname is the toolstack's (the guest cannot write B); validated all the same.
    // The three nodes asked for at once: one round trip to xenstored instead of three in a row (a
    // take-over after a restart waits on each, and the guests' frames with it).
    const [vifname, bridge, mtu] = await Promise.all([
      this.opts.xs.tryRead(`${B}/vifname`),
      this.opts.peers.joinsBridges ? this.opts.xs.tryRead(`${B}/bridge`) : undefined,
      this.opts.xs.tryRead(`${B}/mtu`),
    ]);
    if (vifname !== undefined && vifname !== "" && !validInterfaceName(vifname)) {
      throw new VifFatalError(Errno.EINVAL, `reading vifname: ${quoteGuest(vifname)} is not a valid interface name`, "give the vif a vifname of 1 to 15 characters without '/', ':' or spaces");
    }
    const name = vifname || `${this.opts.vifnamePrefix}${dev.domid}.${dev.devid}`;
    // libxl's mtu= key (B/mtu, written only when not 1500). Toolstack-written, validated all the
    // same.
    const settings: PeerSettings = {};
    // libxl's bridge= key (B/bridge, "xenbr0" when the config names none): the bridge the TAP
    // joins when qnicd puts TAPs on bridges itself (--bridge); otherwise the hotplug script reads it.
    if (bridge !== undefined) {
      const ok = parseBridgeNode(bridge);
      if (ok === undefined) {
        throw new VifFatalError(Errno.EINVAL, `reading bridge: ${quoteGuest(bridge)} is not a bridge name`, "give the vif a bridge= of 1 to 15 bytes without '/', ':' or spaces");
      }
      settings.bridge = ok;
    }
    if (mtu !== undefined) {
      if (!/^\d{2,5}$/.test(mtu) || Number(mtu) < 68 || Number(mtu) > 65535) {
        throw new VifFatalError(Errno.EINVAL, `reading mtu: ${quoteGuest(mtu)} is not an MTU from 68 to 65535`, "give the vif an mtu= from 68 to 65535 in its config");
      }
      settings.mtu = Number(mtu);
    }
    try {
      e.peer = this.opts.peers.create(name, settings);
    } catch (err) {
      const errno = typeof (err as { errno?: unknown }).errno === "number" ? (err as { errno: number }).errno : Errno.EIO;
      // ENODEV: the bridge it should join is missing; the message says which and how to fix it.
      const hint = errno === Errno.ENODEV ? "once the bridge exists, re-attach the vif (xl network-detach, then network-attach)" : "check that no other interface has that name and that qnicd may create TAPs (or run with --peer switch)";
      throw new VifFatalError(errno, `creating interface: ${oneLine((err as Error).message)}`, hint);
    }
  }

  /** B/rate changed (the bus's watch covers it): netback's credit watch. Other nodes: read once, at realize or connect. */
  nodeChanged(dev: XenDevice, node: string): void {
    if (node === RATE_NODE) this.info.get(dev)?.settings?.changed();
  }

  // Linux netback's frontend_changed.
  frontendChanged(dev: XenDevice, fe: number): TargetState | null {
    switch (fe) {
      case S.Initialising:
        // Also the reconnect: a frontend back at Initialising after Closed gets InitWait again.
        return S.InitWait;
      case S.Initialised:
        // Linux netback does nothing on Initialised (Linux netfront skips it and goes straight to
        // Connected); QEMU's legacy backend connects on it, for frontends that announce their rings
        // with Initialised and wait. So connect on it, but only from InitWait: a frontend going
        // (back) to Initialised after Connected does nothing, as in Linux netback and QEMU xen_nic.
        return dev.state === S.InitWait ? S.Connected : null;
      case S.Connected:
        return S.Connected;
      case S.Closing:
        return S.Closing;
      case S.Closed:
      case S.Unknown:
        // Unknown: F/state is gone or unreadable, which Linux treats like Closed.
        return S.Closed;
      case S.Reconfiguring:
      case S.Reconfigured:
        // Only used for XDP headroom changes, which are not offered: nothing to do.
        return null;
      default:
        throw new VifFatalError(Errno.EINVAL, `saw state ${fe} at frontend`, "the guest's netfront wrote an invalid state: restart its network driver");
    }
  }

  async connect(dev: XenDevice): Promise<void> {
    const e = this.entry(dev);
    if (!e.peer) throw new VifFatalError(Errno.ENODEV, "connecting: the vif has no host interface", "this is a qnicd bug: report it");
    const config = await this.readConfig(dev);
    const dir = this.opts.journalDir;
    const journals: JournalSource[] = [];
    if (dir !== undefined) this.removeJournals(dir, dev.domid, dev.devid); // a former connection's queues
    for (let q = 0; q < config.queues.length; q++) {
      const path = dir === undefined ? undefined : queueJournalPath(dir, dev.domid, dev.devid, q);
      if (path !== undefined) {
        try {
          writeFreshJournal(path, this.identity(dev, config, e.peer));
        } catch (err) {
          throw new VifFatalError(Errno.EIO, `writing its journal ${path}: ${oneLine((err as Error).message)}`, "check that qnicd's runtime directory is writable (--runtime-dir)");
        }
      }
      journals.push({ path, mapped: null, carry: undefined });
    }
    if (dir !== undefined) this.journalQueues.set(`${dev.domid}/${dev.devid}`, config.queues.length);
    const settings = this.settingsWatch(dev, e);
    const initial = await settings.read();
    await this.handOver(dev, e, config, journals, false, initial);
    e.origin = "connected";
    await this.watchSettings(e, settings, initial);
  }

  /**
   * The watch on B/rate and F/request-multicast-control for this connection (netback's credit and
   * mcast-ctrl watches): a change goes to every queue (netback's credit is per queue too).
   */
  private settingsWatch(dev: XenDevice, e: VifInfo): VifSettingsWatch {
    return new VifSettingsWatch(this.opts.xs, dev.name, dev.backendPath, dev.frontendPath!, this.opts.log, async (s) => {
      await Promise.all(e.queues.map((q) => this.opts.pool.update(q.connection.key, s)));
    });
  }

  private async watchSettings(e: VifInfo, w: VifSettingsWatch, initial: VifSettings): Promise<void> {
    await e.settings?.stop();
    e.settings = w;
    await w.start(initial);
  }

  /**
   * Takes over a vif an earlier qnicd left Connected (restart, crash): the frontend's nodes are read
   * and validated as on a first connect and must still be what the journal recorded; the worker
   * re-attaches each ring where the journal says, binds the guest's ports again and notifies it
   * once. No state node is written: the guest never sees its backend go. Throws VifFatalError
   * (the caller closes the vif, as before qnicd could adopt) when that cannot be done safely.
   */
  private async takeOver(dev: XenDevice, dir: string): Promise<void> {
    const path = journalPath(dir, dev.domid, dev.devid);
    let was: VifIdentity;
    try {
      was = readJournalIdentity(path);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? `no journal at ${path}` : oneLine((err as Error).message);
      throw new VifFatalError(Errno.ENOENT, `taking over from an earlier qnicd: ${why} (needs xl network-detach and network-attach)`, readoptHint(dev));
    }
    await this.hostSide(dev);
    const e = this.entry(dev);
    const config = await this.readConfig(dev);
    const now = this.identity(dev, config, e.peer!);
    const changed: string[] = (["backendPath", "txRingRef", "rxRingRef", "txEvtchn", "rxEvtchn"] as const).filter((k) => was[k] !== now[k]);
    if (JSON.stringify(queueRefsOf(was)) !== JSON.stringify(queueRefsOf(now))) changed.push("queues");
    if (was.peer?.kind !== now.peer.kind || was.peer?.name !== now.peer.name) changed.push("peer");
    if (changed.length) throw new VifFatalError(Errno.ESTALE, `taking over from an earlier qnicd: ${changed.join(", ")} changed since its journal was written (needs xl network-detach and network-attach)`, readoptHint(dev));
    const journals: JournalSource[] = [];
    for (let q = 0; q < config.queues.length; q++) {
      const qpath = queueJournalPath(dir, dev.domid, dev.devid, q);
      let carry: Partial<VifStats> | undefined;
      let mapped: MappedJournal | null = null;
      try {
        mapped = MappedJournal.open(qpath);
        carry = mapped.loadCounters() ?? undefined;
      } catch {
        // unreadable counters only cost the totals; the rings' state is checked by the worker
      }
      journals.push({ path: qpath, mapped, carry });
    }
    this.journalQueues.set(`${dev.domid}/${dev.devid}`, config.queues.length);
    const settings = this.settingsWatch(dev, e);
    const initial = await settings.read();
    try {
      await this.handOver(dev, e, config, journals, true, initial);
    } catch (err) {
      const f = err as VifFatalError;
      throw new VifFatalError(f.errno ?? Errno.EIO, `taking over from an earlier qnicd: ${f.message} (needs xl network-detach and network-attach)`, readoptHint(dev), { cause: err });
    }
    e.origin = "adopted";
    await this.watchSettings(e, settings, initial);
    let tx = 0, rx = 0;
    for (const q of e.queues) {
      tx += q.connection.replayed?.tx ?? 0;
      rx += q.connection.replayed?.rx ?? 0;
    }
    const carried = journals.every((j) => j.carry !== undefined);
    this.opts.log.info(`${dev.name}: taken over from an earlier qnicd without a reconnect${tx || rx ? ` (published ${tx} tx and ${rx} rx responses it had journaled)` : ""}`, { counters: carried ? "carried on" : "restarted", queues: e.queues.length });
  }

  /**
   * The frontend's keys, as readFrontendConfig asks for them, but with each directory they live in
   * (F, and F/queue-<n> of a multi-queue frontend) listed once first, so that keys the frontend did
   * not write are not asked for one by one: connect looks for 14 keys of a single-queue frontend,
   * which writes some of them (bench/vif-cost.ts's light netfront 5, Linux netfront 10), each
   * missing one an ENOENT round trip per vif. A key listed is read as before (a guest may change it
   * meanwhile); a listing that fails (xenstored refuses it, the directory is too large) leaves that
   * directory's keys read one by one, as before. The keys a listing shows that readFrontendConfig
   * may ask for (FRONTEND_KEYS: at most a fixed few, however many the guest wrote) are all asked
   * for as soon as the listing arrives, so they cost one round trip to xenstored, not one each in
   * a row; each is still read once and validated by readFrontendConfig.
   */
  private readConfig(dev: XenDevice): Promise<FrontendConfig> {
    const F = dev.frontendPath!;
    const xs = this.opts.xs;
    const reads = new Map<string, Promise<string | undefined>>();
    const read = (key: string): Promise<string | undefined> => {
      let value = reads.get(key);
      if (!value) {
        value = xs.tryRead(`${F}/${key}`);
        // Fetched ahead: one readFrontendConfig never asks for (it stopped at an error) must not
        // be an unhandled rejection; one it asks for rejects there as before.
        value.catch(() => {});
        reads.set(key, value);
      }
      return value;
    };
    const listings = new Map<string, Promise<Set<string> | null>>();
    const listing = (dir: string): Promise<Set<string> | null> => {
      let names = listings.get(dir);
      if (!names) {
        const prefix = dir === F ? "" : `${dir.slice(F.length + 1)}/`;
        names = xs.directory(dir).then(
          (n) => {
            const set = new Set(n);
            for (const name of set) if (FRONTEND_KEYS.has(name)) void read(`${prefix}${name}`);
            return set;
          },
          (e) => {
            if (e instanceof XenstoreConnectionError) throw e;
            return null;
          },
        );
        listings.set(dir, names);
      }
      return names;
    };
    return readFrontendConfig(
      {
        frontend: async (key) => {
          const slash = key.lastIndexOf("/");
          const names = await listing(slash < 0 ? F : `${F}/${key.slice(0, slash)}`);
          if (names !== null && !names.has(key.slice(slash + 1))) return undefined;
          return read(key);
        },
        backend: (key) => xs.tryRead(`${dev.backendPath}/${key}`),
      },
      this.features,
    );
  }

  private identity(dev: XenDevice, config: FrontendConfig, peer: PeerHandle): VifIdentity {
    return {
      backendPath: dev.backendPath,
      domid: dev.domid,
      devid: dev.devid,
      txRingRef: config.txRingRef,
      rxRingRef: config.rxRingRef,
      txEvtchn: config.txEvtchn,
      rxEvtchn: config.rxEvtchn,
      queueRefs: config.queues.map((q) => [q.txRingRef, q.rxRingRef, q.txEvtchn, q.rxEvtchn]),
      peer: { kind: peer.kind, name: peer.name },
      features: config.features,
    };
  }

  /**
   * Hands each of the vif's queues to the pool (each one ring pair, served on its own, as netback's
   * queues are), bounded in time; all or nothing: on a failure the queues already connected are
   * given back. On success e.queues and e.config are set.
   */
  private async handOver(dev: XenDevice, e: VifInfo, config: FrontendConfig, journals: readonly JournalSource[], adopt: boolean, settings: VifSettings): Promise<void> {
    const serial = ++this.serial;
    const n = config.queues.length;
    const evtchn = (q: (typeof config.queues)[number]) => (q.txEvtchn !== q.rxEvtchn ? `${q.txEvtchn}/${q.rxEvtchn}` : q.txEvtchn);
    // Logged before the hand-over so a worker that never answers (or takes the process down) is
    // visible as a "connecting" without its "connected".
    this.opts.log.info(`${dev.name}: connecting`, n === 1
      ? { tx_ring_ref: config.txRingRef, rx_ring_ref: config.rxRingRef, evtchn: evtchn(config), mac: config.mac, peer: e.peer?.name, rate: describeRate(settings.rate) }
      : { queues: n, rings: config.queues.map((q) => `${q.txRingRef}/${q.rxRingRef}`).join(" "), evtchns: config.queues.map(evtchn).join(" "), mac: config.mac, peer: e.peer?.name, rate: describeRate(settings.rate) });
    const links: (QueueLink | undefined)[] = [];
    const peers: PeerHandle[] = [];
    const keys: string[] = [];
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VifFatalError(Errno.ETIMEDOUT, `mapping rings and binding event channels: no worker answered within ${timeoutMs} ms`, "the worker pool is stuck: check /health and the worker log lines, then restart qnicd")), timeoutMs);
    });
    const giveBack = () => {
      // Whenever they do finish, give them back; never await them (one may never settle).
      for (const key of keys) void this.opts.pool.disconnect(key).catch(() => {});
      for (let q = 1; q < peers.length; q++) this.opts.peers.closeQueue(peers[q]);
    };
    try {
      for (let q = 0; q < n; q++) peers.push(q === 0 ? e.peer! : this.opts.peers.openQueue(e.peer!, q));
      const connecting = config.queues.map((queue, q) => {
        const key = n === 1 ? `${dev.name}#${serial}` : `${dev.name}#${serial}/q${q}`;
        keys.push(key);
        return this.opts.pool.connect({
          key,
          name: n === 1 ? dev.name : `${dev.name}-q${q}`,
          frontendDomid: dev.domid,
          devid: dev.devid,
          queue: q,
          queues: n,
          txRingRef: queue.txRingRef,
          rxRingRef: queue.rxRingRef,
          txEvtchn: queue.txEvtchn,
          rxEvtchn: queue.rxEvtchn,
          mac: config.mac,
          // The control ring is the vif's, served beside its queue 0.
          ...(q === 0 && config.ctrlRingRef !== undefined ? { ctrlRingRef: config.ctrlRingRef, ctrlEvtchn: config.ctrlEvtchn } : {}),
          features: config.features,
          peer: peers[q],
          journal: journals[q]?.path,
          adopt,
          settings,
        }, journals[q]?.carry).then((connection) => {
          links[q] = { connection, peer: peers[q], journal: null };
        });
      });
      await Promise.race([Promise.all(connecting), timedOut]);
    } catch (err) {
      giveBack();
      if (err instanceof VifFatalError) throw err;
      const errno = typeof (err as { errno?: unknown }).errno === "number" ? Math.abs((err as { errno: number }).errno) : Errno.EIO;
      throw new VifFatalError(errno, `mapping rings and binding event channels: ${oneLine((err as Error).message)}`, "check the grant refs and event channels the guest wrote (see the worker's message)", { cause: err });
    } finally {
      clearTimeout(timer);
    }
    e.config = config;
    e.queues = links as QueueLink[];
    e.mcastGroups = [];
    for (let q = 0; q < n; q++) {
      const j = journals[q];
      if (j?.path === undefined) continue;
      try {
        e.queues[q].journal = j.mapped ?? MappedJournal.open(j.path);
      } catch {
        // counters will not carry over a restart; the rings are served all the same
      }
    }
    // The host side's queue choice starts from the hash state the workers start from: none on a
    // fresh connect (this also clears a steering program an earlier connection left on the TAP),
    // the journaled one on a take-over, which queue 0's worker restored and the others get here.
    e.steerWarned = false;
    e.steerPending = undefined;
    const savedHash = adopt ? (e.queues[0]?.journal?.loadHash() ?? null) : null;
    if (savedHash && n > 1) this.updateQueues(e, e.queues.slice(1), { hash: savedHash });
    // One queue has no choice to steer (and an old kernel without TUNSETSTEERINGEBPF warns nobody).
    if (n > 1) this.steer(dev, e, savedHash);
    // The same for the multicast list (queue 0's worker restored its own filter from it).
    const savedGroups = adopt ? (e.queues[0]?.journal?.loadMcast() ?? null) : null;
    if (savedGroups) {
      e.mcastGroups = [...savedGroups];
      if (n > 1) this.updateQueues(e, e.queues.slice(1), { mcastGroups: savedGroups, mcastRestored: true });
    }
    this.opts.log.info(`${dev.name}: connected`, n === 1 ? { worker: e.queues[0].connection.worker, key: keys[0] } : { queues: n, workers: e.queues.map((l) => l.connection.worker).join(" ") });
  }

  /**
   * Saves every connected vif's counters into its journal, so a successor carries them on (called
   * every second and before a restart; a crash loses at most the last second's counts).
   */
  saveCounters(): void {
    const stats = this.opts.stats;
    if (!stats) return;
    for (const e of this.info.values()) {
      for (const q of e.queues) {
        if (!q.journal) continue;
        // An idle queue's slot version stays put: its journal already holds these counters.
        const version = stats.version(q.connection.statsSlot.index);
        if (this.savedVersion.get(q.journal) === version) continue;
        try {
          const s = readVifStats(stats, q.connection.statsSlot);
          if (s) q.journal.saveCounters(s);
          this.savedVersion.set(q.journal, version);
        } catch {
          // a slot mid-move reads as nothing this time; the next save catches up
        }
      }
    }
  }

  /**
   * Start-up: journals of vifs that are gone (the toolstack removed them while no qnicd ran) are
   * removed, with the persistent TAP each named. `known`: the devices the bus found.
   */
  removeLeftovers(known: readonly XenDevice[]): void {
    const dir = this.opts.journalDir;
    if (dir === undefined) return;
    const present = new Set(known.map((d) => `${d.domid}/${d.devid}`));
    for (const j of listJournals(dir)) {
      if (present.has(`${j.domid}/${j.devid}`)) continue;
      let peer: string | undefined;
      try {
        const id = readJournalIdentity(j.path);
        if (id.peer?.kind === this.opts.peers.kind) peer = id.peer.name;
      } catch {
        // a journal we cannot read names nothing we could safely remove
      }
      if (peer !== undefined && validInterfaceName(peer)) this.opts.peers.removeLeftover(peer);
      this.removeJournals(dir, j.domid, j.devid);
      this.opts.log.info(`vif${j.domid}.${j.devid}: removed while no qnicd ran: its journal${peer ? ` and interface ${peer}` : ""} removed`);
    }
  }

  /**
   * Removes every journal of one vif: those this process knows of by count, and queue journals an
   * earlier qnicd left (found by one listing of `dir`, made the first time; this process alone
   * writes there, under its owner lock, so the listing stays true).
   */
  private removeJournals(dir: string, domid: number, devid: number): void {
    const key = `${domid}/${devid}`;
    removeQueueJournals(dir, domid, devid, Math.max(1, this.journalQueues.get(key) ?? 1));
    this.journalQueues.delete(key);
    this.strayQueueJournals ??= new Set(listQueueJournalNames(dir));
    for (const name of this.strayQueueJournals) {
      if (!isQueueJournalOf(name, domid, devid)) continue;
      removeJournal(join(dir, name));
      this.strayQueueJournals.delete(name);
    }
  }

  async disconnect(dev: XenDevice): Promise<void> {
    const e = this.info.get(dev);
    // The rings are given back: nothing is left for a successor to take over.
    if (this.opts.journalDir !== undefined) this.removeJournals(this.opts.journalDir, dev.domid, dev.devid);
    if (!e || e.queues.length === 0) return;
    await e.settings?.stop();
    e.settings = null;
    const queues = e.queues;
    e.queues = [];
    e.origin = null;
    // Bounded like connect: a worker that never confirms must not hold the vif's teardown (and the
    // daemon's shutdown) forever; closing the pool terminates such a worker anyway.
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const confirmed = await Promise.race([
      Promise.all(queues.map((q) => this.opts.pool.disconnect(q.connection.key))).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]).finally(() => clearTimeout(timer));
    // The queue fds go once the workers let go (or are past waiting for): the interface stays.
    for (const q of queues) if (q.peer !== e.peer) this.opts.peers.closeQueue(q.peer);
    if (confirmed) this.opts.log.info(`${dev.name}: disconnected`);
    else this.opts.log.error(`${dev.name}: no worker confirmed the disconnect within ${timeoutMs} ms; closing the vif anyway (restart qnicd if /health shows a stuck worker)`);
  }

  async unrealize(dev: XenDevice): Promise<void> {
    const e = this.info.get(dev);
    this.info.delete(dev);
    await e?.settings?.stop();
    if (e) {
      await Promise.all(e.queues.map((q) => this.opts.pool.disconnect(q.connection.key)));
      for (const q of e.queues) if (q.peer !== e.peer) this.opts.peers.closeQueue(q.peer);
    }
    if (e?.peer) this.opts.peers.destroy(e.peer);
  }

  /** The device and vif that queue connection `key` belongs to. */
  private byQueueKey(key: string): [XenDevice, VifInfo] | undefined {
    for (const [dev, e] of this.info) if (e.queues.some((q) => q.connection.key === key)) return [dev, e];
    return undefined;
  }

  /** Hands `queues` of vif `e` its current settings plus `extra` (what another queue's worker reported). */
  private updateQueues(e: VifInfo, queues: readonly QueueLink[], extra: Partial<VifSettings>): void {
    const settings: VifSettings = { ...(e.settings?.current ?? { rate: null, multicastControl: false }), ...extra };
    for (const q of queues) void this.opts.pool.update(q.connection.key, settings).catch(() => {});
  }

  /**
   * Queue 0's control ring changed the vif's hash configuration: the vif's other queues (each
   * maybe on another worker) take it on, so hash extras reach the guest on every queue's rx.
   */
  private onHash(key: string, config: HashConfig): void {
    const found = this.byQueueKey(key);
    if (!found) return;
    const [dev, e] = found;
    if (e.queues[0]?.connection.key !== key) return;
    this.updateQueues(e, e.queues.slice(1), { hash: config });
    this.steerLater(dev, e, config);
  }

  /**
   * The host side's guest-rx queue choice follows the configuration (netback's xenvif_select_queue
   * runs for every frame to the vif): on a TAP, a steering program. Coalesced to the latest
   * configuration per turn of the event loop, so a frontend hammering its control ring costs one
   * table build, not one per request.
   */
  private steerLater(dev: XenDevice, e: VifInfo, config: HashConfig): void {
    if (!this.opts.peers.steer || e.queues.length < 2) return;
    const waiting = e.steerPending !== undefined;
    e.steerPending = config;
    if (waiting) return;
    setImmediate(() => {
      const c = e.steerPending;
      e.steerPending = undefined;
      if (c !== undefined && this.info.get(dev) === e && e.queues.length >= 2) this.steer(dev, e, c);
    });
  }

  private steer(dev: XenDevice, e: VifInfo, c: HashConfig | null): void {
    const peers = this.opts.peers;
    if (!peers.steer || !e.peer) return;
    const on = c !== null && c.alg === XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ && e.queues.length >= 2;
    try {
      peers.steer(e.peer, on ? { queues: e.queues.length, flags: c.flags, key: c.key, size: c.size, mapping: c.mapping } : null);
    } catch (err) {
      if (e.steerWarned) return;
      e.steerWarned = true;
      this.opts.log.warn(`${dev.name}: ${oneLine((err as Error).message)}: its guest-rx queues stay on the kernel's flow hash`);
    }
  }

  /**
   * A multi-queue vif's queue took MCAST_ADD / MCAST_DEL extras: the vif's one list (netback's
   * fe_mcast_addr, at most XEN_NETBK_MCAST_MAX, a del removing the first match) is updated and
   * handed to every queue.
   */
  private onMcast(key: string, changes: { add: boolean; group: string }[]): void {
    const e = this.byQueueKey(key)?.[1];
    if (!e) return;
    for (const c of changes) {
      if (c.add) {
        if (e.mcastGroups.length < XEN_NETBK_MCAST_MAX) e.mcastGroups.push(c.group);
      } else {
        const i = e.mcastGroups.indexOf(c.group);
        if (i >= 0) e.mcastGroups.splice(i, 1);
      }
    }
    this.updateQueues(e, e.queues, { mcastGroups: [...e.mcastGroups] });
  }

  private onFault(f: VifFault): void {
    const found = this.byQueueKey(f.key);
    if (!found) return;
    const errno = Number.isInteger(f.errno) && f.errno > 0 ? f.errno : Errno.EPROTO;
    this.bus?.fail(found[0], new VifFatalError(errno, `data path: ${oneLine(f.message)}`, "the guest's netfront broke the ring protocol: restart the guest's network driver (the worker disabled this vif only)"));
  }
}
