// TapPeer where io_uring is refused (seccomp, as in Docker's default profile): auto mode falls back
// to plain write() loops and still delivers; uring mode fails with a line that names the cure.
import { afterAll, expect, test } from "bun:test";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canUseTap } from "./tap-helper.ts";

const dir = mkdtempSync(join(tmpdir(), "qnicd-no-uring-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.skipIf(!canUseTap())("with io_uring_setup refused, auto falls back to plain writes that the kernel receives, and uring mode says why", () => {
  const launcher = join(dir, "no-uring");
  execFileSync("gcc", ["-O2", "-o", launcher, join(import.meta.dir, "no-uring.c")]);
  const r = spawnSync(launcher, ["38" /* ENOSYS */, process.execPath, join(import.meta.dir, "no-uring-child.ts")], { encoding: "utf8", timeout: 60_000 });
  expect(r.stderr).toBe("");
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
  expect(out.usesUring).toBe(false);
  expect(out.uringUnavailable).toBe("ENOSYS");
  expect(out.sent).toBe(5);
  expect(out.kernelGot).toBe(5);
  expect(out.syscalls).toBe(5); // one write() per frame on this path
  expect(out.uringMode).toMatch(/^TAP qn\S+: io_uring_setup failed: ENOSYS \(io_uring is off here: kernel.io_uring_disabled or a seccomp profile; use io: 'auto' or 'plain'\)$/);
});
