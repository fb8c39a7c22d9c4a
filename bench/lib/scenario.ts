// The contract between bench/run.ts and each scenario module (bench/scenarios/<name>.ts).
// A scenario measures qnicd and its baselines in the same run and reports each figure next to them:
// absolute numbers on a shared 2-vCPU VM are noise, ratios measured side by side are not.

export interface ScenarioOptions {
  /** Short run (`--quick`): fewer sizes/counts and shorter windows, same shape of result. */
  quick: boolean;
  /** Progress lines for the terminal (stderr); the table is printed by run.ts. */
  log: (line: string) => void;
  /** A scratch directory private to this scenario run; removed by run.ts afterwards. */
  workDir: string;
}

/** One measured number. `series`/`x` place it on the chart (e.g. series "qnicd tx", x 64). */
export interface Figure {
  /** What was measured, e.g. "tx 64 B" or "connect time median". */
  label: string;
  value: number;
  /** e.g. "pps", "Mpps", "us", "MB", "%", "s". */
  unit: string;
  /** Which implementation this is: "qnicd", "C reference", "seed algorithm", "generator alone", ... */
  series: string;
  /** Chart x coordinate (frame size in bytes, worker count, vif count), when it belongs on a chart. */
  x?: number;
  /** Chart this figure belongs to: "frame-size" (pps by frame size), "workers" (pps by worker count) or "queues" (one vif's pps by queue count). */
  chart?: "frame-size" | "workers" | "queues";
}

/** A ratio of two figures measured in this run, e.g. qnicd / C reference for tx 64 B. */
export interface Ratio {
  label: string;
  value: number;
  /** The goal, if the project has one (e.g. 0.7 for qnicd / C); null if none. */
  goal: number | null;
}

export interface ScenarioResult {
  name: string;
  figures: Figure[];
  ratios: Ratio[];
  /** Set when the scenario could not run here (e.g. no TAP rights): one line saying why. */
  skipped?: string;
  /**
   * Set when a figure is not qnicd's limit but the load generator's: the generator measured alone
   * was not clearly faster than qnicd with it. One line saying which figure and why.
   */
  invalid?: string[];
  /** Anything a reader should know (pinning, counts, seconds measured). */
  notes: string[];
}

export interface Scenario {
  name: string;
  /** One line for `bun run bench --help`. */
  description: string;
  /**
   * CPUs (a taskset list, e.g. "0") to pin the scenario's process to, with every process it starts.
   * Each scenario runs in a process of its own; run.ts starts it under `taskset -c <pin>` when set
   * (and taskset exists). For loops that hand the CPU back and forth with a producer process.
   */
  pin?: string;
  run(opts: ScenarioOptions): Promise<ScenarioResult>;
}
