// How much one vif may make the daemon log. Nearly every line about a vif is caused by its guest
// (a xenstore write, a ring fault, a reconnect), so a guest that rewrites its frontend nodes in a
// loop would otherwise have the daemon write a line or more per write: measured 3,254 lines
// (359 KB) in 10 s from one guest, about 3 GB a day on dom0's disk. Linux netback limits
// its guest-caused messages the same way (net_ratelimit() in xenvif_tx_err and friends).
//
// Per vif, a window opens with its first line: the first `burst` lines of the window are written,
// the rest are counted, and when the window closes one line says how many were held back:
//
//   vif5.0: 3,912 similar lines suppressed in the last 10 s
//
// Lines not about a vif (the daemon's own) are never limited, and one vif's budget is its own:
// a noisy guest cannot silence what is logged about its neighbours.

export interface VifLogLimit {
  /** Lines written per vif per window before the rest are suppressed. */
  burst: number;
  /** Window length (ms). */
  windowMs: number;
}

/**
 * 20 lines, then silence for the rest of 10 s. Any 10 seconds overlap at most two windows, so a
 * vif gets at most 2 x (20 + 1 account) = 42 lines in them, however long its guest keeps going.
 */
export const DEFAULT_VIF_LOG_LIMIT: VifLogLimit = { burst: 20, windowMs: 10_000 };

/** A closed window's account: how many lines about `vif` were held back. */
export interface Suppressed {
  vif: string;
  count: number;
  windowMs: number;
}

interface Window {
  start: number;
  written: number;
  suppressed: number;
}

export class VifLogLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly limit: VifLogLimit = DEFAULT_VIF_LOG_LIMIT) {
    if (!(limit.burst >= 1 && limit.windowMs > 0)) throw new Error(`log limit: burst must be >= 1 and window > 0 (got ${limit.burst}, ${limit.windowMs} ms)`);
  }

  /**
   * One line about `vif` at time `now` (ms): write it or not. `closed` is the account of the vif's
   * previous window if that window ended with lines held back; it is to be written first.
   */
  admit(vif: string, now: number): { write: boolean; closed?: Suppressed } {
    let w = this.windows.get(vif);
    let closed: Suppressed | undefined;
    if (w && now - w.start >= this.limit.windowMs) {
      closed = this.account(vif, w);
      w = undefined;
    }
    if (!w) {
      w = { start: now, written: 0, suppressed: 0 };
      this.windows.set(vif, w);
    }
    if (w.written < this.limit.burst) {
      w.written++;
      return { write: true, closed };
    }
    w.suppressed++;
    return { write: false, closed };
  }

  /**
   * Closes every window that ended by `now` and returns the accounts of those that held lines
   * back. Forgetting ended windows is also what keeps this map as small as the set of vifs that
   * logged in the last window.
   */
  expire(now: number): Suppressed[] {
    const out: Suppressed[] = [];
    // A window is inserted when it opens and never moved, so the map is in order of start (the
    // clock does not go back): the ended ones are at its head. Stopping at the first open one keeps
    // a daemon whose 1000 vifs each logged a line from walking all 1000 at every window's end.
    for (const [vif, w] of this.windows) {
      if (now - w.start < this.limit.windowMs) break;
      const a = this.account(vif, w);
      if (a) out.push(a);
    }
    return out;
  }

  /** When the earliest open window ends (ms), or undefined if none is open. */
  nextExpiry(): number | undefined {
    for (const w of this.windows.values()) return w.start + this.limit.windowMs;
    return undefined;
  }

  /** Vifs with an open window (for tests of the map's bound). */
  get open(): number {
    return this.windows.size;
  }

  private account(vif: string, w: Window): Suppressed | undefined {
    this.windows.delete(vif);
    return w.suppressed ? { vif, count: w.suppressed, windowMs: this.limit.windowMs } : undefined;
  }
}

export function suppressedMessage(s: Suppressed): string {
  const secs = s.windowMs % 1000 === 0 ? String(s.windowMs / 1000) : (s.windowMs / 1000).toFixed(1);
  return `${s.vif}: ${s.count.toLocaleString("en-US")} similar ${s.count === 1 ? "line" : "lines"} suppressed in the last ${secs} s`;
}

// A vif's name is the configured prefix (default "vif") then "<domid>.<devid>" (src/backend/paths.ts).
const VIF_PREFIX = /^([A-Za-z][A-Za-z0-9_-]*?\d+\.\d+): /;
const VIF_NAME = /(?:^|\/)([A-Za-z][A-Za-z0-9_-]*?\d+\.\d+)$/;
const VIF_KEY = /^([A-Za-z][A-Za-z0-9_-]*?\d+\.\d+)#\d+$/;

/**
 * Which vif a line is about: the "vif3.0: " its message starts with (the backend's convention),
 * a pool line's connection key ("vif3.0#2"), or a logger named after the vif.
 */
export function vifOf(name: string | undefined, msg: string, fields?: Record<string, unknown>): string | undefined {
  const m = VIF_PREFIX.exec(msg);
  if (m) return m[1];
  const key = fields?.key;
  if (typeof key === "string") {
    const k = VIF_KEY.exec(key);
    if (k) return k[1];
  }
  if (name) {
    const n = VIF_NAME.exec(name);
    if (n) return n[1];
  }
  return undefined;
}
