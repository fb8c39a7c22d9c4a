// Builds every native/*.c into native/build/lib<name>.so with gcc and the C library only.
// Runs from npm's postinstall and again on first use (src/native/lib.ts), so no manual step exists;
// a library is rebuilt only when its source or any native/*.h is newer than it.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "build");

function compilerOrExit() {
  const cc = process.env.CC || "gcc";
  try {
    execFileSync(cc, ["--version"], { stdio: "ignore" });
  } catch {
    const msg = `qnicd: building native/ needs a C compiler ('${cc}' not found): run 'apt-get install gcc' and try again`;
    const err = new Error(msg);
    err.code = "QNICD_NO_COMPILER";
    throw err;
  }
  return cc;
}

export function buildNative({ quiet = false } = {}) {
  const sources = readdirSync(here).filter((f) => f.endsWith(".c"));
  const headers = readdirSync(here).filter((f) => f.endsWith(".h")).map((f) => statSync(join(here, f)).mtimeMs);
  const newestHeader = Math.max(0, ...headers);
  mkdirSync(outDir, { recursive: true });
  let cc;
  const built = [];
  for (const src of sources) {
    const name = src.slice(0, -2);
    const out = join(outDir, `lib${name}.so`);
    const srcTime = Math.max(statSync(join(here, src)).mtimeMs, newestHeader);
    if (existsSync(out) && statSync(out).mtimeMs >= srcTime) continue;
    cc ??= compilerOrExit();
    // Build to a temporary name and rename, so a process loading the library never sees half a file.
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(cc, ["-O2", "-g", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-shared", "-fPIC",
      "-o", tmp, join(here, src), "-lpthread"], { stdio: quiet ? ["ignore", "ignore", "inherit"] : "inherit" });
    renameSync(tmp, out);
    built.push(out);
  }
  return built;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const built = buildNative();
    if (built.length) console.log(`qnicd: built ${built.length} native librar${built.length === 1 ? "y" : "ies"} in native/build`);
  } catch (e) {
    console.error(e.code === "QNICD_NO_COMPILER" ? e.message : `qnicd: native build failed: ${e.message}`);
    process.exit(1);
  }
}
