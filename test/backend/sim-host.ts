// A simulated Xen host per test: the sim hypervisor and xenstored in a temp run directory, the sim
// toolstack (libxl's nodes and waits), and dom0 clients. restartXenstored() stops xenstored and
// starts it again on the same directory (its tree persists, as with live update).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as hv from "../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { simHypervisor } from "../../src/sim/toolstack/hypervisor.ts";
import { libxlLogTo } from "../../src/sim/toolstack/libxl-log.ts";
import { Toolstack } from "../../src/sim/toolstack/toolstack.ts";
import { startXenstored, type Xenstored } from "../../src/sim/xenstored/server.ts";
import { XenstoreClient } from "../../src/xenstore/index.ts";

export interface SimHost {
  dir: string;
  socketPath: string;
  ts: Toolstack;
  /** dom0 observer client (reconnects across restarts). */
  xs: XenstoreClient;
  libxlLog: string[];
  client(opts?: { trace?: (op: string, tx: number, args: readonly string[]) => void }): Promise<XenstoreClient>;
  guestClient(domid: number): Promise<XenstoreClient>;
  restartXenstored(pauseMs?: number): Promise<void>;
  stopXenstored(): Promise<void>;
  startXenstored(): Promise<void>;
  close(): Promise<void>;
}

export async function startSimHost(opts: { initTimeoutMs?: number; destroyTimeoutMs?: number } = {}): Promise<SimHost> {
  const dir = mkdtempSync(join(tmpdir(), "qnicd-backend-"));
  hv.initHypervisor(dir);
  let xsd: Xenstored | undefined = await startXenstored({ dir, log: () => {} });
  const clients: XenstoreClient[] = [];
  const connect = async (path: string, trace?: (op: string, tx: number, args: readonly string[]) => void) => {
    const c = await XenstoreClient.connect({ path, trace, reconnect: { initialDelayMs: 10, maxDelayMs: 50 }, onError: () => {} });
    clients.push(c);
    return c;
  };
  const xs = await connect(xsd.socketPath);
  await xs.write("/local/domain/0/domid", "0");
  await xs.write("/local/domain/0/name", "Domain-0");
  const libxlLog: string[] = [];
  const ts = new Toolstack({ xs, hv: simHypervisor(dir), log: libxlLogTo((l) => libxlLog.push(l)), ...opts });
  const host: SimHost = {
    dir,
    socketPath: xsd.socketPath,
    ts,
    xs,
    libxlLog,
    client: (o) => connect(simPaths(dir).xenstoredSocket, o?.trace),
    guestClient: (domid) => connect(simPaths(dir).domainSocket(domid)),
    async stopXenstored() {
      await xsd?.close();
      xsd = undefined;
    },
    async startXenstored() {
      xsd = await startXenstored({ dir, log: () => {} });
    },
    async restartXenstored(pauseMs = 100) {
      await host.stopXenstored();
      await Bun.sleep(pauseMs);
      await host.startXenstored();
    },
    async close() {
      for (const c of clients) c.close();
      await xsd?.close();
      hv.teardownHypervisor(dir);
      rmSync(dir, { recursive: true, force: true });
      if (existsSync(simPaths(dir).shmDir)) throw new Error(`${simPaths(dir).shmDir} left behind`);
    },
  };
  return host;
}

export async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}
