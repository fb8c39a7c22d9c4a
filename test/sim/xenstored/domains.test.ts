// Domain management over the wire: INTRODUCE / RELEASE and the per-guest sockets, plus CONTROL.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { simPaths } from "../../../src/sim/paths.ts";
import { RawClient, sleep, startTestHost, strings, text, XsOp, type TestHost } from "./helpers.ts";

let host: TestHost;
let d0: RawClient;
beforeEach(async () => {
  host = await startTestHost();
  d0 = await host.dom0();
});
afterEach(async () => {
  await host.cleanup();
});

const introduced = async (domid: number) => text(await d0.call(XsOp.IS_DOMAIN_INTRODUCED, `${domid}\0`));

test("INTRODUCE creates the guest's socket, whose connections are that domain", async () => {
  const sock = simPaths(host.dir).domainSocket(12);
  expect(existsSync(sock)).toBe(false);
  expect(await introduced(12)).toBe("F\0");
  await d0.call(XsOp.INTRODUCE, "12\0" + "4096\0" + "3\0");
  expect(existsSync(sock)).toBe(true);
  expect(await introduced(12)).toBe("T\0");
  const g = await RawClient.connect(sock);
  await d0.mkdir("/local/domain/12");
  await d0.setPerms("/local/domain/12", ["n12"]);
  await g.write("who", "me");
  expect(await d0.getPerms("/local/domain/12/who")).toEqual(["n12"]);
  g.close();
});

test("IS_DOMAIN_INTRODUCED: dom0 and DOMID_SELF are always T", async () => {
  expect(await introduced(0)).toBe("T\0");
  expect(await introduced(0x7ff0)).toBe("T\0");
  expect(await introduced(44)).toBe("F\0");
});

test("INTRODUCE argument checks: EINVAL for too few args, port 0, dom0 or reserved domids", async () => {
  expect(await d0.err(XsOp.INTRODUCE, "5\0" + "1\0")).toBe("EINVAL");
  expect(await d0.err(XsOp.INTRODUCE, "5\0" + "1\0" + "0\0")).toBe("EINVAL");
  expect(await d0.err(XsOp.INTRODUCE, "0\0" + "1\0" + "2\0")).toBe("EINVAL");
  expect(await d0.err(XsOp.INTRODUCE, "32752\0" + "1\0" + "2\0")).toBe("EINVAL");
});

test("RELEASE closes the guest's connections, removes its socket and its own nodes, fires @releaseDomain", async () => {
  await d0.mkdir("/local/domain/7");
  await d0.setPerms("/local/domain/7", ["n7", "r0"]);
  await d0.write("/local/domain/0/backend/vif/7/0/state", "4"); // dom0's, stays
  const g = await host.guest(7);
  await g.write("device/vif/0/state", "4");
  await g.watch("device", "mine");
  const watcher = await host.dom0();
  await watcher.watch("/local/domain/7", "home");
  await watcher.watch("@releaseDomain", "rel");
  await sleep(10);
  await watcher.settle();
  watcher.takeEvents();

  await d0.call(XsOp.RELEASE, "7\0");
  await g.closed;
  expect(existsSync(simPaths(host.dir).domainSocket(7))).toBe(false);
  expect(await introduced(7)).toBe("F\0");
  expect(await d0.err(XsOp.READ, "/local/domain/7\0")).toBe("ENOENT");
  expect(await d0.read("/local/domain/0/backend/vif/7/0/state")).toBe("4");
  await watcher.waitEvent("/local/domain/7", "home");
  await watcher.waitEvent("@releaseDomain", "rel");
  expect(await d0.err(XsOp.RELEASE, "7\0")).toBe("ENOENT");
  expect(await d0.err(XsOp.RELEASE, "0\0")).toBe("EINVAL");
  await expect(RawClient.connect(simPaths(host.dir).domainSocket(7))).rejects.toThrow();
});

test("re-INTRODUCE of a live domain resets its watches and transactions but keeps its connection", async () => {
  await d0.mkdir("/local/domain/8");
  await d0.setPerms("/local/domain/8", ["n8"]);
  const g = await host.guest(8);
  await g.watch("x", "t");
  const tx = await g.txStart();
  await d0.call(XsOp.INTRODUCE, "8\0" + "1\0" + "2\0");
  expect(await g.err(XsOp.READ, "x\0", tx)).toBe("ENOENT");
  await sleep(10);
  await g.settle();
  g.takeEvents();
  await g.write("x", "1");
  await sleep(10);
  await g.settle();
  expect(g.takeEvents()).toEqual([]);
});

test("SET_TARGET gives a domain its target's access; RESUME needs an introduced domain", async () => {
  await d0.mkdir("/local/domain/20");
  await d0.setPerms("/local/domain/20", ["n20"]);
  await d0.write("/local/domain/20/secret", "s");
  const stub = await host.guest(21);
  await host.guest(20);
  expect(await stub.err(XsOp.READ, "/local/domain/20/secret\0")).toBe("EACCES");
  expect(await d0.err(XsOp.SET_TARGET, "21\0" + "99\0")).toBe("ENOENT");
  await d0.call(XsOp.SET_TARGET, "21\0" + "20\0");
  expect(await stub.read("/local/domain/20/secret")).toBe("s");
  await d0.call(XsOp.RESUME, "20\0");
  expect(await d0.err(XsOp.RESUME, "99\0")).toBe("ENOENT");
});

test("a guest socket connection is unprivileged even for nodes dom0 can see", async () => {
  const g = await host.guest(30);
  expect(await g.err(XsOp.READ, "/tool/xenstored\0")).toBe("EACCES");
  expect(await g.err(XsOp.DIRECTORY, "/local/domain\0")).toBe("EACCES");
});

test("CONTROL: print, check, log, help, quota (settings, per domain, set); unknown EINVAL", async () => {
  expect(text(await d0.call(XsOp.CONTROL, "print\0hello from test\0"))).toBe("OK\0");
  expect(host.logs).toContain("control: hello from test");
  expect(text(await d0.call(XsOp.CONTROL, "check\0"))).toBe("OK\0");
  expect(text(await d0.call(XsOp.CONTROL, "log\0"))).toContain("Log switch settings");
  expect(text(await d0.call(XsOp.CONTROL, "help\0"))).toContain("quota");
  expect(text(await d0.call(XsOp.CONTROL, "quota\0"))).toMatch(/nodes\s*:\s*1000/);
  await d0.call(XsOp.CONTROL, "quota\0set\0nodes\0" + "3\0");
  expect(text(await d0.call(XsOp.CONTROL, "quota\0"))).toMatch(/nodes\s*:\s*3\n/);
  await d0.mkdir("/local/domain/40");
  await d0.setPerms("/local/domain/40", ["n40"]);
  const g = await host.guest(40);
  await g.write("a", "1");
  await g.write("b", "1");
  expect(await g.err(XsOp.WRITE, "c\0v")).toBe("ENOSPC");
  expect(text(await d0.call(XsOp.CONTROL, "quota\0" + "40\0"))).toMatch(/nodes\s*:\s*3\n/);
  expect(await d0.err(XsOp.CONTROL, "quota\0" + "77\0")).toBe("ENOENT");
  expect(await d0.err(XsOp.CONTROL, "frobnicate\0")).toBe("EINVAL");
  expect(await d0.err(XsOp.CONTROL, "print\0")).toBe("EINVAL");
  expect(await d0.err(XsOp.CONTROL, "")).toBe("EINVAL");
});

test("GET_DOMAIN_PATH parses like atoi", async () => {
  expect(strings(await d0.call(XsOp.GET_DOMAIN_PATH, "12abc\0"))).toEqual(["/local/domain/12"]);
  expect(strings(await d0.call(XsOp.GET_DOMAIN_PATH, "junk\0"))).toEqual(["/local/domain/0"]);
});
