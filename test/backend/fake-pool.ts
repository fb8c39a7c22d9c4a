// A WorkerPool double: records connect/disconnect, can refuse or delay a connect, and can report a
// fault the way a worker would. Stands in for src/pool until the real one is wired.
import type { ConnectedVif, HashConfig, VifConnectSpec, VifFault, VifSettings, WorkerPool } from "../../src/pool/types.ts";

export class FakePool implements WorkerPool {
  readonly size = 2;
  /** "connect vif3.0#1", "disconnect vif3.0#1", in order. */
  readonly events: string[] = [];
  readonly specs: VifConnectSpec[] = [];
  readonly live = new Map<string, VifConnectSpec>();
  /** The next connect rejects with this. */
  failNext: Error | null = null;
  /** Each connect waits for this before resolving (a slow worker). */
  gate: Promise<void> | null = null;
  closed = false;
  private faultListeners: ((f: VifFault) => void)[] = [];
  private lostListeners: ((w: number, moved: ConnectedVif[]) => void)[] = [];
  private hashListeners: ((key: string, config: HashConfig) => void)[] = [];

  async connect(spec: VifConnectSpec): Promise<ConnectedVif> {
    this.events.push(`connect ${spec.key}`);
    this.specs.push(spec);
    if (this.gate) await this.gate;
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = null;
      throw e;
    }
    this.live.set(spec.key, spec);
    return { key: spec.key, worker: this.live.size % this.size, localTxPort: 10, localRxPort: 10, statsSlot: { index: 0, generation: 1 } };
  }

  /** Settings handed over after connect, per key, in order. */
  readonly updates: { key: string; settings: VifSettings }[] = [];

  async update(key: string, settings: VifSettings): Promise<void> {
    if (this.live.has(key)) this.updates.push({ key, settings });
  }

  /** Each disconnect waits for this first (a stuck worker). */
  disconnectGate: Promise<void> | null = null;

  async disconnect(key: string): Promise<void> {
    this.events.push(`disconnect ${key}`);
    if (this.disconnectGate) await this.disconnectGate;
    this.live.delete(key);
  }

  onFault(listener: (fault: VifFault) => void): void {
    this.faultListeners.push(listener);
  }
  onWorkerLost(listener: (worker: number, moved: ConnectedVif[]) => void): void {
    this.lostListeners.push(listener);
  }

  onHash(listener: (key: string, config: HashConfig) => void): void {
    this.hashListeners.push(listener);
  }

  /** What queue 0's worker does when the control ring changed the hash configuration. */
  hash(key: string, config: HashConfig): void {
    for (const l of this.hashListeners) l(key, config);
  }

  /** What a worker does when a frontend breaks the ring protocol. */
  fault(key: string, errno: number, message: string): void {
    for (const l of this.faultListeners) l({ key, errno, message });
  }

  snapshot() {
    const vifs: Record<string, number> = {};
    for (const k of this.live.keys()) vifs[k] = 0;
    return { workers: [{ index: 0, alive: true, vifs: this.live.size }, { index: 1, alive: true, vifs: 0 }], vifs };
  }

  async close(): Promise<void> {
    for (const k of [...this.live.keys()]) await this.disconnect(k);
    this.closed = true;
  }

  /** Keys connected and not yet disconnected. */
  liveNames(): string[] {
    return [...this.live.values()].map((s) => s.name);
  }
  count(prefix: "connect" | "disconnect", name?: string): number {
    return this.events.filter((e) => e.startsWith(`${prefix} `) && (name === undefined || e.startsWith(`${prefix} ${name}#`))).length;
  }
}
