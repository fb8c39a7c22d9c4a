// The scenario registry: every scenario `bun run bench` knows, in the order a full run takes them.
// Each is a module bench/scenarios/<name>.ts exporting `scenario: Scenario` (bench/lib/scenario.ts).
// Modules load on demand, so a scenario whose file is not there (yet) is reported as not available
// and the others still run.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Scenario } from "../lib/scenario.ts";

export const SCENARIO_NAMES = ["tx", "rx", "bidir", "gso", "switch", "tap", "latency", "seed", "vifs", "workers", "rate"] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export function isScenarioName(name: string): name is ScenarioName {
  return (SCENARIO_NAMES as readonly string[]).includes(name);
}

export type Loaded = { scenario: Scenario } | { unavailable: string };

/** The scenario, or why it is not available here (its module is missing). Other import errors throw. */
export async function loadScenario(name: ScenarioName): Promise<Loaded> {
  const file = join(import.meta.dir, `${name}.ts`);
  if (!existsSync(file)) return { unavailable: `bench/scenarios/${name}.ts is not there` };
  const mod = (await import(file)) as { scenario?: Scenario };
  if (!mod.scenario || typeof mod.scenario.run !== "function") throw new Error(`bench/scenarios/${name}.ts does not export \`scenario: Scenario\``);
  return { scenario: mod.scenario };
}
