// `promtool check metrics` (Debian's prometheus package, installed when missing): Prometheus's own
// parser and linter for the text exposition format, run on what /metrics served.
import { spawnSync } from "node:child_process";
import { ensureDebPackages } from "./apt.ts";

export interface PromtoolResult {
  status: number | null;
  /** What promtool printed (parse errors and lint problems), stdout and stderr together. */
  output: string;
}

export function promtoolCheckMetrics(text: string): PromtoolResult {
  ensureDebPackages(["prometheus"]);
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}
