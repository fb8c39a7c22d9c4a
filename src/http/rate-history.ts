// Live rates for the dashboard (GET /rates): once a second the main thread reads every vif's counters
// (shared memory, no worker asked) and keeps, per vif and for all of them together, the last few
// minutes of packets/s, bit/s and drops/s each way. Bounded: WINDOW samples per vif, and vifs that
// are gone are forgotten at the next sample.
import type { VifStats } from "../stats/index.ts";

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

/** The counters a rate is taken from (kept per vif between samples: not the whole counter table). */
interface Sample {
  t: number;
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
  drops: number;
}

interface Track {
  last: Sample | null;
  points: RatePoints;
}

function emptyPoints(): RatePoints {
  return { t: [], tx_pps: [], rx_pps: [], tx_bps: [], rx_bps: [], drops_ps: [] };
}

export class RateHistory {
  private readonly tracks = new Map<string, Track>();
  private readonly total: Track = { last: null, points: emptyPoints() };
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    readonly intervalMs = 1000,
    readonly windowSeconds = 300,
  ) {}

  /** Samples every intervalMs from `read` (vif name -> counters, or null while it has none) until stop(). */
  start(read: () => { name: string; counters: VifStats | null }[]): void {
    this.timer ??= setInterval(() => this.sample(Date.now(), read()), this.intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One sample at time `now` (milliseconds). */
  sample(now: number, vifs: readonly { name: string; counters: VifStats | null }[]): void {
    const seen = new Set<string>();
    const sum = { tx_pps: 0, rx_pps: 0, tx_bps: 0, rx_bps: 0, drops_ps: 0 };
    let anyRate = false;
    for (const v of vifs) {
      if (!v.counters) continue;
      seen.add(v.name);
      let track = this.tracks.get(v.name);
      if (!track) this.tracks.set(v.name, (track = { last: null, points: emptyPoints() }));
      const r = this.advance(track, now, v.counters);
      if (r) {
        anyRate = true;
        for (const k of RATE_SERIES) sum[k] += r[k];
      }
    }
    for (const name of [...this.tracks.keys()]) if (!seen.has(name)) this.tracks.delete(name);
    if (anyRate || this.total.points.t.length > 0) this.push(this.total.points, now, sum);
  }

  view(since = 0): RatesView {
    const pick = (p: RatePoints): RatePoints => {
      let from = 0;
      while (from < p.t.length && p.t[from] <= since) from++;
      const out = emptyPoints();
      out.t = p.t.slice(from);
      for (const k of RATE_SERIES) out[k] = p[k].slice(from);
      return out;
    };
    const vifs: Record<string, RatePoints> = {};
    for (const [name, track] of this.tracks) vifs[name] = pick(track.points);
    return {
      intervalMs: this.intervalMs,
      windowSeconds: this.windowSeconds,
      direction: "tx = sent by the guest, rx = delivered to the guest",
      vifs,
      total: pick(this.total.points),
    };
  }

  /** Rates since the vif's previous sample, appended to its track; null on its first sample. */
  private advance(track: Track, now: number, s: VifStats): Record<RateSeries, number> | null {
    const prev = track.last;
    const cur: Sample = { t: now, txPackets: s.tx_packets, rxPackets: s.rx_packets, txBytes: s.tx_bytes, rxBytes: s.rx_bytes, drops: s.tx_drops + s.rx_drops };
    track.last = cur;
    if (!prev || now <= prev.t) return null;
    const dt = (now - prev.t) / 1000;
    // Counters never go backwards (they carry across reconnects); clamp anyway, a rate is never negative.
    const d = (a: number, b: number) => Math.max(0, a - b) / dt;
    const r = {
      tx_pps: d(cur.txPackets, prev.txPackets),
      rx_pps: d(cur.rxPackets, prev.rxPackets),
      tx_bps: 8 * d(cur.txBytes, prev.txBytes),
      rx_bps: 8 * d(cur.rxBytes, prev.rxBytes),
      drops_ps: d(cur.drops, prev.drops),
    };
    this.push(track.points, now, r);
    return r;
  }

  private push(p: RatePoints, now: number, r: Record<RateSeries, number>): void {
    p.t.push(now);
    for (const k of RATE_SERIES) p[k].push(Math.round(r[k] * 100) / 100);
    const max = Math.ceil((this.windowSeconds * 1000) / this.intervalMs);
    if (p.t.length > max) {
      const cut = p.t.length - max;
      p.t.splice(0, cut);
      for (const k of RATE_SERIES) p[k].splice(0, cut);
    }
  }
}
