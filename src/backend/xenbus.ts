// The generic backend bus (QEMU's xen-bus.c, Linux's xenbus backend core): discovers devices under
// /local/domain/<bedom>/backend/<type>, watches them and their frontends' state, and drives one
// state machine per device (device-machine.ts). What a device *is* lives in hooks (vif.ts), like xen_nic.c's.
//
// Work is coalesced and serialised per device: a watch event only marks its device dirty (and the
// node it named changed); one run at a time re-reads the state nodes that changed and acts on the
// latest values. A guest rewriting its state node in a loop therefore costs at most one pending
// re-evaluation, never a queue (XSA-349 style watch floods), and two transitions of one device
// never interleave.
import type { Logger } from "../log.ts";
import { XenbusState } from "../xen/xenbus-state.ts";
import { isXenstoreError, XenstoreConnectionError, type Watch, type XenstoreClient } from "../xenstore/index.ts";
import { XenDevice, type StateNode } from "./device.ts";
import { DeviceMachine, type DeviceHooks } from "./device-machine.ts";
import { oneLine, type VifFatalError } from "./errors.ts";
import { backendRoot, classifyBackendEvent, deviceBackendPath, deviceErrorDir, DOMID_MAX, parseIdComponent, vifName } from "./paths.ts";

export type { DeviceHooks } from "./device-machine.ts";

const S = XenbusState;

/**
 * The nodes under B whose change can move a device's state machine (device-machine.ts reads no
 * others on a run): B itself (removed), state, online, hotplug-status, and frontend until it is
 * known. A write anywhere else under B (the toolstack's other keys, the feature nodes realize wrote,
 * B/rate) starts no run: a run costs requests (and did cost four reads each), and with every write
 * under B kicking one, runs were most of what connecting N vifs asked of xenstored. Those go to
 * DeviceHooks.nodeChanged.
 */
const MACHINE_NODES: ReadonlySet<string> = new Set(["", "state", "online", "hotplug-status", "frontend"]);
/** Those of them a run keeps what it read of (XenDevice.nodes) until their next watch event. */
const KEPT_NODES: ReadonlyMap<string, StateNode> = new Map([
  ["state", "state"],
  ["online", "online"],
  ["hotplug-status", "hotplug-status"],
]);

export interface XenBusOptions {
  xs: XenstoreClient;
  backendDomid: number;
  /** "vif" (Linux netback's name, what libxl writes) or "qnic" (QEMU's). */
  type: string;
  hooks: DeviceHooks;
  log: Logger;
  /** Prefix of device names in logs ("vif" -> vif3.0). */
  namePrefix?: string;
}

export class XenBus {
  readonly root: string;
  private readonly xs: XenstoreClient;
  private readonly hooks: DeviceHooks;
  private readonly log: Logger;
  private readonly machine: DeviceMachine;
  private readonly devices = new Map<string, XenDevice>();
  private rootWatch: Watch | undefined;
  private scanDirty = false;
  /** Domains whose directory alone needs listing (a node of a device not known yet changed). */
  private readonly domainsDirty = new Set<number>();
  private scanning: Promise<void> | null = null;
  private stopping = false;
  private readonly onReconnected = () => this.resync();

  constructor(private readonly opts: XenBusOptions) {
    this.xs = opts.xs;
    this.hooks = opts.hooks;
    this.log = opts.log;
    this.root = backendRoot(opts.backendDomid, opts.type);
    this.machine = new DeviceMachine({
      xs: this.xs,
      hooks: this.hooks,
      log: this.log,
      kick: (dev, node) => this.kick(dev, node),
      forgotten: (dev) => this.devices.delete(dev.key),
    });
  }

  /** Watches the backend directory and handles every device already there. */
  async start(): Promise<void> {
    this.xs.on("reconnected", this.onReconnected);
    // The watch fires once right away (a scan), then for every change below the root.
    this.rootWatch = await this.xs.watch(this.root, (path) => this.onBackendEvent(path));
    this.requestScan();
    await this.idle();
  }

  /** Every device the bus knows. */
  list(): XenDevice[] {
    return [...this.devices.values()];
  }

  /** Resolves once no scan and no device run is in progress (tests, startup). */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [this.scanning, ...[...this.devices.values()].map((d) => d.running)].filter((p): p is Promise<void> => p !== null);
      if (busy.length === 0) return;
      await Promise.all(busy);
    }
  }

  /**
   * Waits for the runs in progress, unless xenstored is (or goes) away: a run parked on a read
   * would then wait for it forever, and shutdown must not. Such a run ends when the client closes.
   */
  private idleOrXenstoreDown(): Promise<void> {
    if (!this.xs.connected) {
      this.log.warn("stopping while xenstore is unreachable: vifs are disconnected, their Closed state cannot be written");
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        this.xs.off("disconnected", done);
        resolve();
      };
      this.xs.on("disconnected", done);
      this.idle().then(done, done);
    });
  }

  /** Disables one device from outside a transition (a pool fault): error node, then Closing. */
  fail(dev: XenDevice, err: VifFatalError): void {
    if (dev.forgotten) return;
    dev.pendingFatal = err;
    this.kick(dev);
  }

  /**
   * Clean shutdown: no more watch-driven work; every device disconnected and written Closed
   * (libxl and the frontend see the backend gone, not hung), its host interface released.
   */
  async stop(): Promise<void> {
    if (!(await this.quiesce())) return;
    for (const dev of this.devices.values()) {
      try {
        if (dev.state !== S.Initialising) await this.machine.setBackendState(dev, S.Closed);
      } catch (e) {
        if (dev.state === S.Connected) await this.hooks.disconnect(dev).catch(() => {});
        this.log.warn(`${dev.name}: could not write Closed while stopping: ${oneLine((e as Error).message)}`);
      }
      await this.machine.release(dev);
    }
    this.devices.clear();
  }

  /**
   * Stop for a restart (--on-exit keep): no more watch-driven work, and nothing written: every
   * device keeps its state nodes, its rings stay the guest's, and the next qnicd takes it over
   * (DeviceHooks.adopt). The data path is stopped by the caller (the pool), after this.
   */
  async detach(): Promise<void> {
    if (!(await this.quiesce())) return;
    // All at once: a restart's guests wait for this stop, one xenstored round trip per vif in a row.
    const watches = [...this.devices.values()].map((dev) => {
      const w = dev.frontendWatch;
      dev.frontendWatch = undefined;
      return w?.unwatch().catch(() => {});
    });
    await Promise.all(watches);
    this.devices.clear();
  }

  /** No more watch-driven work, and the runs in progress finished; false if a stop already began. */
  private async quiesce(): Promise<boolean> {
    if (this.stopping) return false;
    this.stopping = true;
    this.xs.off("reconnected", this.onReconnected);
    await this.rootWatch?.unwatch().catch(() => {});
    await this.idleOrXenstoreDown();
    return true;
  }

  // ---- discovery -------------------------------------------------------------------------

  private onBackendEvent(path: string): void {
    if (this.stopping) return;
    const t = classifyBackendEvent(this.root, path);
    if (t.kind === "scan") this.requestScan();
    else if (t.kind === "device") {
      const dev = this.devices.get(`${t.domid}/${t.devid}`);
      // A node of a device we do not know yet: it was just created, so look for it in its
      // domain's directory (listing every domain here made connecting N vifs cost O(N^2) reads).
      if (!dev) this.requestScan(t.domid);
      else if (MACHINE_NODES.has(t.node)) this.kick(dev, KEPT_NODES.get(t.node));
      else if (!dev.forgotten) this.hooks.nodeChanged?.(dev, t.node);
    }
  }

  /** After xenstored came back: watches are re-registered; re-read everything, tear nothing down. */
  private resync(): void {
    if (this.stopping) return;
    this.log.info("xenstore reconnected: re-reading every device");
    this.requestScan();
    for (const dev of this.devices.values()) this.kick(dev);
  }

  /** Lists the whole root, or with `domid` only that domain's directory, coalescing requests. */
  private requestScan(domid?: number): void {
    if (domid === undefined) this.scanDirty = true;
    else this.domainsDirty.add(domid);
    if (this.scanning || this.stopping) return;
    this.scanning = (async () => {
      try {
        while ((this.scanDirty || this.domainsDirty.size > 0) && !this.stopping) {
          if (this.scanDirty) {
            this.scanDirty = false;
            this.domainsDirty.clear();
            await this.scan();
          } else {
            const [d] = this.domainsDirty;
            this.domainsDirty.delete(d!);
            await this.scanDomain(d!);
          }
        }
      } catch (e) {
        // Lost xenstore: the reconnect handler scans again.
        if (!(e instanceof XenstoreConnectionError)) this.log.error(`scanning ${this.root} failed: ${oneLine((e as Error).message)}`);
      } finally {
        this.scanning = null;
      }
    })();
  }

  private async scan(): Promise<void> {
    const seen = new Set<string>();
    for (const d of await this.listDir(this.root)) {
      const domid = parseIdComponent(d, DOMID_MAX);
      if (domid !== undefined) await this.scanDevices(domid, seen);
    }
    // Devices whose directory vanished find out in their own run (and are forgotten there).
    for (const [key, dev] of this.devices) if (!seen.has(key)) this.kick(dev);
  }

  private async scanDomain(domid: number): Promise<void> {
    const seen = new Set<string>();
    await this.scanDevices(domid, seen);
    for (const [key, dev] of this.devices) if (dev.domid === domid && !seen.has(key)) this.kick(dev);
  }

  /** Adds the devices of `domid` not known yet, each kicked once; records every key it lists in `seen`. */
  private async scanDevices(domid: number, seen: Set<string>): Promise<void> {
    for (const dv of await this.listDir(`${this.root}/${domid}`)) {
      const devid = parseIdComponent(dv);
      if (devid === undefined) continue;
      const key = `${domid}/${devid}`;
      seen.add(key);
      if (this.devices.has(key)) continue;
      // Only new devices run here: a known one is kicked by the watch events of its own nodes
      // (kicking every device on every scan made connecting N vifs cost O(N^2) re-evaluations).
      const dev = new XenDevice(
        domid,
        devid,
        vifName(domid, devid, this.opts.namePrefix),
        deviceBackendPath(this.root, domid, devid),
        deviceErrorDir(this.opts.backendDomid, this.opts.type, domid, devid),
      );
      this.devices.set(key, dev);
      this.log.debug(`${dev.name}: found ${dev.backendPath}`);
      this.kick(dev);
    }
  }

  private async listDir(path: string): Promise<string[]> {
    try {
      return await this.xs.directory(path);
    } catch (e) {
      if (isXenstoreError(e, "ENOENT")) return [];
      throw e;
    }
  }

  // ---- per-device runs -------------------------------------------------------------------

  /** Schedules a run; `node`: the StateNode a watch event named (none: re-read them all). */
  private kick(dev: XenDevice, node?: StateNode): void {
    if (this.stopping || dev.forgotten) return;
    dev.changed(node);
    dev.dirty = true;
    if (dev.running) return;
    dev.running = (async () => {
      try {
        while (dev.dirty && !this.stopping && !dev.forgotten) {
          dev.dirty = false;
          try {
            await this.machine.evaluate(dev);
          } catch (e) {
            if (e instanceof XenstoreConnectionError) {
              // xenstored went away mid-run: leave everything as it is; resync() runs us again.
              this.log.debug(`${dev.name}: paused until xenstore is back: ${oneLine(e.message)}`);
              break;
            }
            this.log.error(`${dev.name}: handling a state change failed: ${oneLine((e as Error).message)}`);
          }
        }
      } finally {
        dev.running = null;
      }
    })();
  }
}
