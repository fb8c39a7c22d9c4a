// Runs Bun from this project's node_modules, installing it first on a fresh machine (Node and npm
// only), so the README's commands work verbatim on a clone with nothing installed yet.
import { spawn, spawnSync } from "node:child_process";
import { constants } from "node:os";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules", ".bin", "bun");

if (!existsSync(bun)) {
  console.error("qnicd: first run: installing dependencies (bun, hono, valibot) with npm ...");
  const lock = existsSync(join(root, "package-lock.json"));
  const r = spawnSync("npm", [lock ? "ci" : "install", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0 || !existsSync(bun)) {
    console.error("qnicd: npm could not install dependencies: check npm's output above and the registry connection");
    process.exit(1);
  }
}

const { buildNative } = await import("../native/build.mjs");
try {
  buildNative({ quiet: true });
} catch (e) {
  console.error(e.code === "QNICD_NO_COMPILER" ? e.message : `qnicd: native build failed: ${e.message}`);
  process.exit(1);
}

const child = spawn(bun, process.argv.slice(2), { cwd: process.cwd(), stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
