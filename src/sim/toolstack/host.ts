// Bringing the simulated host up and down, as a Xen host's boot scripts do: the hypervisor, a
// xenstored daemon (xencommons), dom0's own nodes (xen-init-dom0); and back down: guests
// destroyed, xenstored stopped, hypervisor state removed, nothing left running or mapped.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { simPaths } from "../paths.ts";
import * as hvmod from "../hypervisor/index.ts";
import { XenstoreClient } from "../../xenstore/index.ts";
import { simHypervisor } from "./hypervisor.ts";
import type { LibxlLog } from "./libxl-log.ts";
import { netfrontGuests } from "./guests.ts";
import { Toolstack } from "./toolstack.ts";

const XENSTORED_MAIN = join(import.meta.dir, "..", "xenstored", "main.ts");

export interface HostStatus {
  dir: string;
  socketPath: string;
  pid: number;
  /** true when `up` found the host already running and left it alone. */
  alreadyRunning: boolean;
}

export class HostError extends Error {
  override name = "HostError";
}

/** The xenstored pid from the pid file, if that process is alive and really our xenstored. */
export function runningXenstored(dir: string): number | undefined {
  const p = simPaths(dir);
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(p.xenstoredPidFile, "utf8"), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    // Guard against a recycled pid: only ever signal a process running our xenstored on this dir.
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (!cmd.some((a) => a.endsWith("xenstored/main.ts")) || !cmd.includes(p.dir)) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

async function answers(socketPath: string): Promise<boolean> {
  try {
    const xs = await XenstoreClient.connect({ path: socketPath, reconnect: { enabled: false } });
    try {
      await xs.getDomainPath(0);
      return true;
    } finally {
      xs.close();
    }
  } catch {
    return false;
  }
}

function logTail(path: string, lines = 5): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Starts the host in `dir` (idempotent: an already running host is left as it is). */
export async function startHost(dir: string, opts: { timeoutMs?: number } = {}): Promise<HostStatus> {
  const p = simPaths(dir);
  const running = runningXenstored(dir);
  if (running !== undefined && (await answers(p.xenstoredSocket))) {
    return { dir: p.dir, socketPath: p.xenstoredSocket, pid: running, alreadyRunning: true };
  }
  if (running !== undefined) throw new HostError(`xenstored (pid ${running}) is running in ${p.dir} but does not answer on ${p.xenstoredSocket}; run 'down' first`);

  mkdirSync(dirname(p.xenstoredLog), { recursive: true });
  const hvWasUp = hvmod.hypervisorInitialised(dir);
  hvmod.initHypervisor(dir);
  const logFd = openSync(p.xenstoredLog, "a");
  let exited: string | undefined;
  const child = spawn(process.execPath, [XENSTORED_MAIN, "--dir", p.dir], {
    detached: true,
    stdio: ["ignore", logFd, logFd],
    cwd: dirname(XENSTORED_MAIN),
  });
  closeSync(logFd);
  child.once("exit", (code, signal) => (exited = signal ? `killed by ${signal}` : `exited with status ${code}`));
  child.unref();

  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  while (!(existsSync(p.xenstoredPidFile) && (await answers(p.xenstoredSocket)))) {
    if (exited || Date.now() > deadline) {
      if (!exited) child.kill("SIGKILL");
      if (!hvWasUp) hvmod.teardownHypervisor(dir);
      throw new HostError(
        `xenstored ${exited ?? "did not answer in time"} (log ${p.xenstoredLog}):\n${logTail(p.xenstoredLog)}`,
      );
    }
    await Bun.sleep(20);
  }

  // xen-init-dom0: dom0's name and domid, which `xl list` and backends read.
  const xs = await XenstoreClient.connect({ path: p.xenstoredSocket, reconnect: { enabled: false } });
  try {
    await xs.write("/local/domain/0/domid", "0");
    await xs.write("/local/domain/0/name", "Domain-0");
  } finally {
    xs.close();
  }
  return { dir: p.dir, socketPath: p.xenstoredSocket, pid: child.pid!, alreadyRunning: false };
}

export interface StopReport {
  destroyed: string[];
  /** Problems that did not stop the teardown (each one line). */
  warnings: string[];
}

/**
 * Stops the host in `dir`: destroys every guest (libxl's way, but without waiting for backends that
 * never claimed a device), stops xenstored (SIGTERM, then SIGKILL after `stopTimeoutMs`), tears the
 * hypervisor down, and checks that nothing is left: no process, no socket, no /dev/shm files.
 */
export async function stopHost(dir: string, opts: { log?: LibxlLog; stopTimeoutMs?: number; destroyTimeoutMs?: number } = {}): Promise<StopReport> {
  const p = simPaths(dir);
  const report: StopReport = { destroyed: [], warnings: [] };
  const hvUp = hvmod.hypervisorInitialised(dir);

  if (hvUp && (await answers(p.xenstoredSocket))) {
    const xs = await XenstoreClient.connect({ path: p.xenstoredSocket, reconnect: { enabled: false } });
    try {
      const ts = new Toolstack({ xs, hv: simHypervisor(dir), log: opts.log, destroyTimeoutMs: opts.destroyTimeoutMs, guests: netfrontGuests(dir) });
      for (const d of await ts.list()) {
        if (d.domid === 0) continue;
        try {
          await ts.destroyDomid(d.domid, { noWait: true });
          report.destroyed.push(d.name === "(null)" ? `domain ${d.domid}` : d.name);
        } catch (e) {
          report.warnings.push(`destroying ${d.name} (${d.domid}): ${(e as Error).message}`);
        }
      }
    } finally {
      xs.close();
    }
  }

  const pid = runningXenstored(dir);
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + (opts.stopTimeoutMs ?? 5000);
    while (alive(pid) && Date.now() < deadline) await Bun.sleep(20);
    if (alive(pid)) {
      process.kill(pid, "SIGKILL");
      report.warnings.push(`xenstored (pid ${pid}) ignored SIGTERM for ${opts.stopTimeoutMs ?? 5000} ms; killed it`);
      while (alive(pid)) await Bun.sleep(10);
    }
  }
  // A fresh boot next time: the saved tree, the pid file and sockets of a killed daemon go too.
  for (const f of [p.xenstoredState, p.xenstoredPidFile, p.xenstoredSocket]) rmSync(f, { force: true });
  if (hvUp) hvmod.teardownHypervisor(dir);

  if (existsSync(p.shmDir)) report.warnings.push(`${p.shmDir} still exists`);
  if (existsSync(p.xenstoredSocket)) report.warnings.push(`${p.xenstoredSocket} still exists`);
  return report;
}

/** Running (a zombie counts as gone: its parent, maybe an init that never reaps, owns it now). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}
