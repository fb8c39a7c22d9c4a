// Live rates for the dashboard (GET /rates): once a second the main thread looks at the counters of
// every vif (shared memory, no worker asked) and keeps, per vif and for all of them together, the
// last few minutes of packets/s, bit/s and drops/s each way.
//
// The work per second is proportional to the vifs whose counters moved, not to the vifs served: a
// stats slot's version (StatsArena.version) moves only when its worker flushes it, which it does
// only for a vif it served in that wake-up, so an idle vif costs one load a second and keeps no
// points: its rates are zero, and view() writes those zeros out when asked. (Reading and storing
// every vif's counters every second cost an idle daemon with 1000 vifs several % of a CPU.)
// Bounded: windowSeconds of points per vif that had traffic, and vifs that are gone are forgotten
// at the next sample.
import { VIF_COUNTER_NAMES, type StatsArena } from "../stats/index.ts";

export const RATE_SERIES = ["tx_pps", "rx_pps", "tx_bps", "rx_bps", "drops_ps"] as const;
export type RateSeries = (typeof RATE_SERIES)[number];

export interface RatePoints {
  /** Sample times, milliseconds since the epoch. */
  t: number[];
  tx_pps: number[];
  rx_pps: number[];
  tx_bps: number[];
  rx_bps: number[];
  /** Frames dropped each way (tx_drops + rx_drops), per second. */
  drops_ps: number[];
}

export interface RatesView {
  intervalMs: number;
  windowSeconds: number;
  /** Rates from the guest's side, as the counters: tx = sent by the guest. */
  direction: string;
  vifs: Record<string, RatePoints>;
  total: RatePoints;
}

/** Where the rates come from: the counters' arena, and which vif holds a slot. */
export interface RateSource {
  readonly arena: StatsArena;
  /**
   * The name of the vif holding each slot in use, by slot index. Called at most once a sample, and
   * only when a slot changed hands (a vif connected or moved), so it may cost O(vifs).
   */
  names(): ReadonlyMap<number, { generation: number; name: string }>;
}

const COUNTER = (name: string) => VIF_COUNTER_NAMES.indexOf(name as (typeof VIF_COUNTER_NAMES)[number]);
const TX_PACKETS = COUNTER("tx_packets");
const RX_PACKETS = COUNTER("rx_packets");
const TX_BYTES = COUNTER("tx_bytes");
const RX_BYTES = COUNTER("rx_bytes");
const TX_DROPS = COUNTER("tx_drops");
const RX_DROPS = COUNTER("rx_drops");

interface Track {
  readonly name: string;
  /** The sample that first saw it: its points start at the next one (a rate needs two samples). */
  readonly firstTick: number;
  /** Counters at the last sample: tx/rx packets, tx/rx bytes, drops. */
  readonly last: Float64Array;
  /** Slots it holds right now (a vif moving between workers holds its new one before its old is seen freed). */
  slots: number;
  /** Points of the samples where some rate was not zero, oldest first; every other sample's rates are zero. */
  readonly points: RatePoints & { tick: number[] };
}

interface SlotSeen {
  version: number;
  generation: number;
  track: Track | null;
}

function emptyPoints(): RatePoints {
  return { t: [], tx_pps: [], rx_pps: [], tx_bps: [], rx_bps: [], drops_ps: [] };
}

export class RateHistory {
  private readonly tracks = new Map<string, Track>();
  /** Tracks holding points (vifs with traffic in the window): the only ones trimmed each sample. */
  private readonly withPoints = new Set<Track>();
  /** Per slot index, what the last sample saw there (undefined: nothing named yet). */
  private readonly seen: (SlotSeen | undefined)[] = [];
  /** Samples taken so far; `times` holds the times of the last `maxPoints` of them. */
  private tick = 0;
  private readonly times: number[] = [];
  private readonly total = emptyPoints();
  private totalStarted = false;
  private readonly values: number[] = new Array<number>(VIF_COUNTER_NAMES.length).fill(0);
  private readonly sum: Record<RateSeries, number> = { tx_pps: 0, rx_pps: 0, tx_bps: 0, rx_bps: 0, drops_ps: 0 };
  private readonly rate: Record<RateSeries, number> = { tx_pps: 0, rx_pps: 0, tx_bps: 0, rx_bps: 0, drops_ps: 0 };
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly intervalMs = 1000,
    readonly windowSeconds = 300,
  ) {}

  private get maxPoints(): number {
    return Math.ceil((this.windowSeconds * 1000) / this.intervalMs);
  }

  /** Samples `source` every intervalMs until stop(). */
  start(source: RateSource): void {
    this.timer ??= setInterval(() => this.sample(Date.now(), source), this.intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One sample at time `now` (milliseconds). */
  sample(now: number, source: RateSource): void {
    const prevTime = this.times.length ? this.times[this.times.length - 1]! : now;
    const k = ++this.tick;
    this.times.push(now);
    if (this.times.length > this.maxPoints) this.times.shift();
    const dt = (now - prevTime) / 1000;
    for (const s of RATE_SERIES) this.sum[s] = 0;
    const arena = source.arena;
    let names: ReadonlyMap<number, { generation: number; name: string }> | null = null;
    const released: Track[] = [];
    const n = arena.slotCount;
    for (let index = 0; index < n; index++) {
      const version = arena.version(index);
      let seen = this.seen[index];
      if (seen !== undefined && seen.version === version) continue; // nothing moved: its rates are zero
      const snap = arena.readInto(index, this.values);
      if (seen !== undefined && (!snap.inUse || snap.generation !== seen.generation) && seen.track) {
        seen.track.slots--;
        released.push(seen.track);
        seen.track = null;
      }
      if (!snap.inUse) {
        this.seen[index] = { version, generation: snap.generation, track: null };
        continue;
      }
      if (seen === undefined || seen.generation !== snap.generation || seen.track === null) {
        names ??= source.names();
        const held = names.get(index);
        if (held === undefined || held.generation !== snap.generation) {
          // Allocated but not connected yet: look again next time.
          this.seen[index] = undefined;
          continue;
        }
        let track = this.tracks.get(held.name);
        const fresh = track === undefined;
        if (!track) this.tracks.set(held.name, (track = { name: held.name, firstTick: k, last: new Float64Array(5), slots: 0, points: { ...emptyPoints(), tick: [] } }));
        track.slots++;
        this.seen[index] = seen = { version, generation: snap.generation, track };
        if (fresh) {
          this.remember(track, this.values);
          continue;
        }
      }
      seen.version = version;
      if (dt > 0) this.advance(seen.track!, k, now, dt, this.values);
      else this.remember(seen.track!, this.values);
    }
    for (const t of released) {
      if (t.slots > 0) continue;
      this.tracks.delete(t.name);
      this.withPoints.delete(t);
    }
    if (!this.totalStarted) for (const t of this.tracks.values()) if (t.firstTick < k) this.totalStarted = true;
    if (this.totalStarted) {
      this.push(this.total, now, this.sum);
      if (this.total.t.length > this.maxPoints) this.cut(this.total, this.total.t.length - this.maxPoints);
    }
    const oldest = k - this.times.length + 1;
    for (const t of this.withPoints) {
      this.trim(t.points, oldest);
      if (t.points.tick.length === 0) this.withPoints.delete(t);
    }
  }

  view(since = 0): RatesView {
    const oldest = this.tick - this.times.length + 1;
    // The first sample newer than `since`.
    let from = 0;
    while (from < this.times.length && this.times[from]! <= since) from++;
    const vifs: Record<string, RatePoints> = {};
    for (const [name, track] of this.tracks) {
      const out = emptyPoints();
      const p = track.points;
      let j = 0;
      for (let i = Math.max(from, track.firstTick + 1 - oldest); i < this.times.length; i++) {
        const tick = oldest + i;
        while (j < p.tick.length && p.tick[j]! < tick) j++;
        const hit = j < p.tick.length && p.tick[j] === tick;
        out.t.push(this.times[i]!);
        for (const s of RATE_SERIES) out[s].push(hit ? p[s][j]! : 0);
      }
      vifs[name] = out;
    }
    const total = emptyPoints();
    let f = 0;
    while (f < this.total.t.length && this.total.t[f]! <= since) f++;
    total.t = this.total.t.slice(f);
    for (const s of RATE_SERIES) total[s] = this.total[s].slice(f);
    return {
      intervalMs: this.intervalMs,
      windowSeconds: this.windowSeconds,
      direction: "tx = sent by the guest, rx = delivered to the guest",
      vifs,
      total,
    };
  }

  private remember(track: Track, v: readonly number[]): void {
    const l = track.last;
    l[0] = v[TX_PACKETS]!;
    l[1] = v[RX_PACKETS]!;
    l[2] = v[TX_BYTES]!;
    l[3] = v[RX_BYTES]!;
    l[4] = v[TX_DROPS]! + v[RX_DROPS]!;
  }

  /** Rates since the previous sample, added to the total and, when not all zero, to the vif's points. */
  private advance(track: Track, tick: number, now: number, dt: number, v: readonly number[]): void {
    const l = track.last;
    // Counters never go backwards (they carry across reconnects); clamp anyway, a rate is never negative.
    const d = (cur: number, prev: number) => Math.max(0, cur - prev) / dt;
    const r = this.rate;
    r.tx_pps = d(v[TX_PACKETS]!, l[0]!);
    r.rx_pps = d(v[RX_PACKETS]!, l[1]!);
    r.tx_bps = 8 * d(v[TX_BYTES]!, l[2]!);
    r.rx_bps = 8 * d(v[RX_BYTES]!, l[3]!);
    r.drops_ps = d(v[TX_DROPS]! + v[RX_DROPS]!, l[4]!);
    this.remember(track, v);
    let any = false;
    for (const s of RATE_SERIES) {
      this.sum[s] += r[s];
      if (r[s] !== 0) any = true;
    }
    if (!any) return;
    track.points.tick.push(tick);
    this.push(track.points, now, r);
    this.withPoints.add(track);
  }

  private push(p: RatePoints, now: number, r: Record<RateSeries, number>): void {
    p.t.push(now);
    for (const k of RATE_SERIES) p[k].push(Math.round(r[k] * 100) / 100);
  }

  /** Drops a vif's points older than the window (sample `oldest` is the first one kept). */
  private trim(p: RatePoints & { tick: number[] }, oldest: number): void {
    let cut = 0;
    while (cut < p.tick.length && p.tick[cut]! < oldest) cut++;
    if (cut === 0) return;
    p.tick.splice(0, cut);
    this.cut(p, cut);
  }

  private cut(p: RatePoints, n: number): void {
    p.t.splice(0, n);
    for (const k of RATE_SERIES) p[k].splice(0, n);
  }
}
