// Tells the guest's event loop when its event-channel device has fired, the way an interrupt
// would: a Worker blocks in poll() on the device fd and posts a message (tens of microseconds,
// no busy CPU). After each wake-up the owner drains the device and calls rearm().
export class EventWaker {
  private readonly worker: Worker;
  private readonly ctl = new Int32Array(new SharedArrayBuffer(8));
  private stopped = false;
  private readonly exited: Promise<void>;

  constructor(fd: number, onEvent: () => void) {
    this.worker = new Worker(new URL("./event-waker-worker.ts", import.meta.url).href);
    let exited!: () => void;
    this.exited = new Promise((r) => (exited = r));
    this.worker.onmessage = (e: MessageEvent) => {
      if (e.data === "stopped") exited();
      else if (!this.stopped) onEvent();
    };
    this.worker.addEventListener("close", () => exited());
    this.worker.postMessage({ fd, sab: this.ctl.buffer });
    // A guest process must be able to exit while the waker is parked.
    this.worker.unref();
    this.rearm();
  }

  rearm(): void {
    if (this.stopped) return;
    Atomics.store(this.ctl, 0, 1);
    Atomics.notify(this.ctl, 0);
  }

  /** Stops the worker (waits for it to leave poll(), at most ~50 ms). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    Atomics.store(this.ctl, 1, 1);
    Atomics.notify(this.ctl, 0);
    await Promise.race([this.exited, Bun.sleep(500)]);
    this.worker.terminate();
  }
}
