// The demo's guests: each vif's netfront runs as its own process (src/sim/netfront/main.ts, the
// driver `xl create --netfront` boots), but with its stdin and stdout kept as pipes, so the demo
// can act as a program inside the guest: write "send <hex>" and read the frames the guest
// receives. The processes are detached (their own process group), so a Ctrl-C in the terminal
// reaches only the demo, which then tears things down in order. A pid file in the toolstack's
// place (spawn.ts's layout, same command line shape) lets `sim down` find them if the demo dies.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { netfrontGuestFiles } from "../netfront/spawn.ts";
import { simPaths } from "../paths.ts";
import type { GuestRunner } from "../toolstack/guests.ts";

const MAIN = join(import.meta.dir, "..", "netfront", "main.ts");
/** One rx event line carries at most one frame (hex) plus a little JSON. */
const MAX_LINE = 2 * 65536 + 1024;

export class GuestShell {
  private readonly listeners = new Set<(frame: Uint8Array) => void>();
  /** What the netfront reported as fatal ("broken": a response it cannot explain) or gave up on. */
  readonly problems: string[] = [];
  private connected: { mac: string } | undefined;
  private waiters: ((c: { mac: string }) => void)[] = [];
  private exitedWith: string | undefined;
  private readonly exited: Promise<void>;

  constructor(
    readonly domid: number,
    readonly devid: number,
    private readonly child: ChildProcess,
    private readonly pidFile: string,
  ) {
    this.exited = new Promise((res) => {
      const done = (why: string) => {
        this.exitedWith ??= why;
        rmSync(pidFile, { force: true });
        res();
      };
      child.once("exit", (code, sig) => done(sig ? `killed by ${sig}` : `exited with status ${code}`));
      child.once("error", (e) => done(`could not start (${e.message})`));
    });
    child.stdin!.on("error", () => {}); // EPIPE after the guest died: the exit says it already
    const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity });
    lines.on("line", (l) => this.onLine(l));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** One stdout line of the netfront: parsed defensively, a line it did not mean is ignored. */
  private onLine(line: string): void {
    if (line.length > MAX_LINE) return;
    let e: { event?: unknown; hex?: unknown; mac?: unknown };
    try {
      e = JSON.parse(line);
    } catch {
      return;
    }
    if ((e?.event === "broken" || e?.event === "gave-up") && typeof (e as { reason?: unknown }).reason === "string") {
      this.problems.push(`${e.event}: ${(e as { reason: string }).reason}`);
    } else if (e?.event === "connected" && typeof e.mac === "string") {
      this.connected = { mac: e.mac };
      for (const w of this.waiters.splice(0)) w(this.connected);
    } else if (e?.event === "rx" && typeof e.hex === "string" && /^([0-9a-f]{2})*$/.test(e.hex)) {
      const frame = Uint8Array.from(Buffer.from(e.hex, "hex"));
      for (const l of this.listeners) l(frame);
    }
  }

  /** Resolves when the netfront and qnicd are both Connected; rejects on timeout or exit. */
  whenConnected(timeoutMs: number): Promise<{ mac: string }> {
    if (this.connected) return Promise.resolve(this.connected);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`guest ${this.domid}: netfront not connected after ${timeoutMs / 1000} s${this.exitedWith ? ` (it ${this.exitedWith})` : ""}`)), timeoutMs);
      void this.exited.then(() => rej(new Error(`guest ${this.domid}: netfront ${this.exitedWith} before connecting`)));
      this.waiters.push((c) => {
        clearTimeout(t);
        res(c);
      });
    });
  }

  /** Queues one frame on the guest's tx ring, as a program in the guest writing to its NIC. */
  send(frame: Uint8Array): void {
    if (this.exitedWith === undefined) this.child.stdin!.write(`send ${Buffer.from(frame).toString("hex")}\n`);
  }

  onFrame(cb: (frame: Uint8Array) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** SIGKILL (a destroyed domain stops mid-anything) and wait until it is gone. */
  async kill(): Promise<void> {
    if (this.exitedWith === undefined) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/** A GuestRunner for the sim Toolstack whose guests the demo can talk to. */
export class DemoGuests implements GuestRunner {
  readonly shells = new Map<string, GuestShell>();
  constructor(private readonly dir: string) {}

  start(domid: number, devid: number, opts: { ip?: string; vcpus?: number }): void {
    const p = simPaths(this.dir);
    const files = netfrontGuestFiles(this.dir, domid, devid);
    mkdirSync(p.guestsDir, { recursive: true });
    const args = [MAIN, "--dir", p.dir, "--domid", String(domid), "--devid", String(devid), "--reset-on", "SIGUSR1"];
    if (opts.ip) args.push("--ip", opts.ip);
    if (opts.vcpus !== undefined) args.push("--vcpus", String(opts.vcpus));
    const err = openSync(files.logFile, "a");
    const child = spawn(process.execPath, args, { detached: true, stdio: ["pipe", "pipe", err] });
    closeSync(err);
    writeFileSync(files.pidFile, `${child.pid}\n`);
    this.shells.set(`${domid}.${devid}`, new GuestShell(domid, devid, child, files.pidFile));
  }

  shell(domid: number, devid = 0): GuestShell {
    const s = this.shells.get(`${domid}.${devid}`);
    if (!s) throw new Error(`no guest driver runs for vif ${domid}.${devid}`);
    return s;
  }

  async kill(domid: number): Promise<void> {
    for (const [k, s] of this.shells) {
      if (s.domid !== domid) continue;
      await s.kill();
      this.shells.delete(k);
    }
  }

  async killAll(): Promise<void> {
    await Promise.all([...this.shells.values()].map((s) => s.kill()));
    this.shells.clear();
  }
}
