// Runs one scenario in a process of its own (bench/run.ts starts one per scenario, pinned when the
// scenario asks): a crash, a leak or a CPU pin stays inside it. Progress lines go to stderr; the
// result (or the error) is written as JSON to the file named on the command line.
//   bun bench/lib/child.ts <scenario> <work dir> <result file> [--quick]
import { writeFileSync } from "node:fs";
import { isScenarioName, loadScenario } from "../scenarios/index.ts";

const [name, workDir, resultFile] = process.argv.slice(2);
const quick = process.argv.includes("--quick");
if (!name || !workDir || !resultFile || !isScenarioName(name)) {
  console.error("usage: bun bench/lib/child.ts <scenario> <work dir> <result file> [--quick]");
  process.exit(2);
}
try {
  const loaded = await loadScenario(name);
  if ("unavailable" in loaded) throw new Error(`not available: ${loaded.unavailable}`);
  const result = await loaded.scenario.run({ quick, workDir, log: (line) => process.stderr.write(`  ${name}: ${line}\n`) });
  writeFileSync(resultFile, JSON.stringify({ result }));
} catch (e) {
  const err = e as Error;
  writeFileSync(resultFile, JSON.stringify({ error: err?.message ?? String(e), stack: err?.stack }));
}
process.exit(0);
