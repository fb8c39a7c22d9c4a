// `sim up|down|xl` as a user runs them: separate processes, a detached xenstored, the real sim
// hypervisor. Each test has its own run directory and brings the host down again.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simPaths } from "../../../src/sim/paths.ts";
import { runningXenstored, stopHost } from "../../../src/sim/toolstack/host.ts";
import { XenstoreClient } from "../../../src/xenstore/index.ts";

const CLI = join(import.meta.dir, "../../../src/sim/cli.ts");
let dir: string;

/** Runs the CLI as its own process. Async, so a backend played by this test keeps answering meanwhile. */
async function sim(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([process.execPath, CLI, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

/** Exited (a zombie waiting for init to reap it counts: it no longer runs anything). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] === "Z";
  } catch {
    return true;
  }
}

function socketsUnder(d: string): string[] {
  if (!existsSync(d)) return [];
  const out: string[] = [];
  for (const e of readdirSync(d, { recursive: true }) as string[]) {
    const p = join(d, e);
    try {
      if (statSync(p).isSocket()) out.push(p);
    } catch {}
  }
  return out;
}

beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), "qnicd-cli-")), "host");
});
afterEach(async () => {
  // Whatever a failed test left behind goes, so no daemon outlives the test run.
  if (runningXenstored(dir) !== undefined || existsSync(simPaths(dir).shmDir)) await stopHost(dir, { log: () => {} });
  rmSync(join(dir, ".."), { recursive: true, force: true });
});

test("up starts a detached xenstored and prints the socket; down leaves nothing running or mapped", async () => {
  const up = await sim(["up", "--dir", dir]);
  expect(up.err).toBe("");
  expect(up.code).toBe(0);
  const p = simPaths(dir);
  expect(up.out).toContain(`dom0 xenstore socket: ${p.xenstoredSocket}\n`);
  expect(up.out).toContain(`export XENSTORED_PATH=${p.xenstoredSocket}\n`);
  const pid = runningXenstored(dir)!;
  expect(pid).toBeGreaterThan(1);
  // The daemon outlived the `sim up` process that started it, and answers.
  const xs = await XenstoreClient.connect({ path: p.xenstoredSocket, reconnect: { enabled: false } });
  expect(await xs.read("/local/domain/0/name")).toBe("Domain-0");
  xs.close();
  expect(existsSync(p.shmDir)).toBe(true);

  expect((await sim(["up", "--dir", dir])).out).toContain(`already running: xenstored pid ${pid}`);
  expect((await sim(["xl", "--dir", dir, "create", "g1", "--vifs", "1", "--no-wait"])).code).toBe(0);
  expect((await sim(["xl", "--dir", dir, "create", "g2", "--no-wait"])).code).toBe(0);
  // A guest's own xenstored socket exists while it is introduced.
  expect(socketsUnder(dir).length).toBe(3);

  const down = await sim(["down", "--dir", dir]);
  expect(down.err).toBe("");
  expect(down.code).toBe(0);
  expect(down.out).toContain("destroyed g1, g2");
  expect(gone(pid)).toBe(true);
  expect(existsSync(p.shmDir)).toBe(false);
  expect(socketsUnder(dir)).toEqual([]);
  expect(existsSync(p.evtchnDir)).toBe(false);
  expect(existsSync(p.xenstoredPidFile)).toBe(false);
  expect(readdirSync("/dev/shm").filter((f) => f.startsWith(p.shmDir.slice("/dev/shm/".length)))).toEqual([]);
});

test("xl create waits for a backend by default, list shows it, network-detach/destroy clean up", async () => {
  expect((await sim(["up", "--dir", dir])).code).toBe(0);
  const xs = await XenstoreClient.connect({ path: simPaths(dir).xenstoredSocket });
  // A minimal backend: InitWait on state 1, Closed on state 5.
  await xs.watch("/local/domain/0/backend/vif", async (path) => {
    if (!path.endsWith("/state")) return;
    const s = await xs.tryRead(path);
    if (s === "1") await xs.write(path, "2");
    if (s === "5") await xs.write(path, "6");
  });
  try {
    const c = await sim(["xl", "--dir", dir, "create", "web", "--vifs", "2", "--memory", "16", "--vcpus", "2"]);
    expect(c.err).toBe("");
    expect(c.code).toBe(0);
    expect(await xs.read("/local/domain/0/backend/vif/1/1/hotplug-status")).toBe("connected");
    const list = await sim(["xl", "--dir", dir, "list"]);
    expect(list.out.split("\n")[0]).toBe("Name                                        ID   Mem VCPUs\tState\tTime(s)");
    expect(list.out).toMatch(/\nweb +1 +16 +2 +-b----/);
    expect(await xs.directory("/local/domain/1/cpu")).toEqual(["0", "1"]);
    expect((await sim(["xl", "--dir", dir, "network-detach", "web", "1"])).code).toBe(0);
    expect(await xs.tryRead("/local/domain/0/backend/vif/1/1")).toBeUndefined();
    const attach = await sim(["xl", "--dir", dir, "network-attach", "web", "mac=00:16:3e:01:02:03", "bridge=br1", "rate=1MB/s@20ms"]);
    expect(attach.err).toBe("");
    expect(await xs.read("/local/domain/0/backend/vif/1/1/bridge")).toBe("br1");
    expect(await xs.read("/local/domain/0/backend/vif/1/1/rate")).toBe("20000,20000");
    expect((await sim(["xl", "--dir", dir, "destroy", "web"])).code).toBe(0);
    expect(await xs.tryRead("/local/domain/1")).toBeUndefined();
    expect((await sim(["xl", "--dir", dir, "list"])).out).not.toContain("web");
  } finally {
    xs.close();
  }
  expect((await sim(["down", "--dir", dir])).code).toBe(0);
});

test("bad values are one line naming the option, the value and what is allowed", async () => {
  const cases: [string[], string][] = [
    [["xl", "--dir", dir, "create", "g", "--vifs", "abc"], 'sim xl: invalid --vifs "abc": expected an integer from 0 to 64\n'],
    [["xl", "--dir", dir, "create", "g", "--vifs", "65"], 'sim xl: invalid --vifs "65": expected an integer from 0 to 64\n'],
    [["xl", "--dir", dir, "create", "g", "--vcpus", "0"], 'sim xl: invalid --vcpus "0": expected an integer from 1 to 64\n'],
    [["xl", "--dir", dir, "create", "g", "--backend-type", "tap"], 'sim xl: invalid --backend-type "tap": expected one of vif, qnic\n'],
    [["xl", "--dir", dir, "create", "123"], 'sim xl: invalid domain name "123": expected a domain name (letters, digits, \'_\', \'.\', \'-\'; at most 64; not only digits)\n'],
    [["xl", "--dir", dir, "network-attach", "g", "mac=01:00:5e:00:00:01"], 'sim xl: invalid mac "01:00:5e:00:00:01": expected a unicast MAC like 00:16:3e:12:34:56\n'],
    [["xl", "--dir", dir, "network-attach", "g", "colour=red"], 'sim xl: network-attach: unknown vif setting "colour=red": expected key=value with key one of mac, bridge, mtu, vifname, script, backend, rate\n'],
    [["xl", "--dir", dir, "network-attach", "g", "rate=10MB"], "sim xl: config parsing error in vif: invalid rate in `10MB'\n"],
    [["xl", "--dir", dir, "create", "g", "--bogus"], "sim xl: unknown option --bogus (see --help)\n"],
    [["xl", "--dir", dir, "frobnicate"], 'sim xl: unknown xl command "frobnicate": expected one of create, destroy, list, network-attach, network-detach\n'],
    [["up", "--dir", ""], 'sim up: invalid --dir "": expected a directory path\n'],
    [["sideways"], 'sim sideways: unknown command "sideways": expected up, down or xl (see --help)\n'],
  ];
  for (const [args, err] of cases) {
    const r = await sim(args);
    expect({ args, err: r.err, code: r.code }).toEqual({ args, err, code: 2 });
  }
  // Nothing was started by any of them.
  expect(existsSync(simPaths(dir).shmDir)).toBe(false);
});

test("xl against a host that is not up says so in one line", async () => {
  const r = await sim(["xl", "--dir", dir, "list"]);
  expect(r.code).toBe(1);
  expect(r.err).toBe(`the simulated host is not running in ${dir}: run 'sim up --dir ${dir}' first\n`);
});

test("--help everywhere", async () => {
  for (const args of [["--help"], ["up", "--help"], ["down", "--help"], ["xl", "--help"], ["xl", "create", "--help"], ["xl", "--dir", dir, "list", "--help"]]) {
    const r = await sim(args);
    expect({ args, code: r.code, err: r.err }).toEqual({ args, code: 0, err: "" });
    expect(r.out).toMatch(/^usage: sim/);
  }
});

test("the default run directory is $XDG_RUNTIME_DIR/qnicd-sim", async () => {
  const xdg = join(dir, "..", "xdg");
  const up = await sim(["up"], { XDG_RUNTIME_DIR: xdg });
  expect(up.code).toBe(0);
  const expected = join(xdg, "qnicd-sim");
  expect(up.out).toContain(`export XENSTORED_PATH=${join(expected, "xenstored", "socket")}`);
  const pid = Number(readFileSync(simPaths(expected).xenstoredPidFile, "utf8"));
  expect((await sim(["down"], { XDG_RUNTIME_DIR: xdg })).code).toBe(0);
  expect(gone(pid)).toBe(true);
  expect(existsSync(simPaths(expected).shmDir)).toBe(false);
});

test("xl's backend= key: create --backend NAME and network-attach backend=DOMID put the vif's backend in that domain with libxl's permissions", async () => {
  expect((await sim(["up", "--dir", dir])).code).toBe(0);
  expect((await sim(["xl", "--dir", dir, "create", "driver"])).code).toBe(0);
  const c = await sim(["xl", "--dir", dir, "create", "g", "--vifs", "1", "--backend", "driver", "--no-wait"]);
  expect(c.code).toBe(0);
  const a = await sim(["xl", "--dir", dir, "network-attach", "g", "backend=1", "--no-wait"]);
  expect(a.code).toBe(0);
  const xs = await XenstoreClient.connect({ path: simPaths(dir).xenstoredSocket, reconnect: { enabled: false } });
  try {
    for (const devid of [0, 1]) {
      const B = `/local/domain/1/backend/vif/2/${devid}`;
      const F = `/local/domain/2/device/vif/${devid}`;
      expect(await xs.read(`${F}/backend`)).toBe(B);
      expect(await xs.read(`${F}/backend-id`)).toBe("1");
      expect(await xs.read(`${B}/frontend-id`)).toBe("2");
      // libxl: the backend domain owns B and the guest may read it; the other way round for F.
      expect(await xs.getPerms(B)).toEqual([{ domid: 1, access: "n" }, { domid: 2, access: "r" }]);
      expect(await xs.getPerms(F)).toEqual([{ domid: 2, access: "n" }, { domid: 1, access: "r" }]);
    }
  } finally {
    xs.close();
  }
  // As libxl resolving backend=: an unknown domain fails before anything is created.
  const bad = await sim(["xl", "--dir", dir, "create", "h", "--vifs", "1", "--backend", "nosuch", "--no-wait"]);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("nosuch is an invalid domain identifier");
  expect((await sim(["xl", "--dir", dir, "list"])).out).not.toContain("\nh ");
  expect((await sim(["down", "--dir", dir])).code).toBe(0);
}, 60_000);
