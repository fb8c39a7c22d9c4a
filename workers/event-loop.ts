// The worker's wait: one blocking poll() over named event sources and the timers' nearest deadline,
// then each source that fired is dispatched to its handler; nothing else runs while it waits, so an
// idle worker costs ~0 % CPU. The loop knows nothing of rings, vifs or packets: like rust-vmm's
// event_loop.rs and Firecracker's event_handler.rs, sources register a handler and the loop only
// waits and dispatches.
//
// Fixed sources (the control eventfd, the event-channel device, the shared wake eventfd) are the
// worker's own: one of them broken would make poll() return at once forever, so the loop throws and
// the worker dies (the pool moves its vifs). Queue sources (a peer's own fd) come and go with
// connects; a broken one is handed to its handler, which stops polling it.
import { POLL_MAX_FDS, POLLERR, POLLHUP, POLLNVAL, workerNative } from "../src/pool/worker-native.ts";
import type { Timers } from "./timers.ts";

/** poll() revents that no eventfd or event-channel device reports while healthy. */
const BROKEN = POLLERR | POLLHUP | POLLNVAL;

export interface EventSource {
  /** Says which fd broke in the worker's fatal line ("event-channel device"). */
  readonly name: string;
  readonly fd: number;
  /** The fd is readable. */
  ready(): void;
  /** The fd reports an error or hang-up (queue sources only: a fixed source's breakage is fatal). */
  broken?(revents: number): void;
}

export class EventLoop {
  // Arguments of the FFI call that writes them (BUN-FACTS pitfall 1), kept for the worker's life (pitfall 2).
  private readonly fds = new Int32Array(POLL_MAX_FDS);
  private readonly revents = new Int32Array(POLL_MAX_FDS);
  private readonly sources: EventSource[] = [];
  private nfds: number;
  /** Bumped when the queue sources change: revents from a poll() over the old set are not read against the new one. */
  private version = 0;

  constructor(
    private readonly fixed: readonly EventSource[],
    private readonly timers: Timers,
  ) {
    if (fixed.length > POLL_MAX_FDS) throw new RangeError(`${fixed.length} fixed sources: at most ${POLL_MAX_FDS}`);
    fixed.forEach((s, i) => {
      this.fds[i] = s.fd;
      this.sources[i] = s;
    });
    this.nfds = fixed.length;
  }

  /**
   * Replaces the queue sources (on connect, disconnect, a peer breaking: rare). Sources past the
   * poll set's capacity are left out: the pool never places that many queues on one worker.
   */
  setQueueSources(queue: readonly EventSource[]): void {
    let n = this.fixed.length;
    for (const s of queue) {
      if (n >= POLL_MAX_FDS) break;
      this.fds[n] = s.fd;
      this.sources[n++] = s;
    }
    this.sources.length = n;
    this.nfds = n;
    this.version++;
  }

  /**
   * One wait and its dispatch. `busy`: work is already waiting, so poll() only looks (timeout 0);
   * otherwise it sleeps until an fd fires or the nearest timer is due. Due timers fire last, so a
   * handler that armed or disarmed one on this turn is honoured.
   */
  turn(busy: boolean): void {
    const timeout = busy ? 0 : this.timers.timeout(performance.now());
    const rc = workerNative().qw_poll(this.fds, this.revents, this.nfds, timeout);
    if (rc < 0) throw new Error(`poll failed (errno ${-rc})`);
    const polled = this.version;
    const nFixed = this.fixed.length;
    for (let i = 0; i < nFixed; i++) {
      const r = this.revents[i];
      if (r & BROKEN) throw new Error(`${this.sources[i].name} is broken (revents 0x${r.toString(16)})`);
    }
    for (let i = 0; i < nFixed; i++) if (this.revents[i]) this.sources[i].ready();
    // A connect or disconnect handled above changed the queue sources: these revents describe the
    // old set. poll() is level-triggered, so a queue fd with frames is reported again next turn.
    for (let i = nFixed; i < this.nfds && polled === this.version; i++) {
      const r = this.revents[i];
      if (!r) continue;
      const s = this.sources[i];
      if (r & BROKEN) s.broken?.(r);
      else s.ready();
    }
    // Not only on a timeout: with other fds busy, poll() may never time out past a deadline.
    this.timers.fireDue(performance.now());
  }
}
