// Small statistics for the scenarios: medians, percentiles, and alternating A/B pairs whose ratio is
// the median of the per-pair ratios (load from other processes hits both halves of a pair alike).

export function median(xs: readonly number[]): number {
  return percentile(xs, 0.5);
}

/** The value at fraction `p` (0..1) of the sorted samples (nearest rank). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new RangeError("percentile of no samples");
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

export interface Pairs {
  a: number[];
  b: number[];
  /** Median of a / b over pairs. */
  ratio: number;
}

/** Runs `a` then `b`, `runs` times; both return a rate. */
export function alternate(runs: number, a: () => number, b: () => number): Pairs {
  const as: number[] = [];
  const bs: number[] = [];
  for (let r = 0; r < runs; r++) {
    as.push(a());
    bs.push(b());
  }
  return { a: as, b: bs, ratio: median(as.map((x, i) => x / bs[i]!)) };
}
