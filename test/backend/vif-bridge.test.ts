// A vif's bridge= (libxl's B/bridge, "xenbr0" when the config names none) where qnicd puts TAPs on
// bridges itself (--bridge): the vif's own bridge wins over --bridge, as vif-bridge would honour it
// under netback; a bridge that does not exist is one error naming it, for that vif only, and no
// TAP is left; a B/bridge that is no interface name is refused before it reaches sysfs. Needs root
// and /dev/net/tun for the TAP parts (as in CI).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { accessSync, constants, readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";
import { parseBridgeNode } from "../../src/backend/vif.ts";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { interfaceExists, TapProvisioner } from "../../src/net/peer-provisioner-tap.ts";
import { FakePool } from "./fake-pool.ts";
import { startSimHost, type SimHost } from "./sim-host.ts";

function tapAllowed(): boolean {
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}
const tap = tapAllowed();
const tag = (process.pid % 10000).toString(36);

test("B/bridge is read as an interface name: 1 to 15 bytes, no '/', ':' or whitespace", () => {
  for (const ok of ["xenbr0", "br-lan", "a", "b".repeat(15)]) expect(parseBridgeNode(ok)).toBe(ok);
  for (const bad of ["", "b".repeat(16), "br/0", "br 0", "br\t0", "br:0", ".", "..", "é".repeat(8), "br\n0"]) expect(parseBridgeNode(bad)).toBeUndefined();
});

describe.skipIf(!tap)("TAPs on the vif's own bridge", () => {
  const brDefault = `qvd${tag}`;
  const brVif = `qvv${tag}`;
  const ip = (...a: string[]) => Bun.spawnSync(["ip", ...a]);
  const master = (n: string) => basename(readlinkSync(`/sys/class/net/${n}/master`));
  const mtu = (n: string) => readFileSync(`/sys/class/net/${n}/mtu`, "utf8").trim();
  let host: SimHost | undefined;
  let daemon: Daemon | undefined;
  const provisioners: TapProvisioner[] = [];
  beforeAll(() => {
    for (const [br, m] of [[brDefault, "1500"], [brVif, "1400"]] as const) {
      ip("link", "add", br, "type", "bridge");
      ip("link", "set", br, "mtu", m);
    }
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    for (const p of provisioners.splice(0)) p.close();
    await host?.close();
    host = undefined;
  });
  afterAll(() => {
    ip("link", "del", brDefault);
    ip("link", "del", brVif);
  });

  test("the provisioner: the vif's bridge wins over --bridge and gives the TAP its MTU; a missing one is named with the cure and leaves no TAP; without --bridge it is the hotplug script's", () => {
    const p = new TapProvisioner({ bridge: brDefault });
    provisioners.push(p);
    expect(p.joinsBridges).toBe(true);
    p.create(`qvt${tag}a`, { bridge: brVif });
    expect(master(`qvt${tag}a`)).toBe(brVif);
    expect(mtu(`qvt${tag}a`)).toBe("1400");
    p.create(`qvt${tag}b`);
    expect(master(`qvt${tag}b`)).toBe(brDefault);
    expect(() => p.create(`qvt${tag}c`, { bridge: `qvx${tag}` })).toThrow(
      `joining bridge qvx${tag}, which the vif's config names (bridge=, B/bridge): no such bridge: create it (ip link add qvx${tag} type bridge), or give the vif an existing bridge= (libxl writes xenbr0 when its config names none)`,
    );
    expect(interfaceExists(`qvt${tag}c`)).toBe(false);
    const unmanaged = new TapProvisioner({ bridge: null });
    provisioners.push(unmanaged);
    expect(unmanaged.joinsBridges).toBe(false);
  });

  test("through the daemon and the sim's xl: bridge= puts the TAP on that bridge; a missing bridge or an invalid name fails that vif alone with an error node; mtu= still sets the MTU", async () => {
    host = await startSimHost();
    const prefix = `qvd${tag}x`;
    const cfg = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "tap", "--bridge", brDefault, "--vifname-prefix", prefix, "--http", "127.0.0.1:0", "--workers", "1", "--on-exit", "close"], env: {} });
    const pool = new FakePool();
    daemon = await startDaemon(cfg, { createPool: async () => pool, log: createLogger({ level: "error", format: "text", write: () => {} }) });
    // The sim's xl writes B/bridge for every vif, xenbr0 unless told, as libxl does.
    const d = await host.ts.create("alice", { nics: [{ bridge: brVif, mtu: 9000 }, { bridge: `qvx${tag}` }, { bridge: "not a name" }, { bridge: brDefault }], noWait: true });
    const err = (devid: number) => `/local/domain/0/error/backend/vif/${d.domid}/${devid}/error`;
    const deadline = Date.now() + 10_000;
    const settled = async () => interfaceExists(`${prefix}${d.domid}.0`) && interfaceExists(`${prefix}${d.domid}.3`) && (await host!.xs.tryRead(err(1))) !== undefined && (await host!.xs.tryRead(err(2))) !== undefined;
    while (!(await settled()) && Date.now() < deadline) await Bun.sleep(20);
    expect(master(`${prefix}${d.domid}.0`)).toBe(brVif);
    expect(mtu(`${prefix}${d.domid}.0`)).toBe("9000");
    expect(master(`${prefix}${d.domid}.3`)).toBe(brDefault);
    expect(await host.xs.read(err(1))).toBe(
      `19 creating interface: joining bridge qvx${tag}, which the vif's config names (bridge=, B/bridge): no such bridge: create it (ip link add qvx${tag} type bridge), or give the vif an existing bridge= (libxl writes xenbr0 when its config names none)`,
    );
    expect(await host.xs.read(err(2))).toBe(`22 reading bridge: "not a name" is not a bridge name`);
    for (const devid of [1, 2]) {
      expect(interfaceExists(`${prefix}${d.domid}.${devid}`)).toBe(false);
      expect(await host.xs.read(`/local/domain/0/backend/vif/${d.domid}/${devid}/state`)).toBe("5"); // Closing, never InitWait: it cannot connect
    }
    expect(pool.count("connect")).toBe(0);
  });
});
