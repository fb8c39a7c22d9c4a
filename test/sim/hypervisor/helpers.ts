// Shared by the hypervisor and platform tests: a fresh simulated host per test file, and a child
// process on it driven by JSON lines.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initHypervisor, teardownHypervisor } from "../../../src/sim/hypervisor/index.ts";

export function freshHost(tag: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `qnicd-${tag}-`));
  initHypervisor(dir);
  return {
    dir,
    cleanup() {
      teardownHypervisor(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const childScript = join(import.meta.dir, "fixtures", "sim-child.ts");

export class Child {
  readonly proc: ReturnType<typeof Bun.spawn>;
  private buf = "";
  private lines: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  private reader: { read(): Promise<{ value?: Uint8Array; done: boolean }> };

  constructor(script = childScript) {
    this.proc = Bun.spawn([process.execPath, script], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    this.reader = (this.proc.stdout as unknown as ReadableStream<Uint8Array>).getReader() as never;
    void this.pump();
  }

  private async pump() {
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await this.reader.read();
      if (done) return;
      this.buf += dec.decode(value, { stream: true });
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    }
  }

  next(timeoutMs = 20000): Promise<any> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(JSON.parse(l));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child did not answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((line) => {
        clearTimeout(t);
        resolve(JSON.parse(line));
      });
    });
  }

  send(msg: unknown): void {
    const stdin = this.proc.stdin as import("bun").FileSink;
    stdin.write(`${JSON.stringify(msg)}\n`);
    stdin.flush();
  }

  async call(msg: unknown): Promise<any> {
    this.send(msg);
    const r = await this.next();
    if (r && r.error) throw new Error(`child: ${r.error}`);
    return r;
  }

  async kill(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.exited;
  }

  async exit(): Promise<void> {
    try {
      await this.call({ op: "exit" });
    } catch {
      // already gone
    }
    await this.proc.exited;
  }
}
