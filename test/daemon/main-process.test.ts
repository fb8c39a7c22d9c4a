// `qnicd` (src/main.ts) as a process: exit codes, one-line errors, and a clean stop on SIGTERM/SIGINT.
import { afterEach, expect, test } from "bun:test";
import { spawn, type Subprocess } from "bun";
import { resolve } from "node:path";
import { ECS_UNBOUND } from "../../src/sim/hypervisor/index.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { FakeFrontend } from "../pool/fake-frontend.ts";
import { ScriptedFrontend } from "../backend/scripted-frontend.ts";
import { startSimHost, type SimHost } from "../backend/sim-host.ts";

const MAIN = resolve(import.meta.dir, "../../src/main.ts");
let host: SimHost | undefined;
let proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
const guests: FakeFrontend[] = [];
afterEach(async () => {
  for (const g of guests.splice(0)) g.close();
  if (proc && proc.exitCode === null) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
  proc = undefined;
  await host?.close();
  host = undefined;
});

function run(args: string[]) {
  proc = spawn([process.execPath, MAIN, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
  return proc;
}
const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();

test("--help prints the settings and exits 0", async () => {
  const p = run(["--help"]);
  expect(await p.exited).toBe(0);
  const out = await text(p.stdout);
  expect(out).toContain("--backend-type");
  expect(out).toContain("--peer");
});

test("a bad setting: one line on stderr, exit 2", async () => {
  const p = run(["--workers", "zero"]);
  expect(await p.exited).toBe(2);
  const err = await text(p.stderr);
  expect(err).toBe(`qnicd: --workers: "zero" is not valid: expected an integer from 1 to 256\n`);
});

test("xenstored not running: one line naming the socket and the command that starts it, exit 1", async () => {
  host = await startSimHost();
  await host.stopXenstored();
  const p = run(["--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0"]);
  expect(await p.exited).toBe(1);
  const err = await text(p.stderr);
  expect(err).toBe(`qnicd: cannot reach xenstored at ${host.dir}/xenstored/socket: ENOENT: start it with 'npm run sim -- up --dir ${host.dir}'\n`);
  await host.startXenstored();
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} with --on-exit close: the connected vif is closed, the process exits 0`, async () => {
    host = await startSimHost({ initTimeoutMs: 10_000 });
    const p = run(["--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1", "--on-exit", "close"]);
    // No waiting for the daemon: libxl's 10 s wait for InitWait covers its startup, as on a host.
    const d = await host.ts.create("alice", { vifs: 1 });
    const rings = new FakeFrontend(host.dir, d.domid);
    guests.push(rings);
    const f = new ScriptedFrontend(await host.guestClient(d.domid), d.domid, 0);
    await f.connect({ txRingRef: String(rings.txRef), rxRingRef: String(rings.rxRef), evtchn: String(rings.txPort) });
    await f.waitBackend(S.Connected);
    expect(rings.mapped(rings.txRef)).toBe(true);
    p.kill(signal);
    expect(await p.exited).toBe(0);
    expect(await f.backendState()).toBe(S.Closed);
    expect(rings.mapped(rings.txRef)).toBe(false);
    expect(rings.portState(rings.txPort)).toBe(ECS_UNBOUND);
    const err = await text(p.stderr);
    expect(err).toContain("stopped: every vif closed, nothing left mapped or running");
    expect(err.split("\n").filter((l) => l && !/^\S+Z (debug|info |warn |error) /.test(l))).toEqual([]);
  }, 30_000);
}
