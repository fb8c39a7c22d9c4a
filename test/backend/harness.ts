// A running backend (src/backend) on a simulated host, with the fake pool and placeholder peers,
// plus helpers to create guests through the sim toolstack and play their frontends.
import { startBackend, type Backend } from "../../src/backend/index.ts";
import { createLogger } from "../../src/log.ts";
import { PlaceholderProvisioner } from "../../src/net/peer-provisioner.ts";
import type { XenstoreClient } from "../../src/xenstore/index.ts";
import { FakePool } from "./fake-pool.ts";
import { ScriptedFrontend } from "./scripted-frontend.ts";
import { startSimHost, type SimHost } from "./sim-host.ts";

export interface BackendHarness {
  host: SimHost;
  pool: FakePool;
  peers: PlaceholderProvisioner;
  backend: Backend;
  /** The backend's own xenstore client. */
  bxs: XenstoreClient;
  /** Every xenstore request the backend made: "READ 0 /local/..." (op, transaction id, first argument). */
  requests: string[];
  logs: string[];
  /** A guest with `vifs` vifs; returns one scripted frontend per vif. */
  guest(name: string, vifs?: number, opts?: { noWait?: boolean }): Promise<{ domid: number; fronts: ScriptedFrontend[] }>;
  close(): Promise<void>;
}

export async function startBackendHarness(opts: { type?: "vif" | "qnic"; initTimeoutMs?: number; destroyTimeoutMs?: number; connectTimeoutMs?: number; maxQueues?: number; journalDir?: string; peers?: PlaceholderProvisioner } = {}): Promise<BackendHarness> {
  const host = await startSimHost({ initTimeoutMs: opts.initTimeoutMs ?? 5000, destroyTimeoutMs: opts.destroyTimeoutMs ?? 5000 });
  const requests: string[] = [];
  const logs: string[] = [];
  const bxs = await host.client({ trace: (op, tx, args) => requests.push(`${op} ${tx} ${args[0] ?? ""}`) });
  const pool = new FakePool();
  const peers = opts.peers ?? new PlaceholderProvisioner("null");
  const log = createLogger({ level: "debug", format: "text", write: (l) => logs.push(l) });
  const type = opts.type ?? "vif";
  const backend = await startBackend({ xs: bxs, pool, peers, log, backendDomid: 0, type, vifnamePrefix: "vif", connectTimeoutMs: opts.connectTimeoutMs, maxQueues: opts.maxQueues, journalDir: opts.journalDir });
  let closed = false;
  return {
    host,
    pool,
    peers,
    backend,
    bxs,
    requests,
    logs,
    async guest(name, vifs = 1, o = {}) {
      const d = await host.ts.create(name, { vifs, noWait: o.noWait, backendKind: type });
      const gxs = await host.guestClient(d.domid);
      return { domid: d.domid, fronts: d.nics.map((n) => new ScriptedFrontend(gxs, d.domid, n.devid, type)) };
    },
    async close() {
      if (closed) return;
      closed = true;
      await backend.stop();
      await host.close();
    },
  };
}
