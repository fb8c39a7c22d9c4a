// The daemon, wired: platform -> owner lock -> worker pool (loading while the next two run) ->
// xenstore client -> peers -> status API -> backend (discovery + state machines). startDaemon() is
// what main.ts runs and what tests run in-process; every startup failure is one line saying what
// to do. stop() either closes every vif and leaves nothing mapped or running, or (keepVifs: a
// restart) leaves the vifs to the next qnicd.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { OwnerLock } from "./state/owner-lock.ts";
import { backendStateName, runtimeDirFor } from "./state/runtime-dir.ts";
import { backendRoot } from "./backend/paths.ts";
import { startBackend, type Backend } from "./backend/index.ts";
import { resolvePlatform, type Config, type PathProbe } from "./config/index.ts";
import { createHttpApp, startHttpServer, type HttpServer, type VifSnapshot, type XenstoreHealth } from "./http/index.ts";
import { createLogger, type Logger } from "./log.ts";
import { createPeerProvisioner } from "./net/peer-provisioners.ts";
import type { PeerProvisioner } from "./net/peer-provisioner.ts";
import { openPlatform, PlatformError, type Platform, type PlatformConfig } from "./platform/index.ts";
import { backendDomid } from "./platform/backend-domid.ts";
import { multicastControlOffered, offersCtrlRing, peerTakesGso } from "./backend/features.ts";
import { createWorkerPool } from "./pool/index.ts";
import type { WorkerPool } from "./pool/types.ts";
import { StatsArena } from "./stats/index.ts";
import { XenstoreClient } from "./xenstore/index.ts";
import { CaptureService } from "./capture/capture-service.ts";
import { RateHistory } from "./http/rate-history.ts";
import { vifName } from "./http/vif-view.ts";
import { versionLine } from "./build-info.ts";
import { StartupClock } from "./startup-clock.ts";

/**
 * How many vifs one worker can serve: the stats arena is sized for it up front (448 bytes a slot,
 * resident only once used), and the worker's poll set holds a peer fd for each (POLL_MAX_FDS). At 64
 * a default daemon (one worker per CPU) on a 2-CPU host could serve only 128 vifs, and 1000 vifs
 * needed 16 workers, each a JavaScript VM of its own (~14 MiB) with nothing more to do than two.
 */
export const VIFS_PER_WORKER = 1024;

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
  /** Phases of this start (main.ts passes one running since the exec); default: one from now. */
  startup?: StartupClock;
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
  /** Where the owner lock and the vif journals live. */
  readonly runtimeDir: string;
  /**
   * Every vif disconnected and Closed, workers stopped, HTTP closed, xenstore closed. With keepVifs
   * (a restart: --on-exit keep), no state node is written and the vifs' TAPs and journals stay, so
   * the next qnicd takes every vif over without its guest noticing. Idempotent.
   */
  stop(opts?: { keepVifs?: boolean }): Promise<void>;
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
  const startup = deps.startup ?? new StartupClock();
  const phase = (name: string) => log.debug(`startup: ${name} took ${Math.round(startup.mark(name))} ms`);
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
      return fail(new DaemonStartError(`qnicd: no simulated Xen host is running in ${config.simDir}: start it with 'npm run sim -- up --dir ${config.simDir}'`, { cause: e }));
    }
    return fail(e);
  }
  undo.push(() => platform.close());
  phase("platform");

  // One owner per backend, before xenstore is touched: a second qnicd must not close or take over
  // the first one's vifs. The lock dies with the process, so a crash never blocks the successor.
  const root = backendRoot(platform.domid, config.backendType);
  const runtimeDir = runtimeDirFor({ platform: platform.kind, runtimeDir: config.runtimeDir, simDir: config.simDir, env: process.env, uid: process.getuid?.() ?? 0 });
  const stateName = backendStateName(platform.kind, root);
  let lock: OwnerLock;
  try {
    lock = OwnerLock.acquire(runtimeDir, stateName, `${root} on the ${platform.kind === "sim" ? `simulated host in ${config.simDir}` : "Xen"} platform`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code ? new DaemonStartError(`qnicd: cannot use the runtime directory ${runtimeDir} (${code}): give a writable one with --runtime-dir`) : e);
  }
  undo.push(() => lock.release());
  phase("owner lock");
  const journalDir = join(runtimeDir, `${stateName}.vifs`);

  // The workers start now and load while xenstored is reached and the peers set up (a restart's
  // guests wait for the whole start; the workers are its longest part). Their failure is reported
  // where it was before, after those two.
  // SG/GSO on guest tx only where the whole path takes GSO frames (features.ts says which).
  const txOffloads = peerTakesGso(deps.peers?.kind ?? config.peer, config.datapath);
  const stats = StatsArena.create({ workers: config.workers, slotsPerWorker: VIFS_PER_WORKER });
  const createPool = deps.createPool ?? ((c: PoolContext) => createWorkerPool({ platform: c.platform.config, workers: c.workers, stats: c.stats, log: c.log, datapath: config.datapath, scatterGather: txOffloads }));
  const poolStarting = (async () => createPool({ platform, stats, workers: config.workers, log: log.child("pool") }))();
  // Handled here: a start failing before it awaits the pool must not leave an unhandled rejection,
  // and must close the pool once it is up (after that, the pool's place in the undo list is where
  // it was, so a later failure stops it before the peers and xenstore, as before).
  poolStarting.catch(() => {});
  let poolAwaited = false;
  undo.push(async () => {
    if (!poolAwaited) await (await poolStarting.catch(() => undefined))?.close();
  });

  let xs: XenstoreClient;
  try {
    xs = await XenstoreClient.connect({ path: platform.xenstorePath, onError: (e) => log.warn(`xenstore: ${e.message}`) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    const cure =
      platform.kind === "sim"
        ? `start it with 'npm run sim -- up --dir ${config.simDir}'`
        : platform.xenstorePath.startsWith("/dev/")
          ? "run qnicd as root in a domain with Linux's xenbus driver (it provides /dev/xen/xenbus), or where xenstored runs"
          : "start xenstored (e.g. systemctl start xenstored)";
    return fail(new DaemonStartError(`qnicd: cannot reach xenstored at ${platform.xenstorePath}: ${why}: ${cure}`));
  }
  undo.push(() => xs.close());
  phase("xenstore");
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
  phase("peers");

  let pool: WorkerPool;
  try {
    pool = await poolStarting;
  } catch (e) {
    return fail(e, "starting the worker pool: ");
  }
  poolAwaited = true;
  undo.push(() => pool.close());
  phase("workers (the rest of their start)");

  const started = Date.now();
  // The API is up before any vif is claimed, so a taken port fails the start without touching one.
  let serving: Backend | undefined;
  const vifs = (): VifSnapshot[] =>
    (serving?.devices() ?? []).map(({ dev, vif }) => ({
      domid: dev.domid,
      devid: dev.devid,
      backendState: dev.written ?? dev.state,
      frontendState: dev.frontendState,
      worker: vif?.queues[0]?.connection.worker ?? null,
      mac: vif?.config?.mac ?? null,
      features: vif?.queues.length && vif.config ? { ...vif.config.features, "multi-queue-num-queues": vif.queues.length, "feature-split-event-channels": vif.config.splitEventChannels } : {},
      slot: vif?.queues[0]?.connection.statsSlot ?? null,
      queues: vif?.queues.map((q) => ({ worker: q.connection.worker, slot: q.connection.statsSlot })),
      hostSide: vif?.peer ? { kind: vif.peer.kind, name: vif.peer.name } : null,
      settings: vif?.queues.length ? (vif.settings?.current ?? null) : null,
    }));
  const captures = new CaptureService({ ring: (w) => pool.captureRing?.(w), userAppl: versionLine(), log: log.child("capture") });
  undo.push(() => captures.close());
  const rates = new RateHistory();
  rates.start({
    arena: stats,
    names: () => {
      const held = new Map<number, { generation: number; name: string }>();
      for (const { dev, vif } of serving?.devices() ?? []) {
        // A multi-queue vif's queues each have a slot: queue 0 by the vif's name, the others as netback names their threads.
        vif?.queues.forEach((q, i) => {
          const slot = q.connection.statsSlot;
          held.set(slot.index, { generation: slot.generation, name: i === 0 ? vifName(dev.domid, dev.devid) : `${vifName(dev.domid, dev.devid)}-q${i}` });
        });
      }
      return held;
    },
  });
  undo.push(() => rates.stop());
  let http: HttpServer;
  try {
    const app = createHttpApp({
      captures,
      rates,
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
  phase("http");

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
      maxQueues: config.maxQueues === "auto" ? Math.min(8, config.workers) : config.maxQueues,
      ctrlRing: offersCtrlRing(config.datapath),
      multicastControl: multicastControlOffered(config.datapath),
      journalDir,
      stats,
    });
  } catch (e) {
    return fail(e, `watching /local/domain/${platform.domid}/backend/${config.backendType}: `);
  }
  undo.push(() => backend.stop());
  phase(`vifs (${backend.bus.list().length})`);
  serving = backend;
  // Counters saved into each vif's journal: a successor carries them on (a crash loses one second's).
  const saver = setInterval(() => backend.saveCounters(), 1000);
  saver.unref?.();

  let stopping: Promise<void> | null = null;
  const stop = (opts: { keepVifs?: boolean } = {}) =>
    (stopping ??= (async () => {
      clearInterval(saver);
      if (opts.keepVifs) {
        // Nothing written to xenstore; the workers finish the batch in hand (every response they
        // staged is published) and exit; the TAPs and journals stay for the next qnicd. Timed like
        // the start: the guests wait for the stop too.
        const took = new StartupClock();
        await backend.detach().catch((e) => log.error(`detaching the backend: ${(e as Error).message}`));
        took.mark("vifs");
        captures.close();
        rates.stop();
        await pool.close().catch((e) => log.error(`stopping the worker pool: ${(e as Error).message}`));
        took.mark("workers");
        await http.stop().catch(() => {});
        took.mark("http");
        peers.detach();
        xs.close();
        lock.release();
        platform.close();
        took.mark("the rest");
        log.info(`stopped for a restart: every vif left to the next qnicd (state in ${runtimeDir})`, { took: took.summary() });
        return;
      }
      // Vifs first (their guests see Closed), then the workers, then everything else.
      await backend.stop().catch((e) => log.error(`stopping the backend: ${(e as Error).message}`));
      captures.close();
      rates.stop();
      await pool.close().catch((e) => log.error(`stopping the worker pool: ${(e as Error).message}`));
      log.debug("workers stopped");
      await http.stop().catch(() => {});
      peers.close();
      xs.close();
      lock.release();
      platform.close();
      log.info("stopped: every vif closed, nothing left mapped or running");
    })());

  log.info(`serving ${backend.bus.root}`, { platform: platform.kind, workers: pool.size, peer: peers.kind, http: http.url, runtime: runtimeDir, started: startup.summary() });
  return { platform, xs, pool, backend: backend, http, stats, vifs, runtimeDir, stop };
}
