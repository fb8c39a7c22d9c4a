// What the figures were measured on: they only mean something next to it.
import { readFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  bun: string;
  date: string;
  commit: string;
  /** Uncommitted changes in the checkout when the run started. */
  dirty: boolean;
  quick: boolean;
  /** Load average (1 min) when the run started: other work on the machine shows here. */
  loadAverage: number;
}

export function describeMachine(quick: boolean, repo: string): Machine {
  const git = (args: string[]) => {
    const r = Bun.spawnSync(["git", "-C", repo, ...args], { stderr: "ignore" });
    return r.exitCode === 0 ? r.stdout.toString().trim() : null;
  };
  const model = (() => {
    try {
      const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
      if (m) return m[1]!.trim();
    } catch {}
    return cpus()[0]?.model ?? "unknown";
  })();
  let load = 0;
  try {
    load = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {}
  return {
    cpuModel: model,
    cores: cpus().length,
    memoryBytes: totalmem(),
    kernel: release(),
    bun: Bun.version,
    date: new Date().toISOString(),
    commit: git(["rev-parse", "HEAD"]) ?? "unknown",
    dirty: (git(["status", "--porcelain", "--untracked-files=no"]) ?? "") !== "",
    quick,
    loadAverage: load,
  };
}

export function machineLine(m: Machine): string {
  const gib = (m.memoryBytes / 2 ** 30).toFixed(1);
  return `${m.cpuModel}, ${m.cores} cores, ${gib} GiB, Linux ${m.kernel}, bun ${m.bun}, commit ${m.commit.slice(0, 10)}${m.dirty ? "+dirty" : ""}, load ${m.loadAverage.toFixed(2)}`;
}
