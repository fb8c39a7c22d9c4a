// TAP peers on a host that allows them (root, /dev/net/tun): created before InitWait under the
// name libxl's vif-bridge looks for, gone when the device or the daemon goes.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { accessSync, constants, readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";
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

test.skipIf(!tap)("--bridge naming a missing bridge is refused when the provisioner starts, with one line saying how to make it", () => {
  expect(() => new TapProvisioner({ bridge: `nobr${tag}` })).toThrow(`qnicd: --bridge nobr${tag}: no such bridge: create it (ip link add nobr${tag} type bridge) or drop --bridge`);
});

describe.skipIf(!tap)("a vif's mtu= (libxl's B/mtu) and its bridge's MTU", () => {
  const br1 = `qb${tag}1`;
  beforeAll(() => {
    Bun.spawnSync(["ip", "link", "add", br1, "type", "bridge"]);
    Bun.spawnSync(["ip", "link", "set", br1, "mtu", "1400"]);
    Bun.spawnSync(["ip", "link", "set", br1, "up"]);
  });
  afterAll(() => {
    Bun.spawnSync(["ip", "link", "del", br1]);
  });
  const sys = (n: string, f: string) => readFileSync(`/sys/class/net/${n}/${f}`, "utf8").trim();

  test("mtu sets the TAP's MTU; without one the TAP takes its bridge's (as vif-bridge); a bridge gone since the start is named and leaves no TAP", () => {
    const p = new TapProvisioner({ bridge: br1 });
    provisioners.push(p);
    p.create(`qt${tag}m`, { mtu: 9000 });
    expect(sys(`qt${tag}m`, "mtu")).toBe("9000");
    expect(basename(readlinkSync(`/sys/class/net/qt${tag}m/master`))).toBe(br1);
    p.create(`qt${tag}n`);
    expect(sys(`qt${tag}n`, "mtu")).toBe("1400");
    const gone = new TapProvisioner({ bridge: br1 });
    provisioners.push(gone);
    Bun.spawnSync(["ip", "link", "del", br1]);
    expect(() => gone.create(`qt${tag}o`)).toThrow(`joining bridge ${br1}: no such bridge: create it again, or restart qnicd without --bridge`);
    expect(interfaceExists(`qt${tag}o`)).toBe(false);
  });

  test("through the daemon: xl's mtu=9000 gives the vif a 9000-byte TAP, an invalid B/mtu is fatal for that vif only", async () => {
    host = await startSimHost();
    const cfg = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "tap", "--vifname-prefix", `qe${tag}x`, "--http", "127.0.0.1:0", "--workers", "1", "--on-exit", "close"], env: {} });
    const pool = new FakePool();
    daemon = await startDaemon(cfg, { createPool: async () => pool, log: createLogger({ level: "error", format: "text", write: () => {} }) });
    // The sim's xl writes what it is given, as libxl writes what its parser let through.
    const d = await host.ts.create("alice", { nics: [{ mtu: 9000 }, { mtu: 67 }], noWait: true });
    const deadline = Date.now() + 10_000;
    const err = `/local/domain/0/error/backend/vif/${d.domid}/1/error`;
    while ((!interfaceExists(`qe${tag}x${d.domid}.0`) || (await host.xs.tryRead(err)) === undefined) && Date.now() < deadline) await Bun.sleep(20);
    expect(sys(`qe${tag}x${d.domid}.0`, "mtu")).toBe("9000");
    expect(await host.xs.read(err)).toBe(`22 reading mtu: "67" is not an MTU from 68 to 65535`);
    expect(interfaceExists(`qe${tag}x${d.domid}.1`)).toBe(false);
  });
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
