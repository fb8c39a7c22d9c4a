// The daemon, wired: platform -> xenstore client -> worker pool -> backend (discovery + state
// machines) -> status API. startDaemon() is what main.ts runs and what tests run in-process; every
// startup failure is one line saying what to do, and stop() leaves nothing mapped or running.
import { existsSync } from "node:fs";
import { startBackend, type Backend } from "./backend/index.ts";
import { resolvePlatform, type Config, type PathProbe } from "./config/index.ts";
import { createHttpApp, startHttpServer, type HttpServer, type VifSnapshot, type XenstoreHealth } from "./http/index.ts";
import { createLogger, type Logger } from "./log.ts";
import { createPeerProvisioner } from "./net/peer-provisioners.ts";
import type { PeerProvisioner } from "./net/peer-provisioner.ts";
import { openPlatform, PlatformError, type Platform, type PlatformConfig } from "./platform/index.ts";
import { backendDomid } from "./platform/backend-domid.ts";
import { peerTakesGso } from "./backend/features.ts";
import { createWorkerPool } from "./pool/index.ts";
import type { WorkerPool } from "./pool/types.ts";
import { StatsArena } from "./stats/index.ts";
import { XenstoreClient } from "./xenstore/index.ts";

/** How many vifs one worker can serve: the stats arena is sized for it up front. */
export const VIFS_PER_WORKER = 64;

export interface PoolContext {
  platform: Platform;
  stats: StatsArena;
  workers: number;
  log: Logger;
}

/** Everything a test may replace; production uses the defaults. */
export interface DaemonDeps {
  log?: Logger;
  /** Default: the real worker pool on the platform. */
  createPool?: (ctx: PoolContext) => Promise<WorkerPool>;
  /** Default: from --peer (a TAP provisioner needs root). */
  peers?: PeerProvisioner;
  openPlatform?: (config: PlatformConfig) => Platform;
  probe?: PathProbe;
}

export interface Daemon {
  readonly platform: Platform;
  readonly xs: XenstoreClient;
  readonly pool: WorkerPool;
  readonly backend: Backend;
  readonly http: HttpServer;
  readonly stats: StatsArena;
  /** What /vifs serves. */
  vifs(): VifSnapshot[];
  /** Every vif disconnected and Closed, workers stopped, HTTP closed, xenstore closed. Idempotent. */
  stop(): Promise<void>;
}

/** A startup failure, already one line for the operator. */
export class DaemonStartError extends Error {
  override name = "DaemonStartError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message.replace(/\s*[\r\n]+\s*/g, " "), options);
  }
}

export async function startDaemon(config: Config, deps: DaemonDeps = {}): Promise<Daemon> {
  const log = deps.log ?? createLogger({ level: config.logLevel, format: config.logFormat });
  const undo: (() => unknown)[] = [];
  const fail = async (e: unknown, prefix = ""): Promise<never> => {
    for (const u of undo.reverse()) await Promise.resolve().then(u).catch(() => {});
    if (e instanceof DaemonStartError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new DaemonStartError(msg.startsWith("qnicd:") ? msg : `qnicd: ${prefix}${msg}`, { cause: e });
  };

  let platform: Platform;
  let platformConfig: PlatformConfig;
  try {
    const kind = resolvePlatform(config, deps.probe ?? { exists: existsSync });
    const domid = await backendDomid(config.domid, kind);
    platformConfig = kind === "sim" ? { kind: "sim", dir: config.simDir, domid } : { kind: "xen", domid };
    platform = (deps.openPlatform ?? openPlatform)(platformConfig);
  } catch (e) {
    // The sim platform's own hint names a function (initHypervisor); an operator wants the command.
    if (e instanceof PlatformError && e.code === "ENOENT" && config.platform !== "xen") {
      return fail(new DaemonStartError(`qnicd: no simulated Xen host is running in ${config.simDir}: start it with 'bun run sim up --dir ${config.simDir}'`, { cause: e }));
    }
    return fail(e);
  }
  undo.push(() => platform.close());

  let xs: XenstoreClient;
  try {
    xs = await XenstoreClient.connect({ path: platform.xenstorePath, onError: (e) => log.warn(`xenstore: ${e.message}`) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    const cure =
      platform.kind === "sim"
        ? `start it with 'bun run sim up --dir ${config.simDir}'`
        : platform.xenstorePath.startsWith("/dev/")
          ? "run qnicd as root in a domain with Linux's xenbus driver (it provides /dev/xen/xenbus), or where xenstored runs"
          : "start xenstored (e.g. systemctl start xenstored)";
    return fail(new DaemonStartError(`qnicd: cannot reach xenstored at ${platform.xenstorePath}: ${why}: ${cure}`));
  }
  undo.push(() => xs.close());
  let xenstore: XenstoreHealth = "connected";
  xs.on("disconnected", (err) => {
    xenstore = "reconnecting";
    log.warn(`xenstore: ${err.message}; reconnecting (vifs keep running)`);
  });
  xs.on("reconnected", () => (xenstore = "connected"));
  xs.on("closed", () => (xenstore = "down"));

  let peers: PeerProvisioner;
  try {
    peers = deps.peers ?? createPeerProvisioner(config.peer, { bridge: config.bridge });
  } catch (e) {
    return fail(e);
  }
  undo.push(() => peers.close());

  // SG/GSO on guest tx only where the whole path takes GSO frames (features.ts says which).
  const txOffloads = peerTakesGso(peers.kind, config.datapath);
  const stats = StatsArena.create({ workers: config.workers, slotsPerWorker: VIFS_PER_WORKER });
  let pool: WorkerPool;
  try {
    const ctx = { platform, stats, workers: config.workers, log: log.child("pool") };
    pool = await (deps.createPool ?? ((c: PoolContext) => createWorkerPool({ platform: c.platform.config, workers: c.workers, stats: c.stats, log: c.log, datapath: config.datapath, scatterGather: txOffloads })))(ctx);
  } catch (e) {
    return fail(e, "starting the worker pool: ");
  }
  undo.push(() => pool.close());

  const started = Date.now();
  // The API is up before any vif is claimed, so a taken port fails the start without touching one.
  let serving: Backend | undefined;
  const vifs = (): VifSnapshot[] =>
    (serving?.devices() ?? []).map(({ dev, vif }) => ({
      domid: dev.domid,
      devid: dev.devid,
      backendState: dev.written ?? dev.state,
      frontendState: dev.frontendState,
      worker: vif?.connection?.worker ?? null,
      mac: vif?.config?.mac ?? null,
      features: vif?.connection && vif.config ? { ...vif.config.features, "multi-queue-num-queues": 1, "feature-split-event-channels": vif.config.splitEventChannels } : {},
      slot: vif?.connection?.statsSlot ?? null,
    }));
  let http: HttpServer;
  try {
    const app = createHttpApp({
      health: () => ({
        xenstore,
        uptimeSeconds: Math.floor((Date.now() - started) / 1000),
        workers: { configured: pool.size, running: pool.snapshot().workers.filter((w) => w.alive).length },
      }),
      vifs,
      stats,
      log: log.child("http"),
    });
    http = startHttpServer(app, config.http);
  } catch (e) {
    return fail(e);
  }
  undo.push(() => http.stop());

  let backend: Backend;
  try {
    backend = await startBackend({
      xs,
      pool,
      peers,
      log,
      backendDomid: platform.domid,
      type: config.backendType,
      vifnamePrefix: config.vifnamePrefix,
      txOffloads,
    });
  } catch (e) {
    return fail(e, `watching /local/domain/${platform.domid}/backend/${config.backendType}: `);
  }
  undo.push(() => backend.stop());
  serving = backend;

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      // Vifs first (their guests see Closed), then the workers, then everything else.
      await backend.stop().catch((e) => log.error(`stopping the backend: ${(e as Error).message}`));
      await pool.close().catch((e) => log.error(`stopping the worker pool: ${(e as Error).message}`));
      log.debug("workers stopped");
      await http.stop().catch(() => {});
      peers.close();
      xs.close();
      platform.close();
      log.info("stopped: every vif closed, nothing left mapped or running");
    })());

  log.info(`serving ${backend.bus.root}`, { platform: platform.kind, workers: pool.size, peer: peers.kind, http: http.url });
  return { platform, xs, pool, backend: backend, http, stats, vifs, stop };
}
