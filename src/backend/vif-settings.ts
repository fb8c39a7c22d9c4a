// The two vif settings netback reads at connect and then watches while the vif runs
// (drivers/net/xen-netback/xenbus.c: xen_net_read_rate with the credit watch on B/rate, and
// xen_mcast_ctrl_changed with the watch on F/request-multicast-control). A change reaches the
// vif's worker through the pool (WorkerPool.update) and is in effect within one rate interval.
//
// B/rate is the toolstack's ("bytes,usecs", libxl writes it from xl's rate=RATE[@INTERVAL]), still
// parsed strictly: digits, one comma, digits, nothing else, as netback's two simple_strtoul calls
// accept; anything else means unlimited, with one warning per value. Numbers beyond 2^53 - 1 are
// clamped there (netback's are u64: as unlimited). An interval of 0 is unlimited too: libxl never
// writes one, and netback would refill once per jiffy, a limit nobody configured.
//
// F/request-multicast-control is the guest's: read as netback's xenbus_read_unsigned (anything but
// a positive number is "not requested"). A guest rewriting it in a loop costs one pending re-read,
// never a queue (the same coalescing as the bus's per-device runs, XSA-349).
import type { Logger } from "../log.ts";
import type { VifRate, VifSettings } from "../pool/types.ts";
import type { Watch, XenstoreClient } from "../xenstore/index.ts";
import { quoteGuest } from "./errors.ts";

export const RATE_NODE = "rate";
export const MCAST_REQUEST_NODE = "request-multicast-control";

/** B/rate's value: the limit, or null (unlimited) with why when the value was there but unusable. */
export function parseRateNode(raw: string | undefined): { rate: VifRate | null; problem: string | null } {
  if (raw === undefined) return { rate: null, problem: null };
  const m = /^(\d+),(\d+)$/.exec(raw);
  if (!m) return { rate: null, problem: `${quoteGuest(raw)} is not "bytes,usecs"` };
  const bytes = Math.min(Number(m[1]), Number.MAX_SAFE_INTEGER);
  const usecs = Math.min(Number(m[2]), Number.MAX_SAFE_INTEGER);
  if (usecs === 0) return { rate: null, problem: `${quoteGuest(raw)} has an interval of 0 us` };
  return { rate: { bytes, usecs }, problem: null };
}

/** F/request-multicast-control as xenbus_read_unsigned(..., 0) != 0, but strict: plain decimal only. */
export function parseMcastRequest(raw: string | undefined): boolean {
  return raw !== undefined && /^\d{1,10}$/.test(raw) && Number(raw) !== 0;
}

/** "1 MB/s in 20 ms windows" style text for logs and /vifs. */
export function describeRate(rate: VifRate | null): string {
  if (rate === null) return "unlimited";
  const perSecond = (rate.bytes * 1e6) / rate.usecs;
  return `${rate.bytes} bytes per ${rate.usecs} us (${formatBytesPerSecond(perSecond)})`;
}

function formatBytesPerSecond(b: number): string {
  if (b >= 1e9) return `${+(b / 1e9).toPrecision(4)} GB/s`;
  if (b >= 1e6) return `${+(b / 1e6).toPrecision(4)} MB/s`;
  if (b >= 1e3) return `${+(b / 1e3).toPrecision(4)} kB/s`;
  return `${+b.toPrecision(4)} B/s`;
}

const same = (a: VifSettings, b: VifSettings) => a.multicastControl === b.multicastControl && a.rate?.bytes === b.rate?.bytes && a.rate?.usecs === b.rate?.usecs;

/**
 * One connected vif's two settings, from connect until disconnect. F/request-multicast-control has
 * a watch of its own; B/rate is under the bus's watch on the whole backend directory already, which
 * hands its events to changed() (a second watch per vif on it cost xenstored a watch to match every
 * write against, per vif).
 */
export class VifSettingsWatch {
  /** What was last read (and, once started, handed to the worker). */
  current: VifSettings = { rate: null, multicastControl: false };
  private watches: Watch[] = [];
  private dirty = false;
  private running: Promise<void> | null = null;
  private stopped = false;
  /** The last B/rate value warned about: one warning per malformed value, not per watch event. */
  private warned: string | undefined;

  constructor(
    private readonly xs: XenstoreClient,
    private readonly name: string,
    /** B and F. */
    private readonly backendPath: string,
    private readonly frontendPath: string,
    private readonly log: Logger,
    /** Hands changed settings to the vif's worker. */
    private readonly apply: (s: VifSettings) => Promise<void>,
  ) {}

  /** Reads both nodes now (at connect, before the vif is handed to a worker). */
  async read(): Promise<VifSettings> {
    const [rateRaw, mcastRaw] = await Promise.all([this.xs.tryRead(`${this.backendPath}/${RATE_NODE}`), this.xs.tryRead(`${this.frontendPath}/${MCAST_REQUEST_NODE}`)]);
    const { rate, problem } = parseRateNode(rateRaw);
    if (problem !== null && rateRaw !== this.warned) {
      this.warned = rateRaw;
      this.log.warn(`${this.name}: failed to parse its rate limit: B/rate ${problem}; guest tx unlimited (the toolstack writes it from xl's rate=RATE[@INTERVAL]: fix the vif's rate= setting)`);
    }
    if (problem === null) this.warned = undefined;
    return { rate, multicastControl: parseMcastRequest(mcastRaw) };
  }

  /**
   * Watches F/request-multicast-control (the watch fires once at once, which re-reads both nodes:
   * a B/rate write between read() and now is not missed; an unchanged value is not handed over again).
   */
  async start(initial: VifSettings): Promise<void> {
    this.current = initial;
    const w = await this.xs.watch(`${this.frontendPath}/${MCAST_REQUEST_NODE}`, () => this.kick());
    if (this.stopped) await w.unwatch().catch(() => {});
    else this.watches.push(w);
  }

  /** Drops the watches and waits for a re-read in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    const ws = this.watches.splice(0);
    await Promise.all(ws.map((w) => w.unwatch().catch(() => {})));
    await this.running;
  }

  /** One of the two nodes changed (B/rate's event comes from the bus's watch): re-read both. */
  changed(): void {
    this.kick();
  }

  private kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.running) return;
    this.running = (async () => {
      try {
        while (this.dirty && !this.stopped) {
          this.dirty = false;
          const next = await this.read();
          if (this.stopped || same(next, this.current)) continue;
          const was = this.current;
          this.current = next;
          if (describeRate(was.rate) !== describeRate(next.rate)) this.log.info(`${this.name}: rate limit now ${describeRate(next.rate)}`);
          if (was.multicastControl !== next.multicastControl) this.log.info(`${this.name}: the guest ${next.multicastControl ? "asked for" : "stopped"} multicast filtering`);
          await this.apply(next);
        }
      } catch (e) {
        // xenstored away or the vif going: the next watch event (they are re-registered on reconnect) reads again.
        this.log.debug(`${this.name}: re-reading rate / request-multicast-control failed: ${(e as Error).message}`);
      } finally {
        this.running = null;
      }
    })();
  }
}
