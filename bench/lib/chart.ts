// bench.svg, written by hand (no dependencies): packets per second by frame size and by worker
// count, one line per series (qnicd and its baselines), from the figures scenarios place on a chart
// (Figure.chart / Figure.x). Categorical x axes (the sizes and counts measured), linear y from 0.
import type { Figure } from "./scenario.ts";

const PANEL_W = 470;
const PLOT_H = 300;
const MARGIN = { left: 62, right: 18, top: 70, bottom: 52 };
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const PANELS = [
  { chart: "frame-size" as const, title: "by frame size", xLabel: "frame size (bytes)" },
  { chart: "workers" as const, title: "by worker count", xLabel: "workers" },
  { chart: "queues" as const, title: "one vif by queue count", xLabel: "queues" },
];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Packets per second, or null for a figure in another unit (not drawn). */
function pps(f: Figure): number | null {
  const k = { pps: 1, kpps: 1e3, Mpps: 1e6 }[f.unit];
  return k === undefined ? null : f.value * k;
}

/** 2500000 -> "2.5M", 100000 -> "100k". */
function ppsTick(v: number): string {
  const t = (x: number) => String(Number(x.toPrecision(3)));
  if (v >= 1e9) return `${t(v / 1e9)}G`;
  if (v >= 1e6) return `${t(v / 1e6)}M`;
  if (v >= 1e3) return `${t(v / 1e3)}k`;
  return t(v);
}

/** A 1/2/5 x 10^k step giving about `n` ticks up to `max`. */
function niceStep(max: number, n: number): number {
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
}

function dash(series: string): string {
  if (/^C reference/i.test(series)) return ' stroke-dasharray="7 4"';
  if (/seed/i.test(series)) return ' stroke-dasharray="2 3"';
  if (/alone|generator/i.test(series)) return ' stroke-dasharray="10 3 2 3"';
  return "";
}

/** "qnicd tx", "C reference tx" -> "tx": what a series measures, without whose implementation it is. */
function family(series: string): string {
  return series.replace(/^(qnicd|C reference|seed algorithm|seed)\b\s*/i, "").trim() || series;
}

export interface ChartSeries {
  name: string;
  points: { x: number; y: number }[];
}

/** The series each panel draws (exported for tests and bench.json). */
export function chartSeries(figures: Figure[]): Record<"frame-size" | "workers" | "queues", ChartSeries[]> {
  const out = { "frame-size": [] as ChartSeries[], workers: [] as ChartSeries[], queues: [] as ChartSeries[] };
  for (const f of figures) {
    const y = pps(f);
    if (!f.chart || f.x === undefined || y === null) continue;
    const list = out[f.chart];
    let s = list.find((s) => s.name === f.series);
    if (!s) list.push((s = { name: f.series, points: [] }));
    s.points.push({ x: f.x, y });
  }
  for (const list of Object.values(out)) for (const s of list) s.points.sort((a, b) => a.x - b.x);
  return out;
}

export function renderChart(figures: Figure[], subtitle: string): string {
  const all = chartSeries(figures);
  // One hue per family (qnicd tx and C reference tx share one; the line style tells them apart).
  const families = [...new Set([...all["frame-size"], ...all.workers, ...all.queues].map((s) => family(s.name)))];
  const color = (name: string) => PALETTE[families.indexOf(family(name)) % PALETTE.length]!;
  const legendRows = Math.max(...PANELS.map((p) => Math.ceil(all[p.chart].length / 2)), 1);
  const width = PANEL_W * PANELS.length;
  const height = MARGIN.top + PLOT_H + MARGIN.bottom + legendRows * 20 + 16;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  o.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold">qnicd: packets per second, with the baselines measured in the same run</text>`);
  o.push(`<text x="${width / 2}" y="44" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle)}</text>`);
  PANELS.forEach((panel, pi) => {
    const series = all[panel.chart];
    const x0 = pi * PANEL_W + MARGIN.left;
    const plotW = PANEL_W - MARGIN.left - MARGIN.right;
    const y0 = MARGIN.top;
    const yBottom = y0 + PLOT_H;
    o.push(`<g class="panel" id="${panel.chart}">`);
    o.push(`<text x="${x0 + plotW / 2}" y="${y0 - 10}" text-anchor="middle" font-size="14" font-weight="bold">${esc(panel.title)}</text>`);
    o.push(`<rect x="${x0}" y="${y0}" width="${plotW}" height="${PLOT_H}" fill="#fafafa" stroke="#999"/>`);
    const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
    if (xs.length === 0) {
      o.push(`<text x="${x0 + plotW / 2}" y="${y0 + PLOT_H / 2}" text-anchor="middle" fill="#777">no figures in this run</text>`);
      o.push(`</g>`);
      return;
    }
    const ys = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y > 0);
    const maxY = Math.max(...ys, 1);
    const minY = Math.min(...ys, maxY);
    // Log scale when the series span more than 20x (a per-packet baseline next to a batched path),
    // so every line stays readable; linear from 0 otherwise.
    const log = maxY / minY > 20;
    let yOf: (v: number) => number;
    if (log) {
      const lo = Math.floor(Math.log10(minY)), hi = Math.ceil(Math.log10(maxY * 1.05));
      yOf = (v: number) => yBottom - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * PLOT_H;
      for (let d = lo; d <= hi; d++) {
        for (const m of d < hi ? [1, 2, 5] : [1]) {
          const v = m * 10 ** d;
          const y = yOf(v).toFixed(1);
          o.push(`<line x1="${x0}" y1="${y}" x2="${x0 + plotW}" y2="${y}" stroke="${m === 1 ? "#ccc" : "#eee"}"/>`);
          if (m === 1 || hi - lo <= 3) o.push(`<text x="${x0 - 6}" y="${Number(y) + 4}" text-anchor="end"${m === 1 ? "" : ' fill="#777" font-size="10"'}>${ppsTick(v)}</text>`);
        }
      }
    } else {
      const step = niceStep(maxY / 1e6 || 1, 5) * 1e6;
      const top = Math.ceil((maxY * 1.05) / step) * step || step;
      yOf = (v: number) => yBottom - (v / top) * PLOT_H;
      for (let v = 0; v <= top + step / 2; v += step) {
        const y = yOf(v).toFixed(1);
        o.push(`<line x1="${x0}" y1="${y}" x2="${x0 + plotW}" y2="${y}" stroke="#ddd"/>`);
        o.push(`<text x="${x0 - 6}" y="${Number(y) + 4}" text-anchor="end">${ppsTick(v)}</text>`);
      }
    }
    const xOf = (x: number) => x0 + ((xs.indexOf(x) + 0.5) / xs.length) * plotW;
    for (const x of xs) {
      o.push(`<line x1="${xOf(x)}" y1="${yBottom}" x2="${xOf(x)}" y2="${yBottom + 5}" stroke="#333"/>`);
      o.push(`<text x="${xOf(x)}" y="${yBottom + 19}" text-anchor="middle">${x}</text>`);
    }
    o.push(`<text x="${x0 + plotW / 2}" y="${yBottom + 40}" text-anchor="middle">${esc(panel.xLabel)}</text>`);
    const yMid = y0 + PLOT_H / 2;
    o.push(`<text x="${x0 - 46}" y="${yMid}" text-anchor="middle" transform="rotate(-90 ${x0 - 46} ${yMid})">packets per second${log ? " (log scale)" : ""}</text>`);
    for (const s of series) {
      const c = color(s.name);
      const pts = s.points.map((p) => `${xOf(p.x).toFixed(1)},${yOf(p.y).toFixed(1)}`).join(" ");
      o.push(`<polyline class="series" data-series="${esc(s.name)}" points="${pts}" fill="none" stroke="${c}" stroke-width="2.2"${dash(s.name)}/>`);
      for (const p of s.points) o.push(`<circle cx="${xOf(p.x).toFixed(1)}" cy="${yOf(p.y).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(s.name)} ${p.x}: ${(p.y / 1e6).toFixed(3)} Mpps</title></circle>`);
    }
    const ly = yBottom + MARGIN.bottom + 10;
    series.forEach((s, i) => {
      const lx = x0 + (i % 2) * (plotW / 2);
      const y = ly + Math.floor(i / 2) * 20;
      o.push(`<line x1="${lx}" y1="${y}" x2="${lx + 28}" y2="${y}" stroke="${color(s.name)}" stroke-width="2.5"${dash(s.name)}/>`);
      o.push(`<text x="${lx + 34}" y="${y + 4}">${esc(s.name)}</text>`);
    });
    o.push(`</g>`);
  });
  o.push(`</svg>`);
  return `${o.join("\n")}\n`;
}
