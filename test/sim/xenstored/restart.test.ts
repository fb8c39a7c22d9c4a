// Restart survival (like xenstored live update) and the foreground daemon entry point.
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { simPaths } from "../../../src/sim/paths.ts";
import { RawClient, sleep, startTestHost, XsOp, type TestHost } from "./helpers.ts";

const BUN = process.execPath;
const MAIN = resolve(import.meta.dir, "../../../src/sim/xenstored/main.ts");

let host: TestHost | undefined;
const dirs: string[] = [];
/** xenstored processes a test started: killed after it whatever failed, so none outlives the test. */
const procs: { kill(): void; exited: Promise<number> }[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.kill();
    await p.exited;
  }
  await host?.cleanup();
  host = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("the tree, permissions, binary values, child order and introduced domains survive a restart", async () => {
  host = await startTestHost();
  let d0 = await host.dom0();
  await d0.mkdir("/local/domain/5");
  await d0.setPerms("/local/domain/5", ["n5", "r0"]);
  await d0.write("/order/z", "1");
  await d0.write("/order/a", "2");
  await d0.write("/bin", Buffer.from([0, 255, 1]));
  await d0.setPerms("@introduceDomain", ["n0", "r5"]);
  let g = await host.guest(5);
  await g.write("device/vif/0/state", "1");
  await host.restart();

  d0 = await host.dom0();
  expect(await d0.ls("/order")).toEqual(["z", "a"]);
  expect((await d0.call(XsOp.READ, "/bin\0")).payload).toEqual(Buffer.from([0, 255, 1]));
  expect(await d0.getPerms("/local/domain/5/device/vif/0/state")).toEqual(["n5", "r0"]);
  expect(await d0.getPerms("@introduceDomain")).toEqual(["n0", "r5"]);
  expect(await d0.read("/local/domain/0/name")).toBe("Domain-0");
  // The guest's socket is back and it is still domain 5.
  expect(existsSync(simPaths(host.dir).domainSocket(5))).toBe(true);
  g = await RawClient.connect(simPaths(host.dir).domainSocket(5));
  expect(await g.read("device/vif/0/state")).toBe("1");
  expect(await g.err(XsOp.READ, "/tool\0")).toBe("EACCES");
  g.close();
  expect(host.logs.some((l) => l.startsWith("restored"))).toBe(true);
});

test("watches and transactions do not survive; clients re-register and get the registration event", async () => {
  host = await startTestHost();
  // Not a host-tracked client: the daemon itself must drop it on shutdown.
  let w = await RawClient.connect(host.xs.socketPath);
  await w.watch("/x", "t");
  const tx = await w.txStart();
  await host.restart();
  await w.closed;
  expect(w.ended).toBe(true);
  w = await host.dom0();
  expect(await w.err(XsOp.READ, "/\0", tx)).toBe("ENOENT");
  await w.watch("/x", "t");
  await w.waitEvent("/x", "t");
});

test("the state file is consumed on start: a second start without a clean stop begins fresh", async () => {
  host = await startTestHost();
  const d0 = await host.dom0();
  await d0.write("/persisted", "1");
  await host.restart();
  expect(existsSync(simPaths(host.dir).xenstoredState)).toBe(false);
  const c = await host.dom0();
  expect(await c.read("/persisted")).toBe("1");
});

test("an unreadable state file is set aside and the daemon starts with a fresh tree", async () => {
  const dir = mkdtempSync(join(tmpdir(), "qnicd-xs-"));
  const paths = simPaths(dir);
  mkdirSync(join(dir, "xenstored"), { recursive: true });
  writeFileSync(paths.xenstoredState, "{not json");
  host = await startTestHost(undefined, dir);
  const d0 = await host.dom0();
  expect(await d0.ls("/")).toEqual(["tool", "local"]);
  expect(existsSync(`${paths.xenstoredState}.bad`)).toBe(true);
});

async function waitFor(cond: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await sleep(20);
  }
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`main.ts runs in the foreground, writes its pid file, and on ${signal} exits 0 removing socket and pid file`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "qnicd-xsd-"));
    dirs.push(dir);
    const paths = simPaths(dir);
    const run = () => {
      const p = Bun.spawn([BUN, MAIN, "--dir", dir], { stdout: "pipe", stderr: "pipe" });
      procs.push(p);
      return p;
    };
    let proc = run();
    await waitFor(() => existsSync(paths.xenstoredPidFile));
    expect(Number(readFileSync(paths.xenstoredPidFile, "utf8"))).toBe(proc.pid);
    let c = await RawClient.connect(paths.xenstoredSocket);
    await c.call(XsOp.INTRODUCE, "3\0" + "1\0" + "2\0");
    await c.write("/survives", "yes");
    proc.kill(signal);
    expect(await proc.exited).toBe(0);
    const stderr = await new Response(proc.stderr).text();
    expect(stderr).toContain("shutting down");
    expect(existsSync(paths.xenstoredSocket)).toBe(false);
    expect(existsSync(paths.domainSocket(3))).toBe(false);
    expect(existsSync(paths.xenstoredPidFile)).toBe(false);
    expect(existsSync(paths.xenstoredState)).toBe(true);

    proc = run();
    await waitFor(() => existsSync(paths.xenstoredPidFile));
    c = await RawClient.connect(paths.xenstoredSocket);
    expect(await c.read("/survives")).toBe("yes");
    expect(existsSync(paths.domainSocket(3))).toBe(true);
    c.close();
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  });
}

test("main.ts without --dir prints usage and exits 2", async () => {
  const proc = Bun.spawn([BUN, MAIN], { stdout: "pipe", stderr: "pipe" });
  expect(await proc.exited).toBe(2);
  expect(await new Response(proc.stderr).text()).toContain("usage");
});
