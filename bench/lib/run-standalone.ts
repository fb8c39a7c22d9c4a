// Running one scenario module by itself (`bun bench/scenarios/<name>.ts [--quick]`): the same
// ScenarioOptions bench/run.ts gives it, a scratch directory removed afterwards, progress on stderr
// and the ScenarioResult as JSON on stdout. A scenario that asks to be pinned (Scenario.pin) is
// re-run under `taskset -c <pin>` first, as run.ts does, unless --no-pin.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Scenario } from "./scenario.ts";

const PINNED_ENV = "QNICD_BENCH_PINNED";

export async function runStandalone(scenario: Scenario, script: string): Promise<void> {
  const argv = process.argv.slice(2);
  const pin = (scenario as { pin?: string }).pin;
  if (pin && !argv.includes("--no-pin") && process.env[PINNED_ENV] === undefined && Bun.which("taskset")) {
    const p = Bun.spawnSync(["taskset", "-c", pin, process.execPath, script, ...argv], { stdio: ["inherit", "inherit", "inherit"], env: { ...process.env, [PINNED_ENV]: pin } });
    process.exit(p.exitCode ?? 1);
  }
  const workDir = mkdtempSync(join(tmpdir(), `qnicd-bench-${scenario.name}-`));
  const t0 = performance.now();
  try {
    const result = await scenario.run({ quick: argv.includes("--quick"), log: (l) => console.error(`[${scenario.name}] ${l}`), workDir });
    console.error(`[${scenario.name}] done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log(JSON.stringify(result, null, 2));
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
