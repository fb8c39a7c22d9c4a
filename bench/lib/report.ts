// What one `bun run bench` produced, scenario by scenario, and the terminal table made of it.
import type { Figure, ScenarioResult } from "./scenario.ts";

export type RunStatus = "ok" | "skipped" | "failed" | "not available";

export interface RunEntry {
  name: string;
  status: RunStatus;
  /** Wall time of the scenario's process. */
  seconds: number;
  /** The scenario's own result (ok and skipped). */
  result?: ScenarioResult;
  /** One line: why it failed or is not available. */
  error?: string;
}

/** Figures in a unit a reader takes in at a glance (pps scaled to kpps / Mpps). */
export function formatValue(value: number, unit: string): string {
  if (unit === "pps") {
    if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(3)} Mpps`;
    if (Math.abs(value) >= 1e3) return `${(value / 1e3).toFixed(1)} kpps`;
    return `${value.toFixed(0)} pps`;
  }
  const a = Math.abs(value);
  const n = a >= 1000 ? value.toFixed(0) : a >= 100 ? value.toFixed(1) : a >= 10 ? value.toFixed(2) : value.toFixed(3);
  return `${n} ${unit}`;
}

function grid(rows: string[][], indent: string): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) => indent + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("   ").trimEnd());
}

/**
 * Figures as grids: one row per label, one column per series, so each figure sits next to its
 * baselines. Rows measured by the same set of series share one grid (a scenario with figures of
 * several kinds gets one compact grid per kind rather than one wide, mostly empty one).
 */
function figureGrids(figures: Figure[]): string[] {
  const labels: string[] = [];
  const seriesOf = new Map<string, string[]>();
  const cell = new Map<string, string>();
  for (const f of figures) {
    if (!labels.includes(f.label)) labels.push(f.label);
    const s = seriesOf.get(f.label) ?? [];
    if (!s.includes(f.series)) s.push(f.series);
    seriesOf.set(f.label, s);
    cell.set(`${f.label}\0${f.series}`, formatValue(f.value, f.unit));
  }
  const groups = new Map<string, { series: string[]; labels: string[] }>();
  for (const l of labels) {
    const series = seriesOf.get(l)!;
    const key = [...series].sort().join("\0");
    const g = groups.get(key) ?? { series, labels: [] };
    g.labels.push(l);
    groups.set(key, g);
  }
  const out: string[] = [];
  for (const g of groups.values()) {
    const rows = [["", ...g.series], ...g.labels.map((l) => [l, ...g.series.map((s) => cell.get(`${l}\0${s}`) ?? "-")])];
    out.push(...grid(rows, "  "));
  }
  return out;
}

export function renderTable(entries: RunEntry[], header: string[]): string {
  const out: string[] = [...header, ""];
  for (const e of entries) {
    const head = `${e.name} (${e.status}, ${e.seconds.toFixed(1)} s)`;
    const r = e.result;
    if (e.status === "failed" || e.status === "not available") {
      out.push(`${head}: ${e.error ?? "?"}`, "");
      continue;
    }
    if (e.status === "skipped" || !r) {
      out.push(`${head}: ${r?.skipped ?? e.error ?? "?"}`, "");
      continue;
    }
    out.push(head);
    if (r.figures.length) out.push(...figureGrids(r.figures));
    if (r.ratios.length) {
      const rows = r.ratios.map((q) => {
        const goal = q.goal === null ? "" : `goal ${q.goal.toFixed(2)}`;
        const met = q.goal === null ? "" : q.value >= q.goal ? "met" : "NOT met";
        return [`ratio  ${q.label}`, q.value.toFixed(2), goal, met];
      });
      out.push(...grid(rows, "  "));
    }
    for (const i of r.invalid ?? []) out.push(`  INVALID  ${i}`);
    for (const n of r.notes) out.push(`  note  ${n}`);
    out.push("");
  }
  const count = (s: RunStatus) => entries.filter((e) => e.status === s).length;
  out.push(`${entries.length} scenarios: ${count("ok")} ok, ${count("skipped")} skipped, ${count("not available")} not available, ${count("failed")} failed`);
  return out.join("\n");
}
