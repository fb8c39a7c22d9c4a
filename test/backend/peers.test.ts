// TAP peers on a host that allows them (root, /dev/net/tun): created before InitWait under the
// name libxl's vif-bridge looks for, gone when the device or the daemon goes.
import { afterEach, expect, test } from "bun:test";
import { accessSync, constants, readFileSync } from "node:fs";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { interfaceExists, TapProvisioner } from "../../src/net/peer-provisioner-tap.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { FakePool } from "./fake-pool.ts";
import { ScriptedFrontend } from "./scripted-frontend.ts";
import { startSimHost, until, type SimHost } from "./sim-host.ts";

function tapAllowed(): boolean {
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}
const tap = tapAllowed();

let host: SimHost | undefined;
let daemon: Daemon | undefined;
const provisioners: TapProvisioner[] = [];
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  for (const p of provisioners.splice(0)) p.close();
  await host?.close();
  host = undefined;
});

// Names unique to this test run (not the default vif<domid>.<devid>, which a real backend or a
// parallel run may hold), so nothing can collide; the default name is covered in handshake.test.ts.
const tag = (process.pid % 10000).toString(36);

test("without a usable /dev/net/tun, --peer tap fails with one line naming the alternatives", () => {
  expect(() => new TapProvisioner({ bridge: null, device: "/nonexistent/tun" })).toThrow(
    "qnicd: --peer tap: cannot use /nonexistent/tun (ENOENT): run qnicd as root (or with CAP_NET_ADMIN and the tun module loaded), or choose --peer switch or --peer null",
  );
});

test.skipIf(!tap)("a TAP exists from create() until destroy()", () => {
  const p = new TapProvisioner({ bridge: null });
  provisioners.push(p);
  const name = `qt${tag}a`;
  const peer = p.create(name);
  expect(peer).toMatchObject({ kind: "tap", name });
  expect(peer.fd).toBeGreaterThan(2);
  expect(interfaceExists(name)).toBe(true);
  p.destroy(peer);
  expect(interfaceExists(name)).toBe(false);
});

test.skipIf(!tap)("a TAP gets netback's fe:ff:ff:ff:ff:ff, so a bridge never takes its address and dom0's MAC stays put across detach and attach", () => {
  const p = new TapProvisioner({ bridge: null });
  provisioners.push(p);
  const name = `qt${tag}m`;
  p.create(name);
  expect(readFileSync(`/sys/class/net/${name}/address`, "utf8").trim()).toBe("fe:ff:ff:ff:ff:ff");
});

test.skipIf(!tap)("a name another interface holds is refused with a one-line reason", () => {
  const p = new TapProvisioner({ bridge: null });
  provisioners.push(p);
  expect(() => p.create("lo")).toThrow(/^creating TAP lo: E\w+/);
  p.create(`qt${tag}b`);
  expect(() => p.create(`qt${tag}b`)).toThrow(/already has a TAP by that name/);
});

test.skipIf(!tap)("a missing bridge is named in the error and the TAP is not left behind", () => {
  const p = new TapProvisioner({ bridge: `nobr${tag}` });
  provisioners.push(p);
  expect(() => p.create(`qt${tag}c`)).toThrow(/adding TAP .* to bridge nobr\w+: E\w+/);
  expect(interfaceExists(`qt${tag}c`)).toBe(false);
});

test.skipIf(!tap)("--peer tap: the daemon creates <prefix><domid>.<devid> before InitWait, B/vifname overrides it, both go on stop", async () => {
  host = await startSimHost();
  const cfg = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "tap", "--vifname-prefix", `qd${tag}x`, "--http", "127.0.0.1:0", "--workers", "1"], env: {} });
  const pool = new FakePool();
  daemon = await startDaemon(cfg, { createPool: async () => pool, log: createLogger({ level: "error", format: "text", write: () => {} }) });
  const vifname = `qv${tag}`;
  const d = await host.ts.create("alice", { nics: [{}, { vifname }] });
  const names = [`qd${tag}x${d.domid}.0`, vifname];
  // Already there when libxl's wait for InitWait returns (it would run vif-bridge now).
  for (const n of names) expect(interfaceExists(n)).toBe(true);
  const f = new ScriptedFrontend(await host.guestClient(d.domid), d.domid, 0);
  await f.connect();
  await f.waitBackend(S.Connected);
  expect(pool.specs[0]!.peer).toMatchObject({ kind: "tap", name: names[0] });
  await daemon.stop();
  daemon = undefined;
  for (const n of names) expect(interfaceExists(n)).toBe(false);
});

test.skipIf(!tap)("a vif removed by the toolstack takes its TAP with it", async () => {
  host = await startSimHost();
  const cfg = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "tap", "--vifname-prefix", `qd${tag}x`, "--http", "127.0.0.1:0", "--workers", "1"], env: {} });
  daemon = await startDaemon(cfg, { createPool: async () => new FakePool(), log: createLogger({ level: "error", format: "text", write: () => {} }) });
  const d = await host.ts.create("alice", { vifs: 1 });
  expect(interfaceExists(`qd${tag}x${d.domid}.0`)).toBe(true);
  await host.ts.networkDetach(String(d.domid), "0");
  await until("TAP removed", () => !interfaceExists(`qd${tag}x${d.domid}.0`));
});

test("an invalid B/vifname is fatal for that vif", async () => {
  host = await startSimHost();
  const d = await host.ts.create("alice", { nics: [{ vifname: "bad/name" }], noWait: true });
  const cfg = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], env: {} });
  daemon = await startDaemon(cfg, { createPool: async () => new FakePool(), log: createLogger({ level: "error", format: "text", write: () => {} }) });
  const f = new ScriptedFrontend(host.xs, d.domid, 0);
  await f.waitBackend(S.Closing);
  expect(await host.xs.read(`/local/domain/0/error/backend/vif/${d.domid}/0/error`)).toBe(`22 reading vifname: "bad/name" is not a valid interface name`);
  // The frontend still sits at Initialising: that must not make the backend retry in a loop.
  await Bun.sleep(100);
  await daemon.backend.idle();
  expect(await f.backendState()).toBe(S.Closing);
});
