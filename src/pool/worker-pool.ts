// The pool: which worker serves which vif. Each connect goes to the least-loaded live worker; a
// worker that dies has its devices released from here and its vifs reconnected elsewhere, without
// restarting the daemon (vhost-user's handler.rs plays this role for its vring workers).
import type { Logger } from "../log.ts";
import type { PlatformConfig } from "../platform/types.ts";
import { SwitchFabric, type SwitchOptions } from "../net/switch.ts";
import type { TapIoMode } from "../net/tap.ts";
import { readVifStats, type SlotRef, type StatsArena, type VifStats } from "../stats/index.ts";
import { PoolWorker, WorkerLostError } from "./pool-worker.ts";
import { createCaptureRing } from "../capture/capture-ring.ts";
import type { ConnectedVif, HashConfig, VifConnectSpec, VifFault, VifSettings, WorkerPool } from "./types.ts";
import { WorkerFailure } from "./messages.ts";

/** EIO: a vif the pool could not keep serving (its worker died and no other could take it). */
const EIO = 5;
/** Vif names whose totals are kept after a disconnect (a few hundred bytes each). */
const RETIRED_MAX = 4096;

export interface WorkerPoolOptions {
  platform: PlatformConfig;
  workers: number;
  stats: StatsArena;
  log?: Logger;
  /** Most tx packets served per vif per wake-up (default 64). */
  budget?: number;
  /**
   * The in-daemon switch for vifs whose peer kind is "switch": created here, in the main thread,
   * at the first such connect (with these options) and destroyed by close().
   */
  switch?: SwitchOptions;
  /** TAP I/O path for TAP peers (default auto: io_uring, plain loops where it cannot be set up). */
  tapIo?: TapIoMode;
  /** Bytes of frames each vif may hold while its frontend posts no rx buffers (default 512 KiB, Linux's). */
  rxQueueBytes?: number;
  /** Frames waiting this long with no rx buffer posted turn the vif's carrier off (default 60 s, Linux's rx_stall_timeout). */
  rxStallMs?: number;
  /** The workers' data path (default batched; seed is QEMU qnic's per-packet algorithm, a baseline). */
  datapath?: "batched" | "seed";
  /** Vifs may negotiate feature-sg: workers keep 64 KiB tx frame slots (workers/scratch.ts). */
  scatterGather?: boolean;
}

/** A carrier change a worker reported (the backend may mirror it in B/carrier later). */
export interface VifCarrierEvent {
  readonly key: string;
  readonly on: boolean;
  readonly message: string;
}

interface VifEntry {
  spec: VifConnectSpec;
  /** Null until the first worker is chosen. */
  worker: PoolWorker | null;
  slot: SlotRef | null;
  connected: ConnectedVif | null;
  /** Settles when the connect (or move) in flight finishes, either way. */
  settled: Promise<unknown>;
}

export class Pool implements WorkerPool {
  readonly size: number;
  private readonly workers: PoolWorker[] = [];
  private readonly vifs = new Map<string, VifEntry>();
  private readonly faultListeners: ((f: VifFault) => void)[] = [];
  private readonly lostListeners: ((worker: number, moved: ConnectedVif[]) => void)[] = [];
  private readonly carrierListeners: ((e: VifCarrierEvent) => void)[] = [];
  private readonly hashListeners: ((key: string, config: HashConfig) => void)[] = [];
  private readonly mcastListeners: ((key: string, changes: { add: boolean; group: string }[]) => void)[] = [];
  private fabric: SwitchFabric | null = null;
  /**
   * Each vif's totals when it was last disconnected, by vif name: a frontend that reconnects (a
   * reset, a driver reload, a live migration back) continues from them, so its counters never go
   * backwards (a Prometheus rate() would read a drop as a reset). Bounded: the oldest names go first.
   */
  private readonly retired = new Map<string, VifStats>();
  /** Per worker, the ring its captured vifs' frames come through (src/capture). */
  private readonly captureRings: SharedArrayBuffer[] = [];
  private closing: Promise<void> | null = null;

  private constructor(private readonly opts: WorkerPoolOptions) {
    this.size = opts.workers;
  }

  static async create(opts: WorkerPoolOptions): Promise<Pool> {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new Error(`worker pool: workers must be a positive integer, got ${opts.workers}`);
    if (opts.stats.workers < opts.workers)
      throw new Error(`worker pool: the stats arena has slots for ${opts.stats.workers} workers, fewer than the ${opts.workers} asked for: create it with workers >= ${opts.workers}`);
    const pool = new Pool(opts);
    const budget = opts.budget ?? 64;
    if (!Number.isInteger(budget) || budget < 1 || budget > 256) throw new Error(`worker pool: budget must be 1..256 packets, got ${budget}`);
    const shared = {
      budget,
      // Per vif: two ring mappings, its rx queue, its TAP context; per worker: four scratch buffers.
      maxMappings: 4 * opts.stats.slotsPerWorker + 4,
      rxQueueBytes: opts.rxQueueBytes ?? 128 * 4096,
      rxStallMs: opts.rxStallMs ?? 60_000,
      tapIo: opts.tapIo,
      datapath: opts.datapath,
      scatterGather: opts.scatterGather,
    };
    for (let i = 0; i < opts.workers; i++) {
      const capture = createCaptureRing();
      pool.captureRings.push(capture);
      pool.workers.push(
        new PoolWorker(i, opts.platform, opts.stats.buffer, { ...shared, capture }, {
          fault: (m) => pool.workerFault({ key: m.key, errno: m.errno, message: m.message }),
          carrier: (m) => pool.workerCarrier({ key: m.key, on: m.on, message: m.message }),
          hash: (m) => {
            for (const l of pool.hashListeners) l(m.key, m.config);
          },
          mcast: (m) => {
            for (const l of pool.mcastListeners) l(m.key, m.changes);
          },
          died: (w, error) => void pool.workerDied(w, error),
        }),
      );
    }
    try {
      await Promise.all(pool.workers.map((w) => w.ready));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  connect(spec: VifConnectSpec, carry?: Partial<VifStats>): Promise<ConnectedVif> {
    if (this.closing) return Promise.reject(new Error(`${spec.name}: the worker pool is closed`));
    if (this.vifs.has(spec.key)) return Promise.reject(new Error(`${spec.name}: key ${spec.key} is already connected`));
    // Totals the caller carries (a vif adopted across a restart), else the vif's own from its last connection.
    return this.place(spec, carry ?? this.retired.get(spec.name));
  }

  /** Connects on the least-loaded live worker, retrying elsewhere if that worker dies meanwhile. */
  private place(spec: VifConnectSpec, carry: Partial<VifStats> | undefined): Promise<ConnectedVif> {
    const entry: VifEntry = { spec, worker: null, slot: null, connected: null, settled: Promise.resolve() };
    this.vifs.set(spec.key, entry);
    const p = this.attach(entry, carry).catch((e) => {
      if (this.vifs.get(spec.key) === entry) this.vifs.delete(spec.key);
      throw e;
    });
    entry.settled = p.catch(() => {});
    return p;
  }

  private async attach(entry: VifEntry, carry: Partial<VifStats> | undefined): Promise<ConnectedVif> {
    const spec = entry.spec;
    for (;;) {
      const w = this.leastLoaded();
      if (!w) throw new Error(`${spec.name}: no live worker with a free slot to serve it`);
      const slot = this.opts.stats.allocate(w.index);
      entry.worker = w;
      entry.slot = slot;
      w.vifs.add(spec.key);
      let reply;
      try {
        reply = await w.request({ op: "connect", spec, slot, carry, switchAddress: spec.peer.kind === "switch" ? this.switchFabric().address : undefined });
      } catch (e) {
        w.vifs.delete(spec.key);
        if (e instanceof WorkerLostError) continue; // its devices were released and its slots reset
        throw e;
      }
      if (reply.op !== "connected") {
        w.vifs.delete(spec.key);
        this.opts.stats.release(slot);
        throw reply.op === "failed" ? new WorkerFailure(reply.error, reply.errno) : new Error(`${spec.name}: unexpected reply ${reply.op} from worker ${w.index}`);
      }
      entry.connected = { key: spec.key, worker: w.index, localTxPort: reply.localTxPort, localRxPort: reply.localRxPort, statsSlot: slot, replayed: reply.replayed };
      return entry.connected;
    }
  }

  /** The switch, created on first use in this (the main) thread; workers get its address. */
  private switchFabric(): SwitchFabric {
    this.fabric ??= new SwitchFabric(this.opts.switch);
    return this.fabric;
  }

  /** The switch's shared memory (tests look up learned MACs through it), or null before the first switch vif. */
  get switch(): SwitchFabric | null {
    return this.fabric;
  }

  private leastLoaded(): PoolWorker | undefined {
    let best: PoolWorker | undefined;
    for (const w of this.workers) {
      if (!w.alive || w.load >= this.opts.stats.slotsPerWorker) continue;
      if (!best || w.load < best.load) best = w;
    }
    return best;
  }

  async update(key: string, settings: VifSettings): Promise<void> {
    const entry = this.vifs.get(key);
    if (!entry) return;
    // Kept in the spec too: a vif moved off a dead worker starts with what it last had.
    entry.spec = { ...entry.spec, settings };
    await entry.settled;
    if (this.vifs.get(key) !== entry || !entry.connected) return;
    try {
      await entry.worker!.request({ op: "settings", key, settings });
    } catch (e) {
      if (!(e instanceof WorkerLostError)) throw e;
      // the worker died: the vif moves with the new spec
    }
  }

  async disconnect(key: string): Promise<void> {
    const entry = this.vifs.get(key);
    if (!entry) return;
    await entry.settled;
    if (this.vifs.get(key) !== entry) return; // the connect failed, or another disconnect won
    this.vifs.delete(key);
    const w = entry.worker!;
    try {
      await w.request({ op: "disconnect", key });
    } catch (e) {
      if (!(e instanceof WorkerLostError)) throw e;
      // the worker died: its devices are released with it
    }
    w.vifs.delete(key);
    this.retire(entry);
    this.opts.stats.release(entry.slot!);
  }

  /** Remembers a disconnecting vif's totals (its worker has stopped flushing them). */
  private retire(entry: VifEntry): void {
    let totals: VifStats | null = null;
    try {
      totals = readVifStats(this.opts.stats, entry.slot!);
    } catch {
      return; // a slot its dead worker left locked: nothing trustworthy to keep
    }
    if (!totals) return;
    const name = entry.spec.name;
    this.retired.delete(name);
    this.retired.set(name, totals);
    if (this.retired.size > RETIRED_MAX) this.retired.delete(this.retired.keys().next().value!);
  }

  captureRing(worker: number): SharedArrayBuffer | undefined {
    return this.captureRings[worker];
  }

  onFault(listener: (fault: VifFault) => void): void {
    this.faultListeners.push(listener);
  }

  onHash(listener: (key: string, config: HashConfig) => void): void {
    this.hashListeners.push(listener);
  }

  onMcast(listener: (key: string, changes: { add: boolean; group: string }[]) => void): void {
    this.mcastListeners.push(listener);
  }

  /** Carrier changes (rx stalled / ready again): not part of WorkerPool yet; the backend may write B/carrier from it. */
  onCarrier(listener: (e: VifCarrierEvent) => void): void {
    this.carrierListeners.push(listener);
  }

  onWorkerLost(listener: (worker: number, moved: ConnectedVif[]) => void): void {
    this.lostListeners.push(listener);
  }

  snapshot(): { workers: { index: number; alive: boolean; vifs: number }[]; vifs: Record<string, number> } {
    const vifs: Record<string, number> = {};
    for (const [key, e] of this.vifs) if (e.connected) vifs[key] = e.connected.worker;
    return { workers: this.workers.map((w) => ({ index: w.index, alive: w.alive, vifs: w.load })), vifs };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.vifs.keys()].map((k) => this.disconnect(k).catch(() => {})));
      await Promise.all(this.workers.map((w) => w.stop()));
      for (const w of this.workers) w.release();
      // Every port is closed now (the workers are gone): the switch can go.
      this.fabric?.destroy();
      this.fabric = null;
    })();
    return this.closing;
  }

  /** Test hook: terminates worker `index` as a crash would, without asking it to release anything. */
  killWorker(index: number): void {
    this.workers[index]?.kill();
  }

  /** A worker's fault report; dropped if the vif was disconnected meanwhile (the backend is done with it). */
  private workerFault(f: VifFault): void {
    if (this.vifs.has(f.key)) this.emitFault(f);
  }

  private workerCarrier(e: VifCarrierEvent): void {
    if (!this.vifs.has(e.key)) return;
    if (e.on) this.opts.log?.info(e.message, { key: e.key });
    else this.opts.log?.warn(e.message, { key: e.key });
    for (const l of this.carrierListeners) l(e);
  }

  private emitFault(f: VifFault): void {
    this.opts.log?.warn(`vif fault: ${f.message}`, { key: f.key, errno: f.errno });
    for (const l of this.faultListeners) l(f);
  }

  private async workerDied(w: PoolWorker, error: string | undefined): Promise<void> {
    const released = w.release().released;
    const mine = [...this.vifs.values()].filter((e) => e.worker === w && e.connected);
    // Keep each vif's totals: read before the worker's slots are reset (a slot it left locked reads as nothing).
    const carried = mine.map((e) => {
      try {
        return readVifStats(this.opts.stats, e.slot!) ?? undefined;
      } catch {
        return undefined;
      }
    });
    this.opts.stats.resetWorker(w.index);
    w.vifs.clear();
    // Its switch ports stay open in the shared switch until closed here; the vifs reopen them elsewhere.
    for (const e of mine) if (e.spec.peer.kind === "switch") this.fabric?.closePortByName(e.spec.peer.name);
    this.opts.log?.error(`worker ${w.index} died${error ? `: ${error}` : ""}; released ${released.join(", ") || "nothing"}; moving ${mine.length} vifs`);
    if (this.closing) return;
    const moved: ConnectedVif[] = [];
    await Promise.all(
      mine.map(async (e, i) => {
        if (this.vifs.get(e.spec.key) !== e) return;
        this.vifs.delete(e.spec.key);
        try {
          // The journal says where the dead worker left each ring (it may have died mid-publish).
          moved.push(await this.place({ ...e.spec, adopt: e.spec.journal !== undefined }, carried[i]));
        } catch (err) {
          // The reason the other workers gave (e.g. ENOENT: its ring no longer maps), else EIO.
          const errno = err instanceof WorkerFailure ? err.errno : EIO;
          this.emitFault({ key: e.spec.key, errno, message: `worker ${w.index} died and no other worker took the vif: ${(err as Error).message}` });
        }
      }),
    );
    for (const l of this.lostListeners) l(w.index, moved);
  }
}
