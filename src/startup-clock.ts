// How long a start took, phase by phase. A restart's gap (the guests' frames wait from the old
// qnicd's exit until the new one took their vifs over) is mostly this time, so the "serving" line
// carries it on every host, not only under a profiler: e.g. on real Xen under emulation a start
// took seconds where this machine needs a fraction of one, and the phases say where they went.
import { readFileSync } from "node:fs";

/**
 * performance.now() when this module was evaluated: main.ts imports it first, so everything before
 * it is the runtime's own start plus loading (reading, parsing) the daemon's modules, and the time
 * from it to main.ts's first statement is their evaluation.
 */
export const MODULES_EVALUATING_AT = performance.now();

/**
 * Milliseconds since this process was exec'd, from Linux's /proc (its start time in clock ticks,
 * USER_HZ = 100, against /proc/uptime: 10 ms resolution); undefined where /proc has no answer.
 */
export function msSinceExec(): number | undefined {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    // The command name (field 2) may hold spaces and ')': the fields after the last ')' start at field 3.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const startTicks = Number(fields[22 - 3]);
    const uptimeS = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    const ms = uptimeS * 1000 - startTicks * 10;
    return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
  } catch {
    return undefined;
  }
}

/** Phases of one start, each the time since the previous mark. */
export class StartupClock {
  private readonly origin: number;
  private last: number;
  private readonly phases: { name: string; ms: number }[] = [];

  /**
   * fromExec (main.ts): the first phases are the runtime's start and module loading, measured from
   * the process's exec; otherwise (a test starting the daemon in-process) the clock starts now.
   */
  constructor(opts: { fromExec?: boolean } = {}) {
    const now = performance.now();
    const sinceExec = opts.fromExec ? msSinceExec() : undefined;
    if (sinceExec === undefined) {
      this.origin = this.last = now;
      return;
    }
    this.origin = now - sinceExec;
    this.last = this.origin;
    // Exec to this module's evaluation; the runtime's own start cannot be told apart from the
    // loading without a hook into Bun, so they are one phase.
    this.mark("runtime and module load", MODULES_EVALUATING_AT);
    this.mark("module evaluation", now);
  }

  /** Ends the phase `name` (now, or at `at`, a performance.now() value); returns its milliseconds. */
  mark(name: string, at = performance.now()): number {
    const ms = Math.max(0, at - this.last);
    this.phases.push({ name, ms });
    this.last = Math.max(this.last, at);
    return ms;
  }

  /** Milliseconds from the clock's origin (the exec, or the construction) to now. */
  totalMs(): number {
    return performance.now() - this.origin;
  }

  /** "1234 ms: runtime and module load 400, module evaluation 30, ..." (rounded to whole ms). */
  summary(): string {
    return `${Math.round(this.totalMs())} ms: ${this.phases.map((p) => `${p.name} ${Math.round(p.ms)}`).join(", ")}`;
  }
}
