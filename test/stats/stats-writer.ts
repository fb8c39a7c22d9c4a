// Starts the stand-in worker (fixtures/stats-writer-worker.ts) and waits for its replies.
import type { SlotRef, StatsArena, VifCounterName } from "../../src/stats/index.ts";

export interface StatsWriter {
  /** Resolves with the worker's next message. */
  next(): Promise<any>;
  /** Lets a streaming or parked worker finish, waits for its "done", and ends the thread. */
  stop(): Promise<any>;
}

function start(): { worker: Worker; control: SharedArrayBuffer; next(): Promise<any> } {
  const worker = new Worker(new URL("./fixtures/stats-writer-worker.ts", import.meta.url).href);
  const queue: any[] = [];
  const waiting: ((m: any) => void)[] = [];
  worker.onmessage = (e) => (waiting.length ? waiting.shift()!(e.data) : queue.push(e.data));
  worker.onerror = (e) => {
    const err = new Error(`stats writer worker failed: ${e.message}`);
    while (waiting.length) waiting.shift()!(Promise.reject(err));
  };
  const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise<any>((r) => waiting.push(r)));
  return { worker, control: new SharedArrayBuffer(4), next };
}

function finisher(worker: Worker, control: SharedArrayBuffer, next: () => Promise<any>) {
  return async () => {
    const c = new Int32Array(control);
    Atomics.store(c, 0, 1);
    Atomics.notify(c, 0);
    let m = await next();
    while (!m.done) m = await next();
    worker.terminate();
    return m;
  };
}

export function streamingWriter(arena: StatsArena, ref: SlotRef): StatsWriter {
  const { worker, control, next } = start();
  worker.postMessage({ cmd: "stream", buffer: arena.buffer, ref, control });
  return { next, stop: finisher(worker, control, next) };
}

/** Resolves once the worker has published `values` and parked (it will answer no message until stop()). */
export async function publishingWriter(arena: StatsArena, ref: SlotRef, values: Partial<Record<VifCounterName, number>>): Promise<StatsWriter> {
  const { worker, control, next } = start();
  worker.postMessage({ cmd: "publish", buffer: arena.buffer, ref, control, values });
  const m = await next();
  if (!m.published) throw new Error(`unexpected message from stats writer: ${JSON.stringify(m)}`);
  return { next, stop: finisher(worker, control, next) };
}
