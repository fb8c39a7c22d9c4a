// Permissions across a guest's socket: what an unprivileged domain may see and do.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { sleep, startTestHost, XsOp, type RawClient, type TestHost } from "./helpers.ts";

let host: TestHost;
let d0: RawClient;
let g5: RawClient;
beforeEach(async () => {
  host = await startTestHost();
  d0 = await host.dom0();
  // What a toolstack does for a new guest: its home, owned by it, readable by dom0 anyway.
  await d0.mkdir("/local/domain/5");
  await d0.setPerms("/local/domain/5", ["n5"]);
  g5 = await host.guest(5);
});
afterEach(async () => {
  await host.cleanup();
});

test("a guest's relative paths resolve under its own home", async () => {
  await g5.write("data/x", "1");
  expect(await d0.read("/local/domain/5/data/x")).toBe("1");
  expect(await g5.read("/local/domain/5/data/x")).toBe("1");
});

test("nodes a guest creates are owned by it, other entries inherited", async () => {
  await d0.setPerms("/local/domain/5", ["n5", "r0", "b7"]);
  await g5.write("a/b", "v");
  expect(await d0.getPerms("/local/domain/5/a")).toEqual(["n5", "r0", "b7"]);
  expect(await d0.getPerms("/local/domain/5/a/b")).toEqual(["n5", "r0", "b7"]);
});

test("a guest creating below a node owned by someone else becomes owner of the new nodes", async () => {
  await d0.mkdir("/shared-rw");
  await d0.setPerms("/shared-rw", ["n0", "b5", "r7"]);
  await g5.write("/shared-rw/by5/leaf", "v");
  expect(await d0.getPerms("/shared-rw/by5")).toEqual(["n5", "b5", "r7"]);
  expect(await d0.getPerms("/shared-rw/by5/leaf")).toEqual(["n5", "b5", "r7"]);
  expect(await d0.getPerms("/shared-rw")).toEqual(["n0", "b5", "r7"]);
  await g5.setPerms("/shared-rw/by5", ["n5"]); // so it may change them
});

test("nodes dom0 creates under a guest's home keep the parent's owner", async () => {
  await d0.write("/local/domain/5/from-dom0", "v");
  expect(await d0.getPerms("/local/domain/5/from-dom0")).toEqual(["n5"]);
});

test("reading or writing a node without access answers EACCES", async () => {
  await d0.write("/secret", "s");
  expect(await g5.err(XsOp.READ, "/secret\0")).toBe("EACCES");
  expect(await g5.err(XsOp.WRITE, "/secret\0x")).toBe("EACCES");
  expect(await g5.err(XsOp.DIRECTORY, "/\0")).toBe("EACCES");
  expect(await g5.err(XsOp.GET_PERMS, "/secret\0")).toBe("EACCES");
  expect(await g5.err(XsOp.RM, "/secret\0")).toBe("EACCES");
  expect(await d0.read("/secret")).toBe("s");
});

test("a missing node answers EACCES unless the nearest existing ancestor grants the access", async () => {
  expect(await g5.err(XsOp.READ, "/nothing/here\0")).toBe("EACCES");
  expect(await g5.err(XsOp.READ, "missing\0")).toBe("ENOENT"); // its own home is readable
  expect(await g5.err(XsOp.WRITE, "/local/domain/6/x\0v")).toBe("EACCES");
  await d0.mkdir("/shared");
  await d0.setPerms("/shared", ["n0", "r5"]);
  expect(await g5.err(XsOp.READ, "/shared/missing\0")).toBe("ENOENT");
  expect(await g5.err(XsOp.WRITE, "/shared/new\0v")).toBe("EACCES"); // read-only: no creating
});

test("read, write, both and none entries, and the default for unlisted domains", async () => {
  await d0.write("/acl/r", "r");
  await d0.write("/acl/w", "w");
  await d0.write("/acl/b", "b");
  await d0.write("/acl/n", "n");
  await d0.write("/acl/default-r", "d");
  await d0.setPerms("/acl/r", ["n0", "r5"]);
  await d0.setPerms("/acl/w", ["n0", "w5"]);
  await d0.setPerms("/acl/b", ["n0", "b5"]);
  await d0.setPerms("/acl/n", ["b0", "n5"]); // everyone else may, domain 5 may not
  await d0.setPerms("/acl/default-r", ["r0", "b9"]);
  expect(await g5.read("/acl/r")).toBe("r");
  expect(await g5.err(XsOp.WRITE, "/acl/r\0x")).toBe("EACCES");
  expect(await g5.err(XsOp.READ, "/acl/w\0")).toBe("EACCES");
  await g5.write("/acl/w", "changed");
  expect(await d0.read("/acl/w")).toBe("changed");
  await g5.write("/acl/b", "both");
  expect(await g5.read("/acl/b")).toBe("both");
  expect(await g5.err(XsOp.READ, "/acl/n\0")).toBe("EACCES");
  expect(await g5.read("/acl/default-r")).toBe("d");
});

test("SET_PERMS: only the owner (or dom0); a guest may not give its node away", async () => {
  await g5.write("mine", "v");
  await g5.setPerms("mine", ["n5", "r0", "r6"]);
  expect(await d0.getPerms("/local/domain/5/mine")).toEqual(["n5", "r0", "r6"]);
  expect(await g5.err(XsOp.SET_PERMS, "mine\0n6\0")).toBe("EPERM");
  await d0.write("/local/domain/5/dom0s", "v");
  await d0.setPerms("/local/domain/5/dom0s", ["b0"]); // dom0-owned, writable by all
  await g5.write("dom0s", "writable");
  expect(await g5.err(XsOp.SET_PERMS, "dom0s\0b5\0")).toBe("EACCES");
  await d0.setPerms("/local/domain/5/mine", ["n6"]); // dom0 may change the owner
  expect(await g5.err(XsOp.READ, "mine\0")).toBe("EACCES");
});

test("privileged-only ops from a guest answer EACCES", async () => {
  expect(await g5.err(XsOp.INTRODUCE, "9\0" + "123\0" + "4\0")).toBe("EACCES");
  expect(await g5.err(XsOp.RELEASE, "5\0")).toBe("EACCES");
  expect(await g5.err(XsOp.IS_DOMAIN_INTRODUCED, "5\0")).toBe("EACCES");
  expect(await g5.err(XsOp.CONTROL, "print\0hi\0")).toBe("EACCES");
  expect(await g5.err(XsOp.SET_TARGET, "5\0" + "7\0")).toBe("EACCES");
  expect(await g5.err(XsOp.RESUME, "5\0")).toBe("EACCES");
  // Not privileged: anyone may ask for a domain path.
  expect(await g5.err(XsOp.GET_DOMAIN_PATH, "5\0")).toBe("");
});

test("guest paths below its home may be 2048 bytes; longer ones are EINVAL", async () => {
  const seg = "b".repeat(99);
  let rel = "";
  while (rel.length + 100 <= 2048) rel += (rel ? "/" : "") + seg;
  rel += "/" + "c".repeat(2048 - rel.length - 1);
  expect(rel.length).toBe(2048);
  expect(await g5.err(XsOp.MKDIR, `${rel}\0`)).toBe("");
  expect(await g5.err(XsOp.MKDIR, `${rel}x\0`)).toBe("EINVAL");
  expect(await d0.err(XsOp.MKDIR, `/local/domain/5/${rel}x\0`)).toBe(""); // dom0 is not limited to 2048
});

test("watch events reach a guest only for nodes it may read (or whose parent it may read)", async () => {
  await d0.mkdir("/watched");
  await d0.setPerms("/watched", ["n0", "r5"]);
  await g5.watch("/watched", "t");
  await g5.waitEvent("/watched", "t");
  await d0.write("/watched/public", "1"); // inherits r5
  await g5.waitEvent("/watched/public", "t");
  await d0.write("/watched/hidden", "x");
  await d0.setPerms("/watched/hidden", ["n0"]); // event for the change: it could read it before
  await g5.waitEvent("/watched/hidden", "t");
  await g5.waitEvent("/watched/hidden", "t");
  await d0.setPerms("/watched", ["n0"]); // parent no longer readable either
  await g5.waitEvent("/watched", "t"); // old permissions allowed it
  await d0.write("/watched/hidden", "y");
  await sleep(30);
  await g5.settle();
  expect(g5.takeEvents()).toEqual([]);
});

test("a guest hears nothing about dom0's private nodes even when watching /", async () => {
  await g5.watch("/", "root");
  await g5.waitEvent("/", "root");
  await d0.write("/private/x", "1");
  await d0.rm("/private");
  await g5.write("visible", "1");
  await g5.waitEvent("/local/domain/5/visible", "root");
  expect(g5.takeEvents()).toEqual([]);
});
