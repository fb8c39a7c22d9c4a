// The daemon as its own process against a simulated host, and the guest lifecycle loop that
// test/daemon/lifecycle.test.ts asserts on and bench/lifecycle.ts measures: `xl create` of a guest
// with one vif, a real netfront (src/sim/netfront), both sides Connected, then a libxl-style destroy
// (the guest dies first, then the toolstack removes the device and the domain).
//
// The rig's process is the toolstack and the guests; xenstored and the daemon are processes of
// their own (as on a host), so /proc/<daemon pid> shows only what the daemon holds.
import { spawn, type Subprocess } from "bun";
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SimEventChannelDevice, ECS_FREE } from "../../src/sim/hypervisor/index.ts";
import { createNetfront, type Netfront } from "../../src/sim/netfront/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { startHost, stopHost } from "../../src/sim/toolstack/host.ts";
import { simHypervisor } from "../../src/sim/toolstack/hypervisor.ts";
import { libxlLogTo } from "../../src/sim/toolstack/libxl-log.ts";
import { Toolstack } from "../../src/sim/toolstack/toolstack.ts";
import { XenstoreClient } from "../../src/xenstore/index.ts";

const MAIN = resolve(import.meta.dir, "../../src/main.ts");
const CONNECTED = "4";
/** simxen.h SX_NR_PORTS: ports 1..1023 per domain. */
const NR_PORTS = 1024;

export interface RigOptions {
  workers?: number;
  /** Extra daemon options (after the rig's own). */
  daemonArgs?: string[];
  /** Options for Bun itself, before the daemon's script (e.g. --cpu-prof-md, --cpu-prof-dir DIR). */
  runtimeArgs?: string[];
}

export interface Rig {
  readonly dir: string;
  readonly shmDir: string;
  readonly pid: number;
  /** The status API, e.g. http://127.0.0.1:40123. */
  readonly url: string;
  readonly ts: Toolstack;
  readonly xs: XenstoreClient;
  /** Every libxl line the toolstack logged. */
  readonly libxlLog: string[];
  /** The daemon's stderr so far, one entry per line. */
  readonly daemonLog: string[];
  /** SIGTERM, wait for exit, stop the host: the daemon's exit code and what the host teardown found left. Idempotent. */
  close(): Promise<{ exitCode: number | null; hostWarnings: string[] }>;
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/** Starts xenstored and the hypervisor in a fresh run directory, then the daemon on it. */
export async function startRig(opts: RigOptions = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), "qnicd-lifecycle-"));
  await startHost(dir);
  const p = simPaths(dir);
  const xs = await XenstoreClient.connect({ path: p.xenstoredSocket, reconnect: { enabled: false } });
  const libxlLog: string[] = [];
  const ts = new Toolstack({ xs, hv: simHypervisor(dir), log: libxlLogTo((l) => libxlLog.push(l)) });

  const args = ["--platform", "sim", "--sim-dir", dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", String(opts.workers ?? 2), "--on-exit", "close", ...(opts.daemonArgs ?? [])];
  const proc: Subprocess<"ignore", "ignore", "pipe"> = spawn([process.execPath, ...(opts.runtimeArgs ?? []), MAIN, ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
  const daemonLog: string[] = [];
  // The port is only known once the daemon has bound it: its "serving" line names the URL.
  const url = await new Promise<string>((res, rej) => {
    let found = false;
    void (async () => {
      for await (const l of lines(proc.stderr)) {
        daemonLog.push(l);
        const m = !found && / serving .*http=(http:\/\/\S+)/.exec(l);
        if (m) {
          found = true;
          res(m[1]!);
        }
      }
      if (!found) rej(new Error(`the daemon exited before serving: ${daemonLog.join(" | ") || "(no output)"}`));
    })();
  }).catch(async (e) => {
    xs.close();
    await stopHost(dir);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });

  let closing: Promise<{ exitCode: number | null; hostWarnings: string[] }> | undefined;
  return {
    dir,
    shmDir: p.shmDir,
    pid: proc.pid,
    url,
    ts,
    xs,
    libxlLog,
    daemonLog,
    close: () =>
      (closing ??= (async () => {
        if (proc.exitCode === null) proc.kill("SIGTERM");
        const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        const exitCode = await proc.exited;
        clearTimeout(killer);
        xs.close();
        const report = await stopHost(dir);
        rmSync(dir, { recursive: true, force: true });
        return { exitCode, hostWarnings: report.warnings };
      })()),
  };
}

export interface ProcSnapshot {
  fds: number;
  threads: number;
  /** Threads named "Worker": Bun Worker threads, i.e. the daemon's pool (the runtime's own JIT and GC threads come and go). */
  workerThreads: number;
  rssKiB: number;
  /** /proc/<pid>/maps lines naming a guest domain's file (dom<N>.ram / dom<N>.gnttab, N > 0). */
  guestMappings: string[];
  /** What each fd points at, for a diagnosis when the counts differ. */
  fdTargets: string[];
}

export function procSnapshot(pid: number, shmDir: string): ProcSnapshot {
  const fdDir = `/proc/${pid}/fd`;
  const fdTargets: string[] = [];
  for (const fd of readdirSync(fdDir)) {
    try {
      fdTargets.push(readlinkSync(`${fdDir}/${fd}`));
    } catch {
      // closed between readdir and readlink
    }
  }
  const guestFile = new RegExp(`${shmDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/dom([1-9]\\d*)\\.`);
  const guestMappings = readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .filter((l) => guestFile.test(l));
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  const names: string[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      names.push(readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim());
    } catch {
      // the thread exited meanwhile
    }
  }
  return {
    fds: fdTargets.length,
    threads: names.length,
    workerThreads: names.filter((n) => n === "Worker").length,
    rssKiB: rss ? Number(rss[1]) : NaN,
    guestMappings,
    fdTargets,
  };
}

/** dom0's ports that are not free: the backend's bound (or half-closed) event channels. */
export function dom0PortsInUse(dir: string): { port: number; state: number; remoteDomid: number }[] {
  const dev = new SimEventChannelDevice(dir, 0);
  try {
    const used: { port: number; state: number; remoteDomid: number }[] = [];
    for (let port = 1; port < NR_PORTS; port++) {
      const s = dev.portState(port);
      if (s.state !== ECS_FREE) used.push({ port, state: s.state, remoteDomid: s.remoteDomid });
    }
    return used;
  } finally {
    dev.close();
  }
}

/** Resolves with performance.now() once every node reads `value`, driven by xenstore watches. */
async function whenAll(xs: XenstoreClient, paths: string[], value: string, timeoutMs: number): Promise<{ at: number; stop(): Promise<void> }> {
  let done = false;
  let check: () => void = () => {};
  const reached = new Promise<number>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`timed out after ${timeoutMs} ms waiting for ${paths.join(" and ")} to read ${value}`)), timeoutMs);
    let inFlight = false;
    let again = false;
    // A watch fires once on registration and on every write; one read round at a time, re-run
    // if another event came meanwhile, so the last write is never missed.
    check = () => {
      if (done) return;
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      void Promise.all(paths.map((p) => xs.tryRead(p))).then(
        (vals) => {
          inFlight = false;
          if (vals.every((v) => v === value)) {
            done = true;
            clearTimeout(timer);
            res(performance.now());
          } else if (again) {
            again = false;
            check();
          }
        },
        (e) => {
          clearTimeout(timer);
          rej(e);
        },
      );
    };
  });
  const watches = await Promise.all(paths.map((p) => xs.watch(p, () => check())));
  const stop = () => Promise.all(watches.map((w) => w.unwatch())).then(() => {});
  try {
    return { at: await reached, stop };
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
}

async function waitUntil(what: string, f: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

async function vifNames(rig: Rig): Promise<string[]> {
  // No keep-alive: a pooled connection would be a daemon fd that comes and goes with our timing.
  const r = await fetch(`${rig.url}/vifs`, { headers: { connection: "close" }, keepalive: false });
  if (!r.ok) throw new Error(`GET /vifs: HTTP ${r.status}`);
  const body = (await r.json()) as { vifs?: { name: string }[] } | { name: string }[];
  const list = Array.isArray(body) ? body : (body.vifs ?? []);
  return list.map((v) => v.name);
}

export interface CycleResult {
  domid: number;
  /** From the start of the create call to both state nodes reading 4 (ms). */
  connectMs: number;
  /** From the start of the destroy call to /vifs no longer listing the vif (ms). */
  destroyMs: number;
}

/** One guest: create, both Connected, destroy the libxl way, forgotten by the daemon. */
export async function cycle(rig: Rig, name: string, opts: { timeoutMs?: number; whileConnected?: (domid: number, nf: Netfront) => void | Promise<void> } = {}): Promise<CycleResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const t0 = performance.now();
  const d = await rig.ts.create(name, { vifs: 1 });
  const be = `/local/domain/0/backend/vif/${d.domid}/0/state`;
  const fe = `/local/domain/${d.domid}/device/vif/0/state`;
  // Watching from here cannot miss Connected: the frontend only starts below.
  const watching = whenAll(rig.xs, [be, fe], CONNECTED, timeoutMs);
  const nf = await createNetfront({ dir: rig.dir, domid: d.domid, devid: 0 });
  let connected: Awaited<typeof watching>;
  try {
    connected = await watching;
  } catch (e) {
    await nf.close();
    throw e;
  }
  await connected.stop();
  const vif = `vif${d.domid}.0`;
  if (!(await vifNames(rig)).includes(vif)) throw new Error(`${vif} is Connected in xenstore but not listed by /vifs`);
  await opts.whileConnected?.(d.domid, nf);

  // As 'xl destroy' of a running guest: the guest stops first, then libxl removes the device.
  const t1 = performance.now();
  await nf.close();
  await rig.ts.destroy(String(d.domid));
  await waitUntil(`${vif} to leave /vifs`, async () => !(await vifNames(rig)).includes(vif), timeoutMs);
  return { domid: d.domid, connectMs: connected.at - t0, destroyMs: performance.now() - t1 };
}

export interface LoopResult {
  /** Taken while the first counted guest was Connected: shows the probes see what a guest holds. */
  connected: ProcSnapshot & { ports: number };
  warm: ProcSnapshot;
  after: ProcSnapshot;
  cycles: CycleResult[];
  /** dom0 ports in use after warm-up and after the loop. */
  portsWarm: number;
  portsAfter: { port: number; state: number; remoteDomid: number }[];
}

/**
 * Cycles before the "before" snapshot. Ten, not one: the daemon's heap and JIT are still growing
 * towards their working set over the first few guests (RSS measured +10 MB from cycle 2 to 25).
 */
export const DEFAULT_WARMUP = 10;

/**
 * `warmup` cycles (not counted: first-use costs such as worker code paths compiling), a snapshot,
 * then `cycles` cycles and a snapshot. `onCycle` sees each counted cycle (progress lines);
 * `eachConnected` runs in every cycle (warm-up included) while its guest is Connected (traffic).
 */
export async function lifecycleLoop(
  rig: Rig,
  opts: { cycles: number; warmup?: number; onCycle?: (i: number, r: CycleResult) => void; eachConnected?: (domid: number, nf: Netfront) => void | Promise<void> },
): Promise<LoopResult> {
  for (let i = 0; i < (opts.warmup ?? DEFAULT_WARMUP); i++) await cycle(rig, `warm${i}`, { whileConnected: opts.eachConnected });
  // Settle: the daemon's last teardown log lines and HTTP keep-alive sockets are asynchronous.
  await Bun.sleep(200);
  const warm = procSnapshot(rig.pid, rig.shmDir);
  const portsWarm = dom0PortsInUse(rig.dir).length;
  const cycles: CycleResult[] = [];
  let connected: LoopResult["connected"] | undefined;
  const probe = () => {
    connected = { ...procSnapshot(rig.pid, rig.shmDir), ports: dom0PortsInUse(rig.dir).length };
  };
  for (let i = 0; i < opts.cycles; i++) {
    const r = await cycle(rig, `guest${i}`, {
      whileConnected: async (domid, nf) => {
        await opts.eachConnected?.(domid, nf);
        if (i === 0) probe();
      },
    });
    cycles.push(r);
    opts.onCycle?.(i, r);
  }
  await Bun.sleep(200);
  if (!connected) throw new Error("lifecycleLoop: cycles must be at least 1");
  return { connected, warm, after: procSnapshot(rig.pid, rig.shmDir), cycles, portsWarm, portsAfter: dom0PortsInUse(rig.dir) };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Multiset difference a - b of fd targets, for a one-line diagnosis of leaked fds. */
export function fdDiff(a: string[], b: string[]): string[] {
  const left = new Map<string, number>();
  for (const t of b) left.set(t, (left.get(t) ?? 0) + 1);
  const out: string[] = [];
  for (const t of a) {
    const n = left.get(t) ?? 0;
    if (n > 0) left.set(t, n - 1);
    else out.push(t);
  }
  return out;
}
