// native/ must build with nothing but gcc and libc, rebuild only what changed, and tell a user
// without a compiler exactly what to install, in one line.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const buildScript = join(import.meta.dir, "..", "..", "native", "build.mjs");
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "qnicd-native-"));
  copyFileSync(buildScript, join(dir, "build.mjs"));
  writeFileSync(join(dir, "probe.c"), "int probe_answer(void) { return 42; }\n");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function runBuild(env: Record<string, string> = {}) {
  const r = Bun.spawnSync(["node", join(dir, "build.mjs")], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test("each native/*.c becomes a loadable lib<name>.so with gcc alone", async () => {
  expect(runBuild().code).toBe(0);
  const { dlopen, FFIType } = await import("bun:ffi");
  const lib = dlopen(join(dir, "build", "libprobe.so"), { probe_answer: { args: [], returns: FFIType.i32 } });
  expect(lib.symbols.probe_answer()).toBe(42);
  lib.close();
});

test("an up-to-date library is not rebuilt, a changed source is", () => {
  expect(runBuild().code).toBe(0);
  const so = join(dir, "build", "libprobe.so");
  const first = statSync(so).mtimeMs;
  expect(runBuild().stdout).toBe("");
  expect(statSync(so).mtimeMs).toBe(first);
  const later = new Date(Date.now() + 5000);
  utimesSync(join(dir, "probe.c"), later, later);
  expect(runBuild().stdout).toContain("built 1 native library");
});

test("a missing compiler is one line saying what to install", () => {
  const r = runBuild({ CC: "/nonexistent/gcc" });
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("apt-get install gcc");
  expect(existsSync(join(dir, "build", "libprobe.so"))).toBe(false);
});
