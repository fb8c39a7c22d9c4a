// qnicd as a systemd service: with stderr connected to the journal, systemd sets $JOURNAL_STREAM to
// that stream's device:inode, and every line qnicd logs starts with its syslog priority and has no
// timestamp (journald stamps it). Here the "journal" is a file whose device:inode the test passes
// the same way; a $JOURNAL_STREAM naming another stream (inherited) leaves the lines as they were.
import { afterEach, expect, test } from "bun:test";
import { spawn } from "bun";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startSimHost, until, type SimHost } from "../backend/sim-host.ts";

const MAIN = resolve(import.meta.dir, "../../src/main.ts");
let host: SimHost | undefined;
let dir: string | undefined;
afterEach(async () => {
  await host?.close();
  host = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Runs the daemon until it serves, then SIGTERM: its stderr, written to a file. */
async function daemonStderr(h: SimHost, journalStream: (st: { dev: bigint; ino: bigint }) => string): Promise<string[]> {
  const path = join(dir!, `stderr-${Date.now()}`);
  const fd = openSync(path, "w");
  const st = fstatSync(fd, { bigint: true });
  const p = spawn([process.execPath, MAIN, "--platform", "sim", "--sim-dir", h.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: fd,
    env: { PATH: process.env.PATH ?? "", JOURNAL_STREAM: journalStream(st) },
  });
  closeSync(fd);
  try {
    await until("the daemon serving", () => readFileSync(path, "utf8").includes("serving "), 15_000);
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
  return readFileSync(path, "utf8").split("\n").filter((l) => l !== "");
}

test("stderr is the journal: every line carries its priority and no timestamp", async () => {
  host = await startSimHost();
  dir = mkdtempSync(join(tmpdir(), "qnicd-journald-"));
  const lines = await daemonStderr(host, (st) => `${st.dev}:${st.ino}`);
  expect(lines.find((l) => l.includes("serving "))).toMatch(/^<6>serving \/local\/domain\/0\/backend\/vif /);
  expect(lines.find((l) => l.includes("stopped"))).toMatch(/^<6>stopped (for a restart:|: )/);
  expect(lines.filter((l) => !/^<[3467]>\S/.test(l))).toEqual([]);
  expect(lines.filter((l) => /\d{4}-\d\d-\d\dT\d\d:\d\d/.test(l))).toEqual([]);

  // Inherited from a parent whose stderr was the journal, while ours is not: plain lines.
  const plain = await daemonStderr(host, (st) => `${st.dev}:${st.ino + 1n}`);
  expect(plain.find((l) => l.includes("serving "))).toMatch(/^\S+Z info  serving /);
  expect(plain.filter((l) => l.startsWith("<"))).toEqual([]);
}, 60_000);
