// qnicd as users run it: src/main.ts in its own process with command-line settings, its log in a
// file. Detached (its own process group) so a Ctrl-C reaches the demo only, and the demo stops
// qnicd at the right moment of its teardown with SIGTERM, qnicd's normal way to stop.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "..", "..", "main.ts");

export class QnicdProcess {
  private exitedWith: string | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly args: readonly string[],
    readonly logFile: string,
    readonly url: string,
  ) {
    this.exited = new Promise((res) => {
      child.once("exit", (code, sig) => {
        this.exitedWith ??= sig ? `was killed by ${sig}` : `exited with status ${code}`;
        res();
      });
      child.once("error", (e) => {
        this.exitedWith ??= `could not start (${e.message})`;
        res();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The command line, relative to the repository, as a user would type it. */
  get commandLine(): string {
    return ["bun", "src/main.ts", ...this.args].join(" ");
  }

  /** Starts qnicd and waits until /health answers; a failure is one line with qnicd's last words. */
  static async start(args: string[], logFile: string, httpHostPort: string, timeoutMs = 20_000, env?: Record<string, string>): Promise<QnicdProcess> {
    const fd = openSync(logFile, "a");
    const child = spawn(process.execPath, [MAIN, ...args], { detached: true, stdio: ["ignore", fd, fd], env: env ? { ...process.env, ...env } : process.env });
    closeSync(fd);
    const q = new QnicdProcess(child, args, logFile, `http://${httpHostPort}`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (q.exitedWith !== undefined) throw new Error(`qnicd ${q.exitedWith}: ${q.lastLogLine() || "(no output)"}`);
      try {
        const r = await fetch(`${q.url}/health`, { signal: AbortSignal.timeout(1000) });
        if (r.ok) return q;
      } catch {}
      if (Date.now() > deadline) {
        await q.stop();
        throw new Error(`qnicd did not answer on ${q.url}/health within ${timeoutMs / 1000} s: ${q.lastLogLine() || "(no output)"}`);
      }
      await Bun.sleep(50);
    }
  }

  lastLogLine(): string {
    try {
      return readFileSync(this.logFile, "utf8").trimEnd().split("\n").at(-1) ?? "";
    } catch {
      return "";
    }
  }

  get running(): boolean {
    return this.exitedWith === undefined;
  }

  /** SIGTERM (every vif closed, TAPs gone), SIGKILL after `timeoutMs`. Returns how it ended. */
  async stop(timeoutMs = 10_000): Promise<string> {
    if (this.exitedWith === undefined) this.child.kill("SIGTERM");
    const t = setTimeout(() => this.exitedWith === undefined && this.child.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(t);
    return this.exitedWith!;
  }

  /** For a second Ctrl-C (and a crash, in the restart tests): no more waiting. */
  async kill(): Promise<void> {
    if (this.exitedWith === undefined) this.child.kill("SIGKILL");
    await this.exited;
  }

  /** How it ended, once it has (undefined while it runs). */
  get exitStatus(): string | undefined {
    return this.exitedWith;
  }
}
