// A simulated Xen host, the qnicd daemon on it and its netfront guests, for the daemon-level tests.
// Each test still says what it starts (startHost, startDaemon with its flags, guest, bridge); the
// fixture stops all of it after each test, whatever happened, in the order a dom0 sees things go:
//   1. what the test registered with cleanup() (its own backend or clients on the host), newest first
//   2. the guests' netfronts (a guest goes before its backend, as with xl destroy)
//   3. the daemon that is current, after any restarts; one stopped for a restart whose successor
//      never came up is taken over by a last one and stopped, so its TAPs and journals go too
//   4. rings the test wrote by hand (FakeFrontend), once nothing maps them any more
//   5. the host: xenstored, the hypervisor's shared memory and its run directory, which holds each
//      sim daemon's runtime directory (owner lock, vif journals); a runtime directory still there
//      afterwards fails the test, as a leak
//   6. bridges made with bridge()
// A step that throws does not skip the later ones: the first error is thrown at the end.
import { afterEach } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { loadConfig, type Config } from "../../src/config/index.ts";
import { startDaemon, type Daemon, type DaemonDeps } from "../../src/daemon.ts";
import { createLogger, type LogLevel } from "../../src/log.ts";
import { createNetfront, type ConnectionInfo, type Netfront, type NetfrontOptions } from "../../src/sim/netfront/index.ts";
import type { CreateOptions } from "../../src/sim/toolstack/toolstack.ts";
import { startSimHost, type SimHost } from "../backend/sim-host.ts";
import { canUseTap, ip, linkExists, uniqueIfName } from "../net/tap-helper.ts";
import type { FakeFrontend } from "../pool/fake-frontend.ts";

/** Root, /dev/net/tun and iproute2: what bridge() and the TAP peer need. */
export const canUseTapAndIp = () => canUseTap() && spawnSync("ip", ["-V"], { stdio: "ignore" }).status === 0;

export interface FixtureGuest {
  name: string;
  domid: number;
  /** `vif<domid>.0`, the daemon's name for its vif. */
  vif: string;
  nf: Netfront;
  info: ConnectionInfo;
}

export interface GuestOptions {
  /** What the toolstack creates (xl's config); default { vifs: 1 }. */
  domain?: CreateOptions;
  /** How long to wait for the netfront's Connected; default 5000 ms. */
  connectMs?: number;
}

export interface DaemonFixture {
  /** The host startHost() gave (throws before it). */
  readonly host: SimHost;
  /** The daemon that runs now: the last one startDaemon() or restartDaemon() gave (throws when none runs). */
  readonly daemon: Daemon;
  /** Every line the daemons of this test logged, at the level startDaemon() asked for. */
  readonly logs: string[];
  startHost(opts?: Parameters<typeof startSimHost>[0]): Promise<SimHost>;
  /**
   * qnicd in-process on the host: `--platform sim --sim-dir <host> --http 127.0.0.1:0`, then `flags`
   * (workers, peer, ...). No config file of the machine's is read. `deps` replaces parts of the
   * daemon (an injected pool); a restart hands its successor the same.
   */
  startDaemon(flags: readonly string[], opts?: { log?: LogLevel; deps?: Omit<DaemonDeps, "log"> }): Promise<Daemon>;
  /**
   * A restart as `systemctl restart` does it: the daemon stops leaving every vif to its successor
   * (keepVifs), `between` runs while none runs (given the runtime directory), and a new daemon
   * starts with the same configuration and takes the vifs over.
   */
  restartDaemon(between?: (runtimeDir: string) => unknown): Promise<Daemon>;
  /** A full stop of the daemon mid-test (every vif closed); the test goes on without one. */
  stopDaemon(): Promise<void>;
  /**
   * A domain created by the toolstack with a sim netfront on its vif 0, connected through the
   * daemon. The netfront's reset and probe waits are 2 s (Linux waits 5 s a round) so a
   * misbehaving backend fails the test in seconds; `netfront` adds to or overrides that.
   */
  guest(name: string, netfront?: Partial<Omit<NetfrontOptions, "dir" | "domid">>, opts?: GuestOptions): Promise<FixtureGuest>;
  /** A sim netfront on the host with exactly the options given (Linux's waits), not yet connected. */
  netfront(opts: Omit<NetfrontOptions, "dir" | "devid"> & { devid?: number }): Promise<Netfront>;
  /** Hand-written rings (a FakeFrontend) to close once the daemon is stopped. */
  keepRings<T extends FakeFrontend>(rings: T): T;
  /** A Linux bridge private to this run, up, removed last; no IPv6 on it (its router solicitations would only be noise in the guests' rx). */
  bridge(tag: string): string;
  /** Something the test built on the host, undone first (newest first). */
  cleanup(fn: () => unknown): void;
  /** The daemon's /vifs/<name> as JSON, typed as the test reads it. */
  vif<T>(name: string): Promise<T>;
  /** Stops everything now, as after the test (for a test that sets up twice). */
  teardown(): Promise<void>;
}

/** Call at the top of a test file (or a describe block): registers the teardown after each test. */
export function daemonFixture(): DaemonFixture {
  let host: SimHost | undefined;
  type Recipe = { config: Config; level: LogLevel; deps: Omit<DaemonDeps, "log"> };
  let current: (Recipe & { daemon: Daemon }) | undefined;
  // Set between a restart's stop and its successor's start: the vifs wait for a daemon.
  let orphaned: Recipe | undefined;
  const runtimeDirs = new Set<string>();
  const fronts: Netfront[] = [];
  const rings: FakeFrontend[] = [];
  const bridges: string[] = [];
  const cleanups: (() => unknown)[] = [];
  const logs: string[] = [];

  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`daemon fixture: ${what}`);
    return v;
  };
  const launch = async (recipe: Recipe) => {
    const daemon = await startDaemon(recipe.config, { ...recipe.deps, log: createLogger({ level: recipe.level, format: "text", write: (l) => logs.push(l) }) });
    runtimeDirs.add(daemon.runtimeDir);
    current = { ...recipe, daemon };
    return daemon;
  };

  const fx: DaemonFixture = {
    get host() {
      return need(host, "no host: call startHost() first");
    },
    get daemon() {
      return need(current, "no daemon runs: call startDaemon() first").daemon;
    },
    logs,
    async startHost(opts) {
      if (host) throw new Error("daemon fixture: a host is already started");
      host = await startSimHost(opts);
      return host;
    },
    async startDaemon(flags, opts = {}) {
      if (current) throw new Error("daemon fixture: a daemon already runs (restartDaemon() replaces it)");
      const argv = ["--platform", "sim", "--sim-dir", fx.host.dir, "--http", "127.0.0.1:0", ...flags];
      return launch({ config: loadConfig({ argv, env: {}, defaultConfigFile: null }), level: opts.log ?? "debug", deps: opts.deps ?? {} });
    },
    async restartDaemon(between) {
      const { daemon, ...recipe } = need(current, "no daemon to restart");
      await daemon.stop({ keepVifs: true });
      current = undefined;
      orphaned = recipe;
      await between?.(daemon.runtimeDir);
      const next = await launch(recipe);
      orphaned = undefined;
      return next;
    },
    async stopDaemon() {
      const { daemon } = need(current, "no daemon to stop");
      current = undefined;
      await daemon.stop();
    },
    async guest(name, netfront = {}, opts = {}) {
      const d = await fx.host.ts.create(name, opts.domain ?? { vifs: 1 });
      const nf = await fx.netfront({ domid: d.domid, resetWaitMs: 2000, probeWaitMs: 2000, ...netfront });
      const info = await nf.whenConnected(opts.connectMs ?? 5000);
      return { name, domid: d.domid, vif: `vif${d.domid}.0`, nf, info };
    },
    async netfront(opts) {
      const nf = await createNetfront({ dir: fx.host.dir, devid: 0, ...opts });
      fronts.push(nf);
      return nf;
    },
    keepRings(r) {
      rings.push(r);
      return r;
    },
    bridge(tag) {
      const name = uniqueIfName(tag);
      ip("link", "add", name, "type", "bridge");
      bridges.push(name);
      writeFileSync(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1");
      ip("link", "set", "dev", name, "up");
      return name;
    },
    cleanup(fn) {
      cleanups.push(fn);
    },
    async vif<T>(name: string) {
      return (await (await fetch(`${fx.daemon.http.url}/vifs/${name}`)).json()) as T;
    },
    async teardown() {
      const errors: unknown[] = [];
      const step = async (f: () => unknown) => {
        try {
          await f();
        } catch (e) {
          errors.push(e);
        }
      };
      for (const c of cleanups.splice(0).reverse()) await step(c);
      for (const f of fronts.splice(0)) await step(() => f.close());
      if (current) {
        const { daemon } = current;
        current = undefined;
        await step(() => daemon.stop());
      } else if (orphaned && host) {
        const recipe = orphaned;
        await step(async () => (await launch(recipe)).stop());
        current = undefined;
      }
      orphaned = undefined;
      for (const r of rings.splice(0)) await step(() => r.close());
      if (host) {
        const h = host;
        host = undefined;
        await step(() => h.close());
        for (const dir of runtimeDirs) if (existsSync(dir)) errors.push(new Error(`qnicd's runtime directory ${dir} was left behind`));
      }
      runtimeDirs.clear();
      for (const b of bridges.splice(0).reverse()) await step(() => linkExists(b) && ip("link", "del", b));
      logs.length = 0;
      // The first failure is the cause; any later one is shown, not lost.
      for (const e of errors.slice(1)) console.error(`daemon fixture teardown, also: ${(e as Error)?.message ?? e}`);
      if (errors.length > 0) throw errors[0];
    },
  };
  afterEach(() => fx.teardown());
  return fx;
}
