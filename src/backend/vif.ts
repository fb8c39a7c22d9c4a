// The vif device: what the generic bus (xenbus.ts) calls at each step, like QEMU's xen_nic.c hooks.
// realize: features + host interface; frontendChanged: the Linux netback state mapping; connect:
// validated frontend nodes handed to the worker pool; disconnect/unrealize: given back.
import type { Logger } from "../log.ts";
import type { PeerProvisioner } from "../net/peer-provisioner.ts";
import type { ConnectedVif, PeerHandle, VifFault, WorkerPool } from "../pool/types.ts";
import { XenbusState } from "../xen/xenbus-state.ts";
import type { XenstoreClient } from "../xenstore/index.ts";
import type { TargetState } from "./backend-state.ts";
import type { XenDevice } from "./device.ts";
import { Errno, oneLine, quoteGuest, VifFatalError } from "./errors.ts";
import { BACKEND_FEATURES, type FeatureNode } from "./features.ts";
import { readFrontendConfig, type FrontendConfig } from "./frontend-nodes.ts";
import type { DeviceHooks, XenBus } from "./xenbus.ts";

const S = XenbusState;

/** Linux's dev_valid_name(): shorter than IFNAMSIZ (16), not "." or "..", no '/', ':' or whitespace. */
export function validInterfaceName(s: string): boolean {
  return /^[^/:\s]{1,15}$/.test(s) && s !== "." && s !== "..";
}

/** What the vif layer holds per device. */
export interface VifInfo {
  peer: PeerHandle | null;
  config: FrontendConfig | null;
  connection: ConnectedVif | null;
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
}

export class VifHooks implements DeviceHooks {
  private readonly info = new Map<XenDevice, VifInfo>();
  private serial = 0;
  private bus: XenBus | undefined;
  private readonly features: readonly FeatureNode[];

  constructor(private readonly opts: VifHooksOptions) {
    this.features = opts.features ?? BACKEND_FEATURES;
    opts.pool.onFault((f) => this.onFault(f));
    opts.pool.onWorkerLost((worker, moved) => {
      for (const c of moved) {
        const entry = [...this.info.values()].find((i) => i.connection?.key === c.key);
        if (entry) entry.connection = c;
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
    if (!e) this.info.set(dev, (e = { peer: null, config: null, connection: null }));
    return e;
  }

  async realize(dev: XenDevice): Promise<void> {
    const B = dev.backendPath;
    // One transaction, as netback_probe: a frontend never sees half the feature set.
    await this.opts.xs.transaction(async (t) => {
      if ((await t.tryRead(`${B}/state`)) === undefined) return; // being removed: do not resurrect B
      for (const [key, value] of this.features) await t.write(`${B}/${key}`, value);
    });
    const e = this.entry(dev);
    if (e.peer) return; // a reconnect keeps its interface, as Linux keeps vifN.M across reconnects
    // Before InitWait: libxl runs vif-bridge right after it sees InitWait, and the script needs the
    // interface. B/vifname is the toolstack's (the guest cannot write B); validated all the same.
    const vifname = await this.opts.xs.tryRead(`${B}/vifname`);
    if (vifname !== undefined && vifname !== "" && !validInterfaceName(vifname)) {
      throw new VifFatalError(Errno.EINVAL, `reading vifname: ${quoteGuest(vifname)} is not a valid interface name`, "give the vif a vifname of 1 to 15 characters without '/', ':' or spaces");
    }
    const name = vifname || `${this.opts.vifnamePrefix}${dev.domid}.${dev.devid}`;
    try {
      e.peer = this.opts.peers.create(name);
    } catch (err) {
      const errno = typeof (err as { errno?: unknown }).errno === "number" ? (err as { errno: number }).errno : Errno.EIO;
      throw new VifFatalError(errno, `creating interface: ${oneLine((err as Error).message)}`, "check that no other interface has that name and that qnicd may create TAPs (or run with --peer switch)");
    }
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
    const F = dev.frontendPath!;
    const xs = this.opts.xs;
    const config = await readFrontendConfig(
      {
        frontend: (key) => xs.tryRead(`${F}/${key}`),
        backend: (key) => xs.tryRead(`${dev.backendPath}/${key}`),
      },
      this.features,
    );
    const key = `${dev.name}#${++this.serial}`;
    const evtchn = config.splitEventChannels ? `${config.txEvtchn}/${config.rxEvtchn}` : config.txEvtchn;
    // Logged before the hand-over so a worker that never answers (or takes the process down) is
    // visible as a "connecting" without its "connected".
    this.opts.log.info(`${dev.name}: connecting`, { tx_ring_ref: config.txRingRef, rx_ring_ref: config.rxRingRef, evtchn, mac: config.mac, peer: e.peer.name });
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Whenever it does finish, give it back; never await it (it may never settle).
        void this.opts.pool.disconnect(key).catch(() => {});
        reject(new VifFatalError(Errno.ETIMEDOUT, `mapping rings and binding event channels: no worker answered within ${timeoutMs} ms`, "the worker pool is stuck: check /health and the worker log lines, then restart qnicd"));
      }, timeoutMs);
    });
    try {
      const connecting = this.opts.pool.connect({
        key,
        name: dev.name,
        frontendDomid: dev.domid,
        devid: dev.devid,
        txRingRef: config.txRingRef,
        rxRingRef: config.rxRingRef,
        txEvtchn: config.txEvtchn,
        rxEvtchn: config.rxEvtchn,
        mac: config.mac,
        features: config.features,
        peer: e.peer,
      });
      e.connection = await Promise.race([connecting, timedOut]);
    } catch (err) {
      if (err instanceof VifFatalError) throw err;
      const errno = typeof (err as { errno?: unknown }).errno === "number" ? Math.abs((err as { errno: number }).errno) : Errno.EIO;
      throw new VifFatalError(errno, `mapping rings and binding event channels: ${oneLine((err as Error).message)}`, "check the grant refs and event channels the guest wrote (see the worker's message)", { cause: err });
    } finally {
      clearTimeout(timer);
    }
    e.config = config;
    this.opts.log.info(`${dev.name}: connected`, { worker: e.connection.worker, key });
  }

  async disconnect(dev: XenDevice): Promise<void> {
    const e = this.info.get(dev);
    const c = e?.connection;
    if (!e || !c) return;
    e.connection = null;
    // Bounded like connect: a worker that never confirms must not hold the vif's teardown (and the
    // daemon's shutdown) forever; closing the pool terminates such a worker anyway.
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const confirmed = await Promise.race([
      this.opts.pool.disconnect(c.key).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]).finally(() => clearTimeout(timer));
    if (confirmed) this.opts.log.info(`${dev.name}: disconnected`);
    else this.opts.log.error(`${dev.name}: no worker confirmed the disconnect within ${timeoutMs} ms; closing the vif anyway (restart qnicd if /health shows a stuck worker)`);
  }

  async unrealize(dev: XenDevice): Promise<void> {
    const e = this.info.get(dev);
    this.info.delete(dev);
    if (e?.connection) await this.opts.pool.disconnect(e.connection.key);
    if (e?.peer) this.opts.peers.destroy(e.peer);
  }

  private onFault(f: VifFault): void {
    for (const [dev, e] of this.info) {
      if (e.connection?.key !== f.key) continue;
      const errno = Number.isInteger(f.errno) && f.errno > 0 ? f.errno : Errno.EPROTO;
      this.bus?.fail(dev, new VifFatalError(errno, `data path: ${oneLine(f.message)}`, "the guest's netfront broke the ring protocol: restart the guest's network driver (the worker disabled this vif only)"));
      return;
    }
  }
}
