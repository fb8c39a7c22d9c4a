// The seam between the control plane (main thread: xenstore, per-vif state machines) and the
// data plane (worker threads: rings, event channels, packets). The main thread never touches rings
// or packets; workers never talk to xenstore. Everything a worker needs to serve a vif is in
// VifConnectSpec, validated by the backend before it crosses this seam.

import type { VifStats } from "../stats/index.ts";
import type { PeerHandle } from "../net/peer.ts";
/** B/rate as netback reads it: `bytes` of guest tx per `usecs` microseconds (xen_net_read_rate). */
export interface VifRate {
  /** Up to 2^53 - 1 (netback's is a u64; anything that large is as unlimited). */
  readonly bytes: number;
  readonly usecs: number;
}

/** Settings the backend watches and hands to the worker while the vif runs (and at connect). */
/**
 * A vif's hash configuration as plain data: what the worker serving its control ring (beside queue
 * 0) hands, through the main thread, to the workers serving its other queues, so every queue's rx
 * carries the same hash extras (netback has one configuration per vif, read by all its queues).
 */
export interface HashConfig {
  alg: number;
  flags: number;
  key: number[];
  size: number;
  mapping: number[];
}

export interface VifSettings {
  /** B/rate; null: unlimited (no node, or a malformed one). */
  readonly rate: VifRate | null;
  /** F/request-multicast-control: filter multicast frames to the groups the guest added. */
  readonly multicastControl: boolean;
  /** The vif's hash configuration, set over its control ring (served beside queue 0), for its other queues. */
  readonly hash?: HashConfig;
  /** A multi-queue vif's multicast list ("xx:xx:xx:xx:xx:xx"), kept by the backend from every queue's MCAST extras. */
  readonly mcastGroups?: readonly string[];
  /** mcastGroups is the list queue 0's journal held at a take-over: the queues filter by it again. */
  readonly mcastRestored?: boolean;
}

/** What the backend read and validated from the frontend's xenstore nodes. */
export interface VifConnectSpec {
  /** Stable key for this connection of this vif: a reconnect gets a new one. */
  readonly key: string;
  /** `vif<domid>.<devid>`: used in every log line and error. */
  readonly name: string;
  readonly frontendDomid: number;
  readonly devid: number;
  /** Which of the vif's queues this is (0 for a single-queue vif); each queue is served on its own. */
  readonly queue?: number;
  /** How many queues the vif has (the control ring's hash maps flows onto that many). */
  readonly queues?: number;
  readonly txRingRef: number;
  readonly rxRingRef: number;
  /** Frontend ports: equal when the frontend uses one event channel for both rings. */
  readonly txEvtchn: number;
  readonly rxEvtchn: number;
  /**
   * The frontend's control ring (ctrl-ring-ref, event-channel-ctrl), when it wrote one and the
   * backend offered feature-ctrl-ring: served by the same worker as the data rings (workers/served-ctrl.ts).
   */
  readonly ctrlRingRef?: number;
  readonly ctrlEvtchn?: number;
  /** MAC the frontend uses (from B/mac or F/mac), "xx:xx:xx:xx:xx:xx". */
  readonly mac: string;
  /** Features both sides agreed on (feature-sg, feature-rx-notify, ...). */
  readonly features: Readonly<Record<string, boolean>>;
  /** The host-side peer this vif's frames go to; a peer handle the worker can use (e.g. a TAP fd). */
  readonly peer: PeerHandle;
  /**
   * The vif's journal file (src/state/vif-journal.ts): the worker stages responses there so a
   * successor can take the rings over. Absent: responses are staged in private memory (tests).
   */
  readonly journal?: string;
  /**
   * Take the rings over where an earlier owner left them (a restarted daemon, a dead worker), as the
   * journal says; false or absent: a fresh connect, attached at the ring's rsp_prod.
   */
  readonly adopt?: boolean;
  /** B/rate and F/request-multicast-control as last read (absent: unlimited, not requested). */
  readonly settings?: VifSettings;
}

export interface ConnectedVif {
  readonly key: string;
  readonly worker: number;
  /** Local (backend) event-channel ports the worker bound. */
  readonly localTxPort: number;
  readonly localRxPort: number;
  /** Where this vif's counters live in the StatsArena. */
  readonly statsSlot: { index: number; generation: number };
  /** Responses a predecessor had journaled but not published, published again when the rings were taken over. */
  readonly replayed?: { tx: number; rx: number };
}

/** Why a worker gave up on a vif: the backend writes the error node and moves it to Closing. */
export interface VifFault {
  readonly key: string;
  /** errno-style code for the xenstore error node, e.g. 71 (EPROTO) for a hostile frontend. */
  readonly errno: number;
  /** One line: what happened, e.g. "tx req_prod 0x1300 is more than a ring ahead of 0x200". */
  readonly message: string;
}

export interface WorkerPool {
  readonly size: number;
  /**
   * Hands the vif to the least-loaded live worker, which maps both rings and binds the event
   * channel(s). Resolves once the vif is being served; rejects with a one-line Error naming the vif
   * and the step that failed ("vif3.0: failed to map tx-ring-ref 9: bad_gntref"), having released
   * anything it set up.
   */
  connect(spec: VifConnectSpec, carry?: Partial<VifStats>): Promise<ConnectedVif>;
  /**
   * Hands a connected vif new settings (B/rate or F/request-multicast-control changed); they also
   * travel with the vif if it moves to another worker. Unknown keys are ignored.
   */
  update(key: string, settings: VifSettings): Promise<void>;
  /** Stops serving the vif: rings unmapped, ports unbound, slot released. Idempotent. */
  disconnect(key: string): Promise<void>;
  /** A worker disabled a vif (hostile or broken frontend). */
  onFault(listener: (fault: VifFault) => void): void;
  /** A vif's control ring (served beside its queue 0) changed its hash configuration: `key` is that queue's. */
  onHash?(listener: (key: string, config: HashConfig) => void): void;
  /** A multi-queue vif's queue `key` took MCAST_ADD / MCAST_DEL extras. */
  onMcast?(listener: (key: string, changes: { add: boolean; group: string }[]) => void): void;
  /**
   * A worker died: the pool has already released its resources and reconnected its vifs on other
   * workers (each gets a new ConnectedVif); the listener is for logging and /vifs.
   */
  onWorkerLost(listener: (worker: number, moved: ConnectedVif[]) => void): void;
  /** Which worker serves each vif key and how loaded each worker is (for /vifs and /health). */
  snapshot(): { workers: { index: number; alive: boolean; vifs: number }[]; vifs: Record<string, number> };
  /** The shared ring worker `worker` records captured frames into (src/capture), if the pool has one. */
  captureRing?(worker: number): SharedArrayBuffer | undefined;
  /** Disconnects every vif and stops every worker; nothing left mapped, bound or running. */
  close(): Promise<void>;
}
