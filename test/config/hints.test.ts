// What qnicd tells an operator to run works from a checkout: the command a startup error names is
// run as written (npm, not a `bun` that a fresh machine does not have on its PATH), and --version
// prints the version from package.json with the checkout's commit.
import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";

const ROOT = join(import.meta.dir, "../..");
const base = mkdtempSync(join(tmpdir(), "qnicd-hints-"));
const dir = join(base, "sim");
afterAll(() => {
  if (existsSync(dir)) spawnSync("npm", ["run", "--silent", "sim", "--", "down", "--dir", dir], { cwd: ROOT });
  rmSync(base, { recursive: true, force: true });
});

/** Runs a hint's command line from the checkout's root, with a PATH that has npm but no bun. */
function run(command: string) {
  const words = command.split(" ");
  const path = (process.env.PATH ?? "").split(":").filter((d) => !existsSync(join(d, "bun"))).join(":");
  return spawnSync(words[0]!, words.slice(1), { cwd: ROOT, encoding: "utf8", env: { ...process.env, PATH: path }, timeout: 60_000 });
}

test("the hint for a missing simulated host names an npm command that starts one, after which qnicd starts", async () => {
  const config = loadConfig({ argv: ["--platform", "sim", "--sim-dir", dir, "--http", "127.0.0.1:0", "--workers", "1", "--peer", "null"], env: {} });
  const quiet = createLogger({ level: "error", format: "text", write: () => {} });
  const err = await startDaemon(config, { log: quiet }).then(
    () => null,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/start it with '([^']+)'$/);
  const command = err!.message.match(/start it with '([^']+)'$/)![1]!;
  expect(command).toStartWith("npm run ");
  const r = run(command);
  expect(r.status, r.stderr).toBe(0);
  const daemon = await startDaemon(config, { log: quiet });
  await daemon.stop();
  expect(run(`npm run sim -- down --dir ${dir}`).status).toBe(0);
});

test("qnicd --version prints the package's version and the checkout's commit, through npm run qnicd", () => {
  const r = run("npm run --silent qnicd -- --version");
  expect(r.status, r.stderr).toBe(0);
  const head = spawnSync("git", ["-C", ROOT, "rev-parse", "HEAD"], { encoding: "utf8" }).stdout.trim();
  expect(r.stdout).toMatch(new RegExp(`^qnicd ${pkg.version.replace(/\./g, "\\.")} \\(commit ${head}(-dirty)?\\)\\n$`));
});
