// Deadlines a worker waits for beside its fds, as a general facility: the rx-stall deadline (a
// queue whose frontend leaves frames waiting loses its carrier after rx_stall_timeout) is its first
// user; anything else that must happen at a time, not on an event (a rate limiter's next credit
// window), arms a timer the same way. The loop sleeps until the nearest deadline and fires what is
// due; nothing polls or spins.
//
// A worker has a few timers per queue, armed and disarmed rarely (a stall starting or ending), so a
// plain list scanned per wake-up is cheaper than a heap; arming allocates nothing.

/** One deadline. Disarmed: `at` is Infinity. */
export class Timer {
  at = Infinity;
  /** Index in Timers' list, so removal is O(1). */
  index = -1;

  constructor(
    /** Says what it is for in a worker's log lines and tests ("vif3.0 rx stall"). */
    readonly name: string,
    /** Runs when the deadline passes (the loop's clock, performance.now() milliseconds). */
    readonly fire: (now: number) => void,
  ) {}

  get armed(): boolean {
    return this.at !== Infinity;
  }
}

export class Timers {
  private readonly list: Timer[] = [];

  /** A timer owned by this facility until remove(); starts disarmed. */
  create(name: string, fire: (now: number) => void): Timer {
    const t = new Timer(name, fire);
    t.index = this.list.length;
    this.list.push(t);
    return t;
  }

  /** Forgets `t` (its owner went away); safe to call twice. */
  remove(t: Timer): void {
    const i = t.index;
    if (i < 0 || this.list[i] !== t) return;
    const last = this.list.pop()!;
    if (last !== t) {
      this.list[i] = last;
      last.index = i;
    }
    t.index = -1;
    t.at = Infinity;
  }

  arm(t: Timer, at: number): void {
    t.at = at;
  }

  disarm(t: Timer): void {
    t.at = Infinity;
  }

  /** poll()'s timeout: whole milliseconds until the nearest deadline (0: one is due), or -1 for none. */
  timeout(now: number): number {
    let nearest = Infinity;
    for (const t of this.list) if (t.at < nearest) nearest = t.at;
    return nearest === Infinity ? -1 : Math.max(0, Math.ceil(nearest - now));
  }

  /** Fires (and disarms) every timer whose deadline is at or before `now`; returns how many fired. */
  fireDue(now: number): number {
    let fired = 0;
    // Indexed: a firing timer may arm or disarm others (never remove them; owners remove outside).
    for (let i = 0; i < this.list.length; i++) {
      const t = this.list[i];
      if (t.at > now) continue;
      t.at = Infinity;
      fired++;
      t.fire(now);
    }
    return fired;
  }

  get size(): number {
    return this.list.length;
  }
}
