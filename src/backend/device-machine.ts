// One device's state machine, run by the bus (xenbus.ts) one re-evaluation at a time: read the
// device's state nodes, decide (toolstack first, then hotplug, then the frontend), and walk the
// backend's state graph (backend-state.ts) doing each step's hook. QEMU's xen_be_check_state and
// Linux netback's frontend_changed/set_backend_state, in one place.
import type { Logger } from "../log.ts";
import { XenbusState, xenbusStateName } from "../xen/xenbus-state.ts";
import { isXenstoreError, XenstoreConnectionError, type XenstoreClient } from "../xenstore/index.ts";
import { pathTo, type BackendState, type StepAction, type TargetState } from "./backend-state.ts";
import type { StateNode, XenDevice } from "./device.ts";
import { Errno, oneLine, VifFatalError } from "./errors.ts";

const S = XenbusState;

/** What a device type supplies. Every hook runs inside its device's serialised run. */
export interface DeviceHooks {
  /** Everything that needs no frontend (features, host interface); on the way to InitWait. Idempotent. */
  realize(dev: XenDevice): Promise<void>;
  /** The state the backend should head for, given the frontend's; null: nothing to do. May throw VifFatalError. */
  frontendChanged(dev: XenDevice, frontendState: number): TargetState | null;
  /** Reads the frontend's nodes and starts serving it. Throws VifFatalError (or anything: treated as EIO). */
  connect(dev: XenDevice): Promise<void>;
  /** Stops serving it. Idempotent; must not throw for "not connected". */
  disconnect(dev: XenDevice): Promise<void>;
  /** Releases what realize made; the device is being forgotten. */
  unrealize(dev: XenDevice): Promise<void>;
  /**
   * Serves a device an earlier backend instance left Connected, with both ends still Connected,
   * without writing a state node (Linux netback after an unbind/bind of its driver). Throws
   * VifFatalError when it cannot be done safely. Absent: such devices are closed for the guest to
   * reconnect.
   */
  adopt?(dev: XenDevice): Promise<void>;
  /**
   * A node under B changed that no state-machine run reads (not state, online, hotplug-status or
   * frontend): B/rate, for one. Called from the watch event, outside the device's run; must not throw.
   */
  nodeChanged?(dev: XenDevice, node: string): void;
}

export interface DeviceMachineOptions {
  xs: XenstoreClient;
  hooks: DeviceHooks;
  log: Logger;
  /** Schedule another run of this device (a watch fired on `node`, or anything may have changed). */
  kick(dev: XenDevice, node?: StateNode): void;
  /** The device is gone for good: drop it. */
  forgotten(dev: XenDevice): void;
}

/** What the toolstack-written B/frontend must look like: the guest's own vif directory. */
const frontendPathPattern = (domid: number, devid: number) => `/local/domain/${domid}/device/vif/${devid}`;

export class DeviceMachine {
  private readonly xs: XenstoreClient;
  private readonly hooks: DeviceHooks;
  private readonly log: Logger;

  constructor(private readonly opts: DeviceMachineOptions) {
    this.xs = opts.xs;
    this.hooks = opts.hooks;
    this.log = opts.log;
  }

  /** One re-evaluation: read the device's state nodes, then act on them (QEMU's xen_be_check_state). */
  async evaluate(dev: XenDevice): Promise<void> {
    const B = dev.backendPath;
    // B itself is read only when a node that B keeps while it exists is missing (B/frontend before
    // setup, B/state after): one request less per run, and runs are what connecting N vifs costs.
    const gone = async () => (await this.xs.tryRead(B)) === undefined;

    if (dev.frontendPath === undefined && !(await this.setup(dev))) {
      if (dev.frontendPath === undefined && (await gone())) return this.forget(dev, "its backend directory was removed");
      return;
    }

    const [beRaw, onlineRaw, hotplug, feRaw] = await Promise.all([
      this.readNode(dev, "state", `${B}/state`),
      this.readNode(dev, "online", `${B}/online`),
      this.readNode(dev, "hotplug-status", `${B}/hotplug-status`),
      // A driver domain cannot read a removed frontend's state: xenstored answers EACCES, not
      // ENOENT, for a missing node under a directory the caller may not read (xenstored's
      // errno_from_parents). Linux's xenbus_read_driver_state reads any failure as Unknown too.
      this.readNode(dev, "frontend-state", `${dev.frontendPath}/state`, true),
    ]);
    if (beRaw === undefined && (await gone())) return this.forget(dev, "its backend directory was removed");
    const beNode = parseState(beRaw);
    const fe = parseState(feRaw) ?? S.Unknown;
    if (fe !== dev.frontendState) {
      this.log.debug(`${dev.name}: frontend ${xenbusStateName(dev.frontendState)} -> ${xenbusStateName(fe)}`);
      // A frontend that moves to Initialising, Closed or Unknown has let go of the failed
      // connection: it may try again. Staying where it was (Connected) never clears the latch.
      if (fe === S.Initialising || fe === S.Closed || fe === S.Unknown) dev.failed = false;
    }
    dev.frontendState = fe;
    // As Linux's xenbus_dev_is_online: a missing or unreadable node means offline.
    dev.online = onlineRaw !== undefined && (parseState(onlineRaw) ?? 0) !== 0;
    // Linux netback defers Connected until the hotplug script reports "connected"; libxl writes an
    // empty hotplug-status precisely to make the backend wait. No node: no script to wait for.
    dev.hotplugReady = hotplug === undefined || hotplug === "connected";

    if (dev.written === undefined) {
      const found = this.resume(dev, beNode, fe, hotplug);
      if (found === "close") {
        await this.setBackendState(dev, S.Closing);
        return this.finish(dev);
      }
      if (found === "adopt") {
        try {
          await this.hooks.adopt!(dev);
          return this.finish(dev);
        } catch (e) {
          if (e instanceof XenstoreConnectionError) throw e;
          // Connected with nothing mapped: fatal() writes the error node and walks it to Closing.
          await this.fatal(dev, asFatal(e, "connect"));
          return this.finish(dev);
        }
      }
    }
    // The toolstack asks for the device back (libxl: online=0 and state=5 in one transaction).
    const toolstackClosing = beNode === S.Closing && dev.written !== S.Closing;
    if (beNode !== undefined && beNode !== dev.written) dev.written = beNode;

    if (dev.pendingFatal) {
      const err = dev.pendingFatal;
      dev.pendingFatal = undefined;
      if (dev.state === S.Connected) await this.fatal(dev, err);
    }

    if (!dev.online || toolstackClosing) {
      // Not online yet and nobody asked for Closed: wait (QEMU's try_init: "not online").
      if (dev.state === S.Initialising && !toolstackClosing) return;
      // Closed at the toolstack's request: a frontend still showing Connected must not bring the
      // device straight back; it has to start over (Initialising) first.
      if (toolstackClosing) dev.failed = true;
      await this.setBackendState(dev, S.Closed);
      return this.finish(dev);
    }

    if (hotplug === "error" && !dev.failed && dev.state !== S.Closing && dev.state !== S.Closed) {
      const why = (await this.xs.tryRead(`${B}/hotplug-error`)) ?? "no hotplug-error given";
      await this.fatal(dev, new VifFatalError(Errno.EIO, `hotplug script failed: ${oneLine(why).slice(0, 200)}`, "see the hotplug script's log (/var/log/xen/xen-hotplug.log) and the vif's bridge settings"));
      return this.finish(dev);
    }

    // Probe (Linux netback_probe): an online device gets its features and host side, then waits.
    if (dev.state === S.Initialising && !(await this.setBackendState(dev, S.InitWait))) return this.finish(dev);

    let target: TargetState | null;
    try {
      target = this.hooks.frontendChanged(dev, fe);
    } catch (e) {
      if (!dev.failed) await this.fatal(dev, asFatal(e, "frontend state"));
      return this.finish(dev);
    }
    // After a fatal error only a way out is followed: a frontend that stays Connected must not
    // make the backend reconnect (and fail) on every write it makes.
    if (target !== null && !(dev.failed && (target === S.Connected || target === S.InitWait))) await this.setBackendState(dev, target);
    await this.finish(dev);
  }

  /** A StateNode's value: what the last run read, unless a watch event on it came since (XenDevice.nodes). */
  private async readNode(dev: XenDevice, node: StateNode, path: string, eaccesIsMissing = false): Promise<string | undefined> {
    const count = dev.nodeEvents[node];
    const last = dev.nodes.get(node);
    if (last !== undefined && last.count === count) return last.value;
    let value: string | undefined;
    try {
      value = await this.xs.tryRead(path);
    } catch (e) {
      if (!(eaccesIsMissing && isXenstoreError(e, "EACCES"))) throw e;
    }
    dev.nodes.set(node, { value, count });
    return value;
  }

  /** xen_be_try_setup: learn where the frontend is and watch its state. */
  private async setup(dev: XenDevice): Promise<boolean> {
    const fe = await this.xs.tryRead(`${dev.backendPath}/frontend`);
    if (fe === undefined) return false; // the toolstack writes it with everything else; wait for it
    if (fe !== frontendPathPattern(dev.domid, dev.devid)) {
      if (!dev.failed) {
        await this.fatal(dev, new VifFatalError(Errno.EINVAL, `reading frontend: ${JSON.stringify(fe.slice(0, 100))} is not ${frontendPathPattern(dev.domid, dev.devid)}`, "the toolstack wrote a frontend path for another device: recreate the vif"));
      }
      return false;
    }
    dev.frontendPath = fe;
    dev.frontendWatch = await this.xs.watch(`${fe}/state`, () => this.opts.kick(dev, "frontend-state"));
    return true;
  }

  /**
   * A device found with a state another backend instance wrote (qnicd restarted or crashed).
   * InitWait is resumed (nothing was mapped yet). Connected with the frontend Connected too and
   * online is taken over through the adopt hook ("adopt": no state node is written, the guest
   * notices nothing); Connected with the frontend elsewhere follows the frontend from Connected as
   * if we had been there all along. Without an adopt hook, or in Initialised, the rings are gone
   * with that instance: "close" (walk it to Closing for the guest to reconnect).
   */
  private resume(dev: XenDevice, beNode: number | undefined, fe: number, hotplug: string | undefined): "adopt" | "close" | null {
    dev.written = beNode;
    switch (beNode) {
      case S.InitWait:
        dev.state = S.Initialising; // realize again (idempotent), then InitWait
        dev.written = undefined;
        break;
      case S.Connected:
        if (this.hooks.adopt) {
          dev.state = S.Connected; // nothing is connected until the hook says so; disconnect copes
          if (fe === S.Connected && dev.online && hotplug !== "error") return "adopt";
          this.log.info(`${dev.name}: found Connected from an earlier qnicd with its frontend ${xenbusStateName(fe)}: following the frontend from there`);
          return null;
        }
      // falls through: nothing can take the rings over
      case S.Initialised:
        this.log.warn(`${dev.name}: found ${xenbusStateName(beNode)} from an earlier backend whose rings are gone: closing it so the guest can reconnect`);
        dev.state = S.Connected; // walked to Closing: the disconnect hook finds nothing to stop
        dev.written = S.Connected;
        dev.failed = true;
        return "close";
      case S.Closing:
        dev.state = S.Closing;
        break;
      case S.Closed:
        dev.state = S.Closed;
        break;
      default:
        break;
    }
    return null;
  }

  /**
   * Linux netback's set_backend_state: walks to `target` along the shortest path of this graph
   * (edges and their actions in backend-state.ts), doing each edge's action and writing each state:
   *
   *   Initialising --realize--> InitWait --connect--> Connected
   *        |                     ^     \                  |
   *        |             realize |      \                 | disconnect
   *        v                     |       v                v
   *      Closed <------------------------------------> Closing
   *
   * Returns false when an action failed: the device was then moved to Closing by fatal().
   */
  async setBackendState(dev: XenDevice, target: TargetState): Promise<boolean> {
    for (const step of pathTo(dev.state, target)) {
      if (step.action) {
        try {
          await this.hooks[step.action](dev);
        } catch (e) {
          if (e instanceof XenstoreConnectionError) throw e;
          if (step.action === "disconnect") {
            // Stopping the data path cannot be refused; report it and carry on closing.
            this.log.error(`${dev.name}: disconnect failed: ${oneLine((e as Error).message)}`);
          } else {
            await this.fatal(dev, asFatal(e, step.action));
            return false;
          }
        }
      }
      await this.switchState(dev, step.to);
    }
    return true;
  }

  /**
   * xenbus_dev_fatal: one log line, data path stopped, Closing, error node. Other devices carry on.
   * The data path stops first (it needs no xenstore); if xenstored is gone meanwhile, the error node
   * and the state are written by the first run after the reconnect (finish()).
   */
  private async fatal(dev: XenDevice, err: VifFatalError): Promise<void> {
    dev.failed = true;
    dev.lastError = `${err.errno} ${err.message}`;
    dev.errorUnwritten = true;
    this.log.error(`${dev.name}: ${err.message}; wrote ${dev.errorDir}/error and closed this vif (other vifs carry on): ${err.hint}`, { errno: err.errno });
    if (dev.state === S.Connected) await this.hooks.disconnect(dev).catch((e) => this.log.error(`${dev.name}: disconnect failed: ${oneLine((e as Error).message)}`));
    await this.switchState(dev, S.Closing);
  }

  /** The end of a run: write what is still unwritten (an error node, a state deferred by hotplug or lost). */
  private async finish(dev: XenDevice): Promise<void> {
    await this.writeState(dev);
  }

  private async switchState(dev: XenDevice, to: BackendState): Promise<void> {
    if (dev.state !== to) this.log.info(`${dev.name}: backend ${xenbusStateName(dev.state)} -> ${xenbusStateName(to)}`);
    dev.state = to;
    await this.writeState(dev);
  }

  /**
   * Writes a pending error node, then B/state when it differs from the backend's state, except that
   * Connected waits for the hotplug script. Inside a transaction that first checks B/state still exists, as Linux's
   * xenbus_switch_state does: a device being removed must not have its directory resurrected.
   */
  private async writeState(dev: XenDevice): Promise<void> {
    if (dev.errorUnwritten && dev.lastError !== null && !dev.forgotten) {
      const node = `${dev.errorDir}/error`;
      try {
        await this.xs.write(node, dev.lastError);
      } catch (e) {
        if (e instanceof XenstoreConnectionError) throw e;
        this.log.warn(`${dev.name}: writing ${node} failed: ${oneLine((e as Error).message)}`);
      }
      dev.errorUnwritten = false;
    }
    const value = dev.state === S.Connected && !dev.hotplugReady ? S.InitWait : dev.state;
    if (value === dev.written || dev.forgotten) return;
    if (dev.state === S.Connected && dev.written === S.Connected && value === S.InitWait) return; // never step back
    const statePath = `${dev.backendPath}/state`;
    const wrote = await this.xs.transaction(async (t) => {
      if ((await t.tryRead(statePath)) === undefined) return false;
      await t.write(statePath, String(value));
      return true;
    });
    if (wrote) dev.written = value;
    else this.opts.kick(dev); // gone: the next run forgets it
  }

  /** The device's directory is gone: stop serving it, release its host side, drop it. */
  private async forget(dev: XenDevice, why: string): Promise<void> {
    dev.forgotten = true;
    if (dev.state === S.Connected) await this.hooks.disconnect(dev).catch((e) => this.log.error(`${dev.name}: disconnect failed: ${oneLine((e as Error).message)}`));
    await this.release(dev);
    // Our own error node would otherwise outlive the device forever.
    await this.xs.rm(dev.errorDir).catch(() => {});
    this.opts.forgotten(dev);
    this.log.info(`${dev.name}: removed (${why})`);
  }

  async release(dev: XenDevice): Promise<void> {
    await this.hooks.unrealize(dev).catch((e) => this.log.error(`${dev.name}: releasing its host interface failed: ${oneLine((e as Error).message)}`));
    const w = dev.frontendWatch;
    dev.frontendWatch = undefined;
    await w?.unwatch().catch(() => {});
  }
}

/** A state node's value: plain decimal only (the frontend's is guest-written); else undefined. */
export function parseState(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^\d{1,3}$/.test(raw)) return undefined;
  return Number(raw);
}

function asFatal(e: unknown, step: StepAction | "frontend state"): VifFatalError {
  if (e instanceof VifFatalError) return e;
  const msg = oneLine(e instanceof Error ? e.message : String(e));
  const errno = typeof (e as { errno?: unknown })?.errno === "number" ? Math.abs((e as { errno: number }).errno) : Errno.EIO;
  return new VifFatalError(errno, `${step} failed: ${msg}`, "see the lines above; the vif can be re-added with xl network-detach/attach", { cause: e });
}
