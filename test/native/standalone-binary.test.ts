// `npm run build`'s single executable on a host like a Xen host: run from a directory with no
// checkout, with a PATH where node, bun, npm and gcc are traps that record being called, it starts
// on the sim, its worker thread carries two guests' pings through the switch, /vifs answers, and its
// native libraries leave nothing in TMPDIR. Prints the binary's size and its start-up time.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { spawn, type Subprocess } from "bun";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createNetfront, type Netfront } from "../../src/sim/netfront/index.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startSimHost, type SimHost } from "../backend/sim-host.ts";
import { echoAcross } from "../support/guest-echo.ts";

const ROOT = resolve(import.meta.dir, "../..");
let work: string;
let bin: string;
let host: SimHost | undefined;
let proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
const fronts: Netfront[] = [];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "qnicd-binary-"));
  bin = join(work, "bin", "qnicd");
  const r = spawnSync("npm", ["run", "build", "--", "--out", bin], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`npm run build failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  // Programs a Xen host does not have: each one records its call, so using one fails the test.
  const trap = join(work, "trap");
  mkdirSync(trap);
  for (const prog of ["node", "bun", "npm", "npx", "gcc", "cc", "tcc"]) {
    writeFileSync(join(trap, prog), `#!/bin/sh\necho "${prog} $*" >> ${join(work, "trap.log")}\nexit 127\n`);
    chmodSync(join(trap, prog), 0o755);
  }
  mkdirSync(join(work, "run"));
  mkdirSync(join(work, "tmp"));
}, 120_000);

afterEach(async () => {
  for (const f of fronts.splice(0)) await f.close();
  if (proc && proc.exitCode === null) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
  proc = undefined;
  await host?.close();
  host = undefined;
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Collects stderr lines; resolves `serving` with the status API's URL once the daemon is up. */
function watchLog(stream: ReadableStream<Uint8Array>) {
  const lines: string[] = [];
  let onServing!: (url: string) => void;
  const serving = new Promise<string>((r) => (onServing = r));
  void (async () => {
    let buf = "";
    for await (const chunk of stream) {
      buf += new TextDecoder().decode(chunk);
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        const m = / serving .* http=(\S+)/.exec(line);
        if (m) onServing(m[1]!);
      }
    }
  })();
  return { lines, serving };
}

test("the binary serves two sim guests with no node, gcc or checkout, and leaves nothing in TMPDIR", async () => {
  host = await startSimHost();
  const size = statSync(bin).size;
  const t0 = performance.now();
  proc = spawn([bin, "--platform", "sim", "--sim-dir", host.dir, "--peer", "switch", "--http", "127.0.0.1:0", "--workers", "1"], {
    cwd: join(work, "run"),
    env: { PATH: join(work, "trap"), TMPDIR: join(work, "tmp"), HOME: join(work, "run") },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const log = watchLog(proc.stderr);
  const url = await Promise.race([log.serving, proc.exited.then((c) => Promise.reject(new Error(`qnicd exited ${c}:\n${log.lines.join("\n")}`)))]);
  const health = await fetch(`${url}/health`);
  const startupMs = performance.now() - t0;
  expect(health.status).toBe(200);
  console.log(`qnicd binary: ${size} bytes (${(size / 2 ** 20).toFixed(1)} MiB); start-up to /health answering: ${startupMs.toFixed(0)} ms`);

  const guests = [];
  for (const [name, ip] of [["alice", "10.9.0.1"], ["bob", "10.9.0.2"]] as const) {
    const d = await host.ts.create(name, { vifs: 1 });
    const nf = await createNetfront({ dir: host.dir, domid: d.domid, devid: 0, ip, resetWaitMs: 2000, probeWaitMs: 2000 });
    fronts.push(nf);
    guests.push({ nf, ip, mac: (await nf.whenConnected(10_000)).mac, domid: d.domid });
  }
  const [a, b] = guests as [(typeof guests)[0], (typeof guests)[0]];
  expect(await echoAcross(a, b, 5)).toBe(5);

  const vifs = (await (await fetch(`${url}/vifs`)).json()) as {
    vifs: { name: string; backendState: { number: number }; worker: number | null; counters: Record<string, number> | null }[];
  };
  expect(vifs.vifs.map((v) => [v.name, v.backendState.number, v.worker]).sort()).toEqual([
    [`vif${a.domid}.0`, S.Connected, 0],
    [`vif${b.domid}.0`, S.Connected, 0],
  ]);
  expect(vifs.vifs.find((v) => v.name === `vif${a.domid}.0`)!.counters!.tx_packets).toBeGreaterThanOrEqual(5);
  // The libraries were extracted, loaded and removed before the daemon served anything.
  expect(readdirSync(join(work, "tmp"))).toEqual([]);

  proc.kill("SIGTERM");
  expect(await proc.exited).toBe(0);
  expect(existsSync(join(work, "trap.log")) ? readFileSync(join(work, "trap.log"), "utf8") : "").toBe("");
  expect(readdirSync(join(work, "tmp"))).toEqual([]);
  expect(log.lines.filter((l) => / (warn |error) /.test(l))).toEqual([]);
}, 90_000);

test("a TMPDIR the binary cannot write: one line naming the directory, exit 1", async () => {
  host = await startSimHost();
  proc = spawn([bin, "--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], {
    cwd: join(work, "run"),
    env: { PATH: join(work, "trap"), TMPDIR: join(work, "no-such-dir") },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(await proc.exited).toBe(1);
  const err = await new Response(proc.stderr).text();
  expect(err.trim().split("\n")).toHaveLength(1);
  expect(err).toContain(join(work, "no-such-dir"));
}, 30_000);

function canMountTmpfs(): boolean {
  return process.getuid?.() === 0 && spawnSync("mount", ["--version"]).status === 0;
}

test.skipIf(!canMountTmpfs())("a noexec TMPDIR: one line saying the libraries cannot be mapped there and what to do, exit 1, nothing left", async () => {
  const noexec = join(work, "noexec");
  mkdirSync(noexec);
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", "noexec,size=16m", "tmpfs", noexec], { encoding: "utf8" });
  if (m.status !== 0) throw new Error(`mount failed: ${m.stderr}`);
  try {
    host = await startSimHost();
    proc = spawn([bin, "--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], {
      cwd: join(work, "run"),
      env: { PATH: join(work, "trap"), TMPDIR: noexec },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await proc.exited).toBe(1);
    const err = (await new Response(proc.stderr).text()).trim();
    expect(err.split("\n")).toHaveLength(1);
    expect(err).toMatch(/^qnicd: cannot load the native library lib\w+\.so extracted to .*failed to map segment.*: if that filesystem is mounted noexec, point TMPDIR at one that allows executables$/);
    expect(readdirSync(noexec)).toEqual([]);
  } finally {
    spawnSync("umount", [noexec]);
  }
}, 30_000);
