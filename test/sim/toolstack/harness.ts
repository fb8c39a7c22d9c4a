// Shared setup for toolstack tests: a real sim xenstored in a temp dir, a recording hypervisor
// double (these tests are about xenstore behaviour; cli tests use the real sim hypervisor), and
// a toolstack whose client records every request it sends.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startXenstored } from "../../../src/sim/xenstored/server.ts";
import type { DomainInfo, HypervisorOps } from "../../../src/sim/toolstack/hypervisor.ts";
import { libxlLogTo } from "../../../src/sim/toolstack/libxl-log.ts";
import type { GuestRunner } from "../../../src/sim/toolstack/guests.ts";
import { Toolstack } from "../../../src/sim/toolstack/toolstack.ts";
import { XenstoreClient } from "../../../src/xenstore/index.ts";

export interface TraceEntry {
  op: string;
  tx: number;
  args: readonly string[];
}

export class RecordingHypervisor implements HypervisorOps {
  domains = new Map<number, DomainInfo>([[0, { domid: 0, memoryPages: 262144, vcpus: 2 }]]);
  calls: string[] = [];
  private next = 1;
  async createDomain(opts: { memoryPages?: number }) {
    const domid = this.next++;
    this.domains.set(domid, { domid, memoryPages: opts.memoryPages ?? 32768, vcpus: 1 });
    this.calls.push(`create ${domid}`);
    return domid;
  }
  async destroyDomain(domid: number) {
    this.domains.delete(domid);
    this.calls.push(`destroy ${domid}`);
  }
  async listDomains() {
    return [...this.domains.values()];
  }
  async domainExists(domid: number) {
    return this.domains.has(domid);
  }
}

export interface Harness {
  dir: string;
  socketPath: string;
  ts: Toolstack;
  hv: RecordingHypervisor;
  trace: TraceEntry[];
  logLines: string[];
  /** Another dom0 connection (a backend, an observer). */
  client(): Promise<XenstoreClient>;
  close(): Promise<void>;
}

export async function startHarness(opts: { initTimeoutMs?: number; destroyTimeoutMs?: number; guests?: GuestRunner } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "qnicd-toolstack-"));
  const xsd = await startXenstored({ dir, log: () => {} });
  const trace: TraceEntry[] = [];
  const logLines: string[] = [];
  const clients: XenstoreClient[] = [];
  const xs = await XenstoreClient.connect({ path: xsd.socketPath, trace: (op, tx, args) => trace.push({ op, tx, args }) });
  clients.push(xs);
  const hv = new RecordingHypervisor();
  const ts = new Toolstack({ xs, hv, log: libxlLogTo((l) => logLines.push(l), { debug: true }), ...opts });
  return {
    dir,
    socketPath: xsd.socketPath,
    ts,
    hv,
    trace,
    logLines,
    client: async () => {
      const c = await XenstoreClient.connect({ path: xsd.socketPath });
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) c.close();
      await xsd.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every node under `root` as path -> value (like xenstore-ls -f). */
export async function dump(xs: XenstoreClient, root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (p: string) => {
    const v = await xs.tryRead(p);
    if (v === undefined) return;
    out[p] = v;
    for (const c of await xs.directory(p)) await walk(p === "/" ? `/${c}` : `${p}/${c}`);
  };
  await walk(root);
  return out;
}

export async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/**
 * Plays a backend for every vif under /local/domain/0/backend/<kind>: answers state 1 with 2
 * (InitWait) and, when `closes`, state 5 with 6 (Closed) after `closeDelayMs`. Records what it saw.
 */
export async function playBackend(xs: XenstoreClient, opts: { kind?: string; closes?: boolean; closeDelayMs?: number } = {}) {
  const seen: { path: string; state: string; online: string | undefined }[] = [];
  const kind = opts.kind ?? "vif";
  const w = await xs.watch(`/local/domain/0/backend/${kind}`, async (path) => {
    if (!path.endsWith("/state")) return;
    const state = await xs.tryRead(path);
    if (state === undefined) return;
    const B = path.slice(0, -"/state".length);
    const online = await xs.tryRead(`${B}/online`);
    seen.push({ path, state, online });
    if (state === "1") await xs.write(path, "2").catch(() => {});
    if (state === "5" && opts.closes !== false) {
      if (opts.closeDelayMs) await Bun.sleep(opts.closeDelayMs);
      await xs.write(path, "6").catch(() => {});
    }
  });
  return { seen, stop: () => w.unwatch() };
}
