// deploy/qnicd.service as systemd reads it, and the sd_notify protocol as systemd receives it: the
// unit passes `systemd-analyze verify` (Debian's systemd package, installed when missing), and the
// daemon sends READY=1 once serving and STOPPING=1 when a stop begins, to $NOTIFY_SOCKET.
import { afterEach, beforeAll, expect, test } from "bun:test";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebPackages } from "../support/apt.ts";
import { startSimHost, type SimHost } from "../backend/sim-host.ts";

const UNIT = join(import.meta.dir, "..", "..", "deploy", "qnicd.service");
const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");

beforeAll(() => {
  if (!Bun.which("systemd-analyze")) ensureDebPackages(["systemd"]);
});

test("deploy/qnicd.service passes systemd-analyze verify and is what a restart needs (notify, restart on failure, a runtime directory kept across restarts)", () => {
  const unit = readFileSync(UNIT, "utf8");
  for (const line of ["Type=notify", "Restart=on-failure", "RuntimeDirectory=qnicd", "RuntimeDirectoryPreserve=yes", "ExecStart=/usr/local/bin/qnicd --platform xen"]) {
    expect(unit.split("\n")).toContain(line);
  }
  // verify checks that ExecStart's program exists; this machine has no installed qnicd, so the copy
  // names an executable that does exist and is otherwise the file as shipped.
  const dir = mkdtempSync(join(tmpdir(), "qnicd-unit-"));
  try {
    const copy = join(dir, "qnicd.service");
    writeFileSync(copy, unit.replace("ExecStart=/usr/local/bin/qnicd", `ExecStart=${realpathSync(process.execPath)}`));
    const r = Bun.spawnSync(["systemd-analyze", "verify", copy], { stdout: "pipe", stderr: "pipe" });
    const out = `${r.stdout.toString()}${r.stderr.toString()}`;
    console.log(`systemd-analyze verify deploy/qnicd.service: exit ${r.exitCode}${out.trim() ? `: ${out.trim()}` : ", no output"}`);
    expect(out.trim()).toBe("");
    expect(r.exitCode).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A datagram socket of our own in the role of systemd's notify socket (Bun has no AF_UNIX datagrams).
const libc = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
}).symbols;
const MSG_DONTWAIT = 0x40;

function bindDgram(path: string): number {
  const fd = libc.socket(1, 2, 0);
  expect(fd).toBeGreaterThanOrEqual(0);
  const addr = Buffer.alloc(2 + 108);
  addr.writeUInt16LE(1, 0);
  addr.write(path, 2);
  expect(libc.bind(fd, ptr(addr), 2 + Buffer.byteLength(path) + 1)).toBe(0);
  return fd;
}

/** Waits for the next datagram (polling: the test process must keep its event loop free). */
async function nextDatagram(fd: number, timeoutMs: number): Promise<string> {
  const buf = Buffer.alloc(4096);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = Number(libc.recv(fd, ptr(buf), buf.length, MSG_DONTWAIT));
    if (n >= 0) return buf.subarray(0, n).toString();
    if (Date.now() > deadline) throw new Error(`no notify datagram within ${timeoutMs} ms`);
    await Bun.sleep(10);
  }
}

let host: SimHost | undefined;
let dir: string | undefined;
afterEach(async () => {
  await host?.close();
  host = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the daemon says READY=1 to $NOTIFY_SOCKET once serving, and STOPPING=1 when SIGTERM begins its stop", async () => {
  host = await startSimHost();
  dir = mkdtempSync(join(tmpdir(), "qnicd-notify-"));
  const sock = join(dir, "notify");
  const fd = bindDgram(sock);
  try {
    const p = Bun.spawn([process.execPath, MAIN, "--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], {
      env: { ...process.env, NOTIFY_SOCKET: sock },
      stdout: "ignore",
      stderr: "pipe",
    });
    const ready = await nextDatagram(fd, 20_000);
    expect(ready.split("\n")[0]).toBe("READY=1");
    expect(ready).toContain("STATUS=serving /local/domain/0/backend/vif");
    p.kill("SIGTERM");
    expect(await nextDatagram(fd, 10_000)).toBe("STOPPING=1");
    expect(await p.exited).toBe(0);
    console.log(`notify: received ${JSON.stringify(ready)} then "STOPPING=1"`);
  } finally {
    libc.close(fd);
  }
}, 60_000);
