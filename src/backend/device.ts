// One backend device as the bus tracks it: identity, paths, the state it is in, and the
// bookkeeping that coalesces and serialises its work.
import type { Watch } from "../xenstore/index.ts";
import { XenbusState } from "../xen/xenbus-state.ts";
import type { BackendState } from "./backend-state.ts";
import type { VifFatalError } from "./errors.ts";

/** The nodes every run decides on (B/state, B/online, B/hotplug-status, F/state), each watched. */
export type StateNode = "state" | "online" | "hotplug-status" | "frontend-state";

export class XenDevice {
  /** The backend's own state: what it has done (Linux's be->state). */
  state: BackendState = XenbusState.Initialising;
  /** The value last written to (or found in) B/state; differs from `state` while Connected waits for hotplug. */
  written: number | undefined;
  /** Last F/state read (Unknown when the node is missing or unreadable). */
  frontendState: number = XenbusState.Unknown;
  online = false;
  /** Toolstack-written F path, known after setup. */
  frontendPath: string | undefined;
  frontendWatch: Watch | undefined;
  /** B/hotplug-status allows Connected to be written (no hotplug script, or it said "connected"). */
  hotplugReady = true;
  /**
   * A fatal error (or the toolstack) closed this device: it follows the frontend only towards
   * Closed until the frontend itself moves to Initialising, Closed or Unknown.
   */
  failed = false;
  /** The last error node text ("<errno> <message>"). */
  lastError: string | null = null;
  /** lastError still has to be written to the error node (xenstored was away when it happened). */
  errorUnwritten = false;
  /** A fatal error reported from outside a transition (a pool fault), handled by the next run. */
  pendingFatal: VifFatalError | undefined;

  // Coalescing: any number of watch events while a run is going set `dirty` once; the run then
  // acts on the latest values. At most one run per device at a time.
  dirty = false;
  /**
   * What a run last read of each StateNode, and that node's event count then. A watch event on a
   * node counts it up (changed()), so a run re-reads only the nodes that had an event since it last
   * read them, as Linux netback reads only the node its watch named (frontend_changed reads F/state,
   * hotplug_status_changed B/hotplug-status) and QEMU's xen-bus does. Re-reading all four on
   * every run made runs most of what connecting N vifs asked of xenstored. A count taken before
   * the read is stored with its value: an event that lands while the read is on the wire leaves the
   * node stale, never wrongly fresh.
   */
  readonly nodes = new Map<StateNode, { value: string | undefined; count: number }>();
  readonly nodeEvents: Record<StateNode, number> = { state: 0, online: 0, "hotplug-status": 0, "frontend-state": 0 };
  running: Promise<void> | null = null;
  forgotten = false;

  constructor(
    readonly domid: number,
    readonly devid: number,
    /** vif<domid>.<devid> */
    readonly name: string,
    /** B */
    readonly backendPath: string,
    /** error/<B relative> under the backend domain */
    readonly errorDir: string,
  ) {}

  /** A watch event on `node`, or with no node (anything may have changed) on all of them. */
  changed(node?: StateNode): void {
    if (node !== undefined) this.nodeEvents[node]++;
    else for (const k of Object.keys(this.nodeEvents) as StateNode[]) this.nodeEvents[k]++;
  }

  get key(): string {
    return `${this.domid}/${this.devid}`;
  }
}
