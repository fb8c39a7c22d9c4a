// Host side of the real-Xen testbed: builds (or reuses) the cached images, builds the per-run disk,
// boots Xen + dom0 under QEMU TCG and reads dom0-run.sh's markers from the serial console until
// QNICD-DONE, a panic or the timeout. Used by test/xen/e2e.test.ts; also runnable by hand:
//   bun test/xen/harness/run.ts [--steps "baseline platform qnicd throughput"] [--mb 16] [--tput-mb 32]
// ("throughput" adds the netback-throughput and qnicd-throughput steps to baseline and qnicd; their
// figures are printed and written to bench/results/xen-throughput.json, which `bun run bench` shows.)
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { formatXenReport } from "../../../bench/lib/xen-report.ts";
import { ensureDebPackages } from "../../support/apt.ts";
import { recordXenReport } from "./throughput.ts";

const here = import.meta.dir;
const repo = join(here, "..", "..", "..");

// QEMU's plain 64-bit model plus what Bun's baseline build needs (SSE4.2, POPCNT: XEN-TESTBED.md).
// With -cpu max, Bun in dom0 crashed ("Trap instruction at address 0x0") around a vif's connect in
// 2 of 2 runs; with this model 0 of 2 (TCG's emulation of the newer extensions is the suspect).
const DEFAULT_CPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16";

/** MB per transfer of the throughput steps: large enough that kernel netback's transfers last about a second. */
export const TPUT_MB = 32;

export const HOST_PACKAGES = ["qemu-system-x86", "busybox-static", "debootstrap", "cpio", "e2fsprogs", "kmod", "xz-utils", "zstd", "gcc", "libc6-dev"];

export interface StepVerdict {
  status: "ok" | "fail" | "skip";
  detail: string;
}

export interface TestbedRun {
  /** The run reached QNICD-DONE. */
  completed: boolean;
  /** Why it stopped otherwise (panic, timeout, QEMU exit). */
  stopReason: string;
  steps: Map<string, StepVerdict>;
  /** QNICD-RESULT lines, without the prefix. */
  results: string[];
  /** Each "QNICD-XFER <label> start|end" mark and QEMU's CPU time when the host read it. */
  xferMarks: XferMark[];
  timings: { buildImagesS: number; runDiskS: number; bootToToolstackS?: number; qemuS: number; fromCache: boolean };
  lines: string[];
}

export interface XferMark {
  /** e.g. "qnicd down 2" (backend, direction, transfer). */
  label: string;
  phase: "start" | "end";
  /** CPU seconds QEMU had used (user + system, all its threads), 10 ms resolution. */
  qemuCpuS: number;
}

/** CPU seconds a process has used so far (/proc/PID/stat utime + stime, in USER_HZ = 100 ticks). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

export interface TestbedOptions {
  steps?: string;
  mb?: number;
  /** MB per transfer of the throughput steps (3 each way per backend). */
  tputMb?: number;
  timeoutS?: number;
  /** QEMU's TCG threading: "single" (one host thread for all vCPUs) or "multi" (MTTCG). */
  tcgThread?: "single" | "multi";
  /** QEMU -cpu model (default DEFAULT_CPU; QNICD_XEN_CPU overrides). */
  cpu?: string;
  /** vCPUs of the emulated machine (Xen's pCPUs). */
  smp?: number;
  log?: (line: string) => void;
}

function sh(cmd: string, args: string[], what: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: 1_800_000, env: { ...process.env, BUN_BIN: process.execPath } });
  if (r.status !== 0)
    throw new Error(`xen testbed: ${what} failed (exit ${r.status ?? r.signal}):\n${(r.stderr ?? "").split("\n").slice(-25).join("\n")}`);
  return r.stdout;
}

/** The last console lines of each source: Xen, dom0 and the guests, for failure reports. */
export function consoleTails(lines: string[], n = 25): string {
  const xen = lines.filter((l) => l.startsWith("(XEN)"));
  const guest = lines.filter((l) => /^\[guest\d*\]/.test(l));
  const platform = lines.filter((l) => /^\[(platform|qnicd|qnicd-diag)\]/.test(l));
  const dom0 = lines.filter((l) => !l.startsWith("(XEN)") && !/^\[(guest\d*|platform|qnicd|qnicd-diag)\]/.test(l));
  const part = (name: string, ls: string[]) => `--- last ${Math.min(n, ls.length)} ${name} console lines ---\n${ls.slice(-n).join("\n")}`;
  return [part("Xen", xen), part("dom0", dom0), part("guest", guest), part("platform/qnicd", platform)].join("\n");
}

export async function runTestbed(opts: TestbedOptions = {}): Promise<TestbedRun> {
  const log = opts.log ?? (() => {});
  if (process.getuid?.() !== 0) throw new Error("xen testbed: needs root (debootstrap, chroot, mkfs.ext4 -d): run the tests as root");
  ensureDebPackages(HOST_PACKAGES);

  let t = performance.now();
  const built = sh("bash", [join(here, "build-images.sh")], "building the Xen images (test/xen/harness/build-images.sh)");
  const images = built.trim().split("\n").pop()!;
  const buildImagesS = (performance.now() - t) / 1000;
  const fromCache = buildImagesS < 20;
  log(`images: ${images} (${buildImagesS.toFixed(1)} s${fromCache ? ", cached" : ""})`);

  const work = mkdtempSync(join(tmpdir(), "qnicd-xen-"));
  try {
    t = performance.now();
    const runImg = join(work, "run.img");
    const env = [`QNICD_STEPS="${opts.steps ?? "baseline platform qnicd throughput"}"`, `QNICD_MB=${opts.mb ?? 16}`, `QNICD_TPUT_MB=${opts.tputMb ?? TPUT_MB}`];
    // Extra options for the daemon in dom0 (e.g. to narrow down a failure by hand).
    if (process.env.QNICD_ARGS) env.push(`QNICD_ARGS="${process.env.QNICD_ARGS.replace(/["$`\\]/g, "")}"`);
    // The restarted qnicd's throughput step: how many transfers, and one more under strace (diagnosis).
    for (const k of ["QNICD_RESTARTED_N", "QNICD_RESTARTED_STRACE"]) if (/^\w+$/.test(process.env[k] ?? "")) env.push(`${k}=${process.env[k]}`);
    sh("bash", [join(here, "make-run-disk.sh"), images, repo, runImg, ...env], "building the run disk (make-run-disk.sh)");
    const runDiskS = (performance.now() - t) / 1000;
    log(`run disk built in ${runDiskS.toFixed(1)} s`);

    const xenArgs = "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all noreboot smap=0 smep=0 tsc=unstable";
    const args = [
      "-accel", `tcg,thread=${opts.tcgThread ?? process.env.QNICD_XEN_TCG_THREAD ?? "multi"}`, "-cpu", opts.cpu ?? process.env.QNICD_XEN_CPU ?? DEFAULT_CPU, "-m", "3072",
      "-smp", String(opts.smp ?? (Number(process.env.QNICD_XEN_SMP) || 1)),
      "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
      "-kernel", join(images, "xen"),
      "-append", xenArgs,
      "-initrd", `${join(images, "vmlinuz")} console=hvc0 earlyprintk=xen,${join(images, "dom0-initrd.gz")}`,
      "-drive", `file=${join(images, "root.img")},format=raw,if=virtio,snapshot=on`,
      "-drive", `file=${runImg},format=raw,if=virtio,snapshot=on`,
    ];
    const timeoutS = opts.timeoutS ?? 600;
    const steps = new Map<string, StepVerdict>();
    const results: string[] = [];
    const xferMarks: XferMark[] = [];
    const lines: string[] = [];
    let completed = false;
    let stopReason = "";
    let bootToToolstackS: number | undefined;
    const t0 = performance.now();
    const q = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    q.stderr.on("data", (d) => (stderr += d));
    const stop = (why: string) => {
      if (!stopReason) stopReason = why;
      if (q.exitCode === null && q.signalCode === null) q.kill("SIGKILL");
    };
    const timer = setTimeout(() => stop(`timeout after ${timeoutS} s`), timeoutS * 1000);
    const exited = new Promise<void>((res) => q.on("exit", () => res()));
    const rl = createInterface({ input: q.stdout });
    rl.on("line", (raw) => {
      const line = raw.replace(/\r$/, "").replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
      lines.push(line);
      log(line);
      let m: RegExpExecArray | null;
      if ((m = /^QNICD-STEP (\S+) (ok|fail|skip) ?(.*)$/.exec(line))) {
        steps.set(m[1], { status: m[2] as StepVerdict["status"], detail: m[3] });
        if (m[1] === "toolstack") bootToToolstackS = (performance.now() - t0) / 1000;
      } else if ((m = /^QNICD-RESULT (.*)$/.exec(line))) results.push(m[1]);
      else if ((m = /^QNICD-XFER (.+) (start|end)$/.exec(line)) && q.pid !== undefined) {
        try {
          xferMarks.push({ label: m[1], phase: m[2] as XferMark["phase"], qemuCpuS: cpuSeconds(q.pid) });
        } catch {} // QEMU already gone: the transfer gets no CPU figure
      }
      else if (line.startsWith("QNICD-DONE")) {
        completed = true;
        stop("done");
      } else if (/Kernel panic|\(XEN\) Panic on CPU|QNICD-PANIC|\(XEN\) Reboot in five seconds/.test(line)) {
        // Let a few more lines of the panic arrive before stopping.
        setTimeout(() => stop(`panic: ${line}`), 2000);
      }
    });
    await exited;
    clearTimeout(timer);
    if (!stopReason) stopReason = `QEMU exited (${q.exitCode ?? q.signalCode}) before QNICD-DONE${stderr ? `: ${stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}`;
    const qemuS = (performance.now() - t0) / 1000;
    return { completed, stopReason, steps, results, xferMarks, timings: { buildImagesS, runDiskS, bootToToolstackS, qemuS, fromCache }, lines };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const opt = (n: string) => {
    const i = argv.indexOf(n);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quiet = argv.includes("--quiet");
  const run = await runTestbed({
    steps: opt("--steps"),
    mb: opt("--mb") ? Number(opt("--mb")) : undefined,
    tputMb: opt("--tput-mb") ? Number(opt("--tput-mb")) : undefined,
    timeoutS: opt("--timeout") ? Number(opt("--timeout")) : undefined,
    log: quiet ? undefined : (l) => console.log(l),
  });
  console.log(`\n== ${run.completed ? "completed" : `stopped: ${run.stopReason}`}`);
  for (const [k, v] of run.steps) console.log(`step ${k}: ${v.status} ${v.detail}`);
  for (const r of run.results) console.log(`result ${r}`);
  console.log(`timings ${JSON.stringify(run.timings)}`);
  const report = recordXenReport(run, opt("--tput-mb") ? Number(opt("--tput-mb")) : TPUT_MB);
  if (report) for (const l of formatXenReport(report)) console.log(l);
  if (!run.completed) console.log(consoleTails(run.lines));
  process.exit(run.completed && [...run.steps.values()].every((s) => s.status !== "fail") ? 0 : 1);
}
