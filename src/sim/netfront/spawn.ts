// Starting and stopping netfront guest processes the way the sim toolstack would: detached, stdin
// closed, stdout (JSON events) and stderr (driver messages) into files under simPaths(dir).guestsDir,
// and a pid file per vif so a later command can stop it. Only a process whose command line is this
// netfront on this run directory is ever signalled (pids get recycled).
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { simPaths } from "../paths.ts";

const MAIN = join(import.meta.dir, "main.ts");

export interface GuestFiles {
  pidFile: string;
  /** stdout: the JSON event lines (see main.ts PROTOCOL). */
  eventsFile: string;
  /** stderr: Linux-style driver messages. */
  logFile: string;
}

export function netfrontGuestFiles(dir: string, domid: number, devid: number): GuestFiles {
  const base = join(simPaths(dir).guestsDir, `netfront-${domid}.${devid}`);
  return { pidFile: `${base}.pid`, eventsFile: `${base}.events`, logFile: `${base}.log` };
}

export interface StartGuestOptions {
  ip?: string;
  resetOn?: string;
  script?: string;
  resetWaitMs?: number;
  quietRx?: boolean;
  /** The guest's vCPUs: its netfront asks for up to min(8, vcpus) queues. Default 1. */
  vcpus?: number;
  /** xen_netfront.max_queues. */
  maxQueues?: number;
}

/** Starts the netfront of vif `devid` of `domid` as a detached process; returns its pid. */
export function startNetfrontGuest(dir: string, domid: number, devid: number, opts: StartGuestOptions = {}): number {
  const p = simPaths(dir);
  const files = netfrontGuestFiles(dir, domid, devid);
  mkdirSync(p.guestsDir, { recursive: true });
  const running = runningNetfrontGuest(dir, domid, devid);
  if (running !== undefined) throw new Error(`netfront for vif ${domid}.${devid} already runs (pid ${running}); stop it first`);
  const args = [MAIN, "--dir", p.dir, "--domid", String(domid), "--devid", String(devid), "--reset-on", opts.resetOn ?? "SIGUSR1"];
  if (opts.ip) args.push("--ip", opts.ip);
  if (opts.script) args.push("--script", opts.script);
  if (opts.resetWaitMs !== undefined) args.push("--reset-wait-ms", String(opts.resetWaitMs));
  if (opts.quietRx ?? true) args.push("--quiet-rx");
  if (opts.vcpus !== undefined) args.push("--vcpus", String(opts.vcpus));
  if (opts.maxQueues !== undefined) args.push("--max-queues", String(opts.maxQueues));
  const out = openSync(files.eventsFile, "a");
  const err = openSync(files.logFile, "a");
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", out, err] });
  closeSync(out);
  closeSync(err);
  child.unref();
  writeFileSync(files.pidFile, `${child.pid}\n`);
  return child.pid!;
}

/** The pid of the running netfront for this vif, if its pid file names a live one of ours. */
export function runningNetfrontGuest(dir: string, domid: number, devid: number): number | undefined {
  const files = netfrontGuestFiles(dir, domid, devid);
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(files.pidFile, "utf8"), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (stat[stat.lastIndexOf(")") + 2] === "Z") return undefined;
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (!cmd.some((a) => a.endsWith("netfront/main.ts")) || !cmd.includes(simPaths(dir).dir)) return undefined;
    const i = cmd.indexOf("--domid");
    const j = cmd.indexOf("--devid");
    if (cmd[i + 1] !== String(domid) || cmd[j + 1] !== String(devid)) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

export interface StopGuestOptions {
  /** SIGTERM lets the driver close; SIGKILL is a destroyed domain, gone without a word. */
  signal?: "SIGTERM" | "SIGKILL";
  timeoutMs?: number;
}

/** Signals this vif's netfront (SIGKILL after `timeoutMs` if still alive); removes its pid file. */
export async function stopNetfrontGuest(dir: string, domid: number, devid: number, opts: StopGuestOptions = {}): Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const files = netfrontGuestFiles(dir, domid, devid);
  const pid = runningNetfrontGuest(dir, domid, devid);
  rmSync(files.pidFile, { force: true });
  if (pid === undefined) return false;
  process.kill(pid, opts.signal ?? "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await Bun.sleep(10);
  if (alive(pid)) process.kill(pid, "SIGKILL");
  return true;
}

/** Stops every netfront of `domid` (all vifs) that has a pid file. */
export async function stopNetfrontGuests(dir: string, domid: number, opts: StopGuestOptions = {}): Promise<number> {
  const gd = simPaths(dir).guestsDir;
  if (!existsSync(gd)) return 0;
  let n = 0;
  for (const f of readdirSync(gd)) {
    const m = /^netfront-(\d+)\.(\d+)\.pid$/.exec(f);
    if (m && Number(m[1]) === domid && (await stopNetfrontGuest(dir, domid, Number(m[2]), opts))) n++;
  }
  return n;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}
