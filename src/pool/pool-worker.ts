// The main thread's handle on one worker thread: spawning it, its mailbox (requests matched to
// replies by seq), waking it through its eventfd, and noticing when it dies.
import { join } from "node:path";
import type { PlatformConfig } from "../platform/types.ts";
import { MainMailbox, W_REPLY_DOORBELL, W_WORKER_BLOCKED } from "./mailbox.ts";
import { WorkerFailure, type ToMain, type ToWorker, type WorkerInit } from "./messages.ts";
import { reclaimWorkerDevices, type ReclaimResult } from "./reclaim.ts";
import { workerNative } from "./worker-native.ts";

// In the compiled binary the worker is a second entrypoint, stored under the build's root
// (scripts/build-binary.ts) at its source path; import.meta.dir is that root there. An absolute
// name, so a binary never falls back to a workers/ directory under its working directory.
const WORKER_SCRIPT = Bun.isStandaloneExecutable
  ? join(import.meta.dir, "workers", "vif-worker.ts")
  : join(import.meta.dir, "..", "..", "workers", "vif-worker.ts");

type Request = Extract<ToWorker, { seq: number }>;
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

/** A request's worker died before answering; the pool retries elsewhere or treats it as released. */
export class WorkerLostError extends Error {
  constructor(readonly worker: number) {
    super(`worker ${worker} died`);
    this.name = "WorkerLostError";
  }
}

export interface PoolWorkerEvents {
  fault(msg: Extract<ToMain, { op: "fault" }>): void;
  carrier(msg: Extract<ToMain, { op: "carrier" }>): void;
  hash?(msg: Extract<ToMain, { op: "hash" }>): void;
  mcast?(msg: Extract<ToMain, { op: "mcast" }>): void;
  /** The thread stopped without being asked to. */
  died(w: PoolWorker, error: string | undefined): void;
}

export class PoolWorker {
  readonly mailbox: MainMailbox;
  readonly eventfd: number;
  readonly switchWakeFd: number;
  alive = true;
  /** Keys of the vifs assigned here, including connects in flight. */
  readonly vifs = new Set<string>();
  /** Resolves when the worker is serving; rejects with its startup error. */
  readonly ready: Promise<void>;
  /** Resolves once the thread is gone ("close" event): only then may its devices be released. */
  readonly stopped: Promise<void>;
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve(m: ToMain): void; reject(e: Error): void }>();
  private readonly outbox: ToWorker[] = [];
  private seq = 0;
  private stopping = false;
  private listening = true;
  private lastError: string | undefined;
  private eventfdOpen = true;
  private readyResolve!: () => void;
  private readyReject!: (e: Error) => void;

  constructor(readonly index: number, private readonly platform: PlatformConfig, stats: SharedArrayBuffer, opts: Pick<WorkerInit, "budget" | "maxMappings" | "rxQueueBytes" | "rxStallMs" | "tapIo" | "datapath" | "scatterGather" | "capture">, private readonly events: PoolWorkerEvents) {
    const efd = workerNative().qw_eventfd();
    if (efd < 0) throw new Error(`worker pool: creating worker ${index}'s control eventfd failed (errno ${-efd})`);
    this.eventfd = efd;
    // The worker's switch ports all wake this one; owned here like the control eventfd, so a worker
    // terminated mid-exit cannot leak it.
    const wfd = workerNative().qw_eventfd();
    if (wfd < 0) {
      workerNative().qw_close(efd);
      throw new Error(`worker pool: creating worker ${index}'s switch wake eventfd failed (errno ${-wfd})`);
    }
    this.switchWakeFd = wfd;
    this.mailbox = MainMailbox.create(opts.maxMappings);
    this.ready = new Promise((res, rej) => {
      this.readyResolve = res;
      this.readyReject = rej;
    });
    this.ready.catch(() => {});
    this.worker = new Worker(WORKER_SCRIPT);
    this.stopped = new Promise((res) => this.worker.addEventListener("close", () => res()));
    this.worker.addEventListener("error", (e) => {
      // Bun's message carries a source excerpt over several lines: keep the "error: ..." line.
      const text = String((e as ErrorEvent).message ?? "uncaught error");
      this.lastError ??= text.split("\n").find((l) => l.startsWith("error: "))?.slice(7) ?? text.split("\n")[0];
    });
    void this.stopped.then(() => this.onStopped());
    const init: WorkerInit = { index, platform, stats, mailbox: this.mailbox.buffer, eventfd: efd, switchWakeFd: wfd, ...opts };
    this.worker.postMessage(init);
    void this.listen();
  }

  get load(): number {
    return this.vifs.size;
  }

  /** Sends a request and resolves with the worker's reply; rejects with WorkerLostError if it dies first. */
  request(msg: DistributiveOmit<Request, "seq">): Promise<ToMain> {
    if (!this.alive) return Promise.reject(new WorkerLostError(this.index));
    const seq = ++this.seq;
    const full = { ...msg, seq } as ToWorker;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.outbox.push(full);
      this.flushOutbox();
    });
  }

  /** Asks the worker to release everything and exit, then waits for the thread to stop. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.alive) {
      try {
        await this.request({ op: "exit" });
      } catch {
        // it died meanwhile: onStopped releases what it held
      }
    }
    this.kill();
    await this.stopped;
  }

  /** Terminates the thread without asking (tests, and a worker that stopped answering). */
  kill(): void {
    this.worker.terminate();
    // terminate() takes effect when the thread next runs JS: wake it out of poll().
    this.wake();
  }

  private wake(): void {
    if (this.eventfdOpen) workerNative().qw_eventfd_signal(this.eventfd);
  }

  private flushOutbox(): void {
    let sent = false;
    while (this.outbox.length && this.mailbox.send(this.outbox[0])) {
      this.outbox.shift();
      sent = true;
    }
    if (sent) this.wake();
  }

  /** Waits for the worker's replies without polling: Atomics.waitAsync on the reply doorbell. */
  private async listen(): Promise<void> {
    const words = this.mailbox.words;
    while (this.listening) {
      const seen = Atomics.load(words, W_REPLY_DOORBELL);
      this.drain();
      if (!this.listening) break;
      const w = Atomics.waitAsync(words, W_REPLY_DOORBELL, seen);
      if (w.async) await w.value;
    }
  }

  private drain(): void {
    for (let m = this.mailbox.receive(); m; m = this.mailbox.receive()) this.dispatch(m);
    if (Atomics.load(this.mailbox.words, W_WORKER_BLOCKED)) {
      Atomics.store(this.mailbox.words, W_WORKER_BLOCKED, 0);
      this.wake();
    }
    this.flushOutbox();
  }

  private dispatch(m: ToMain): void {
    switch (m.op) {
      case "ready":
        this.readyResolve();
        return;
      case "fatal":
        this.lastError = m.error;
        this.readyReject(new WorkerFailure(m.error, m.errno));
        this.kill();
        return;
      case "fault":
        this.events.fault(m);
        return;
      case "carrier":
        this.events.carrier(m);
        return;
      case "hash":
        this.events.hash?.(m);
        return;
      case "mcast":
        this.events.mcast?.(m);
        return;
      default: {
        const p = this.pending.get(m.seq);
        if (!p) return;
        this.pending.delete(m.seq);
        p.resolve(m);
      }
    }
  }

  private onStopped(): void {
    this.alive = false;
    // Replies written just before the thread stopped still count (e.g. "exiting").
    this.drain();
    this.listening = false;
    Atomics.notify(this.mailbox.words, W_REPLY_DOORBELL);
    for (const p of this.pending.values()) p.reject(new WorkerLostError(this.index));
    this.pending.clear();
    this.readyReject(new Error(this.lastError ?? `worker ${this.index} stopped before it was ready`));
    if (!this.stopping) this.events.died(this, this.lastError);
  }

  /** After the thread stopped: releases the devices it left open and closes the eventfd. */
  release(): ReclaimResult {
    const r = reclaimWorkerDevices(this.mailbox.words, this.platform);
    if (this.eventfdOpen) {
      this.eventfdOpen = false;
      workerNative().qw_close(this.eventfd);
      workerNative().qw_close(this.switchWakeFd);
    }
    return r;
  }
}
