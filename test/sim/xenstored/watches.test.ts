// Watches: firing on registration, on changes at or below the watched path, deletion semantics,
// relative paths, special @ events, and the watch bookkeeping ops.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { simPaths } from "../../../src/sim/paths.ts";
import { drain, startTestHost, strings, XsOp, type RawClient, type TestHost } from "./helpers.ts";

let host: TestHost;
let c: RawClient;
let w: RawClient;
beforeEach(async () => {
  host = await startTestHost();
  c = await host.dom0();
  w = await host.dom0();
});
afterEach(async () => {
  await host.cleanup();
});

test("a watch fires once right after registration, after the WATCH reply, with req_id 0", async () => {
  const id = w.send(XsOp.WATCH, "/not/yet/there\0tok\0");
  await w.reply(id);
  const ev = await w.waitEvent("/not/yet/there", "tok");
  expect(ev).toEqual(["/not/yet/there", "tok"]);
  const idxReply = w.log.findIndex((m) => m.reqId === id);
  const idxEvent = w.log.findIndex((m) => m.type === XsOp.WATCH_EVENT);
  expect(idxEvent).toBeGreaterThan(idxReply);
  expect(w.log[idxEvent]).toMatchObject({ reqId: 0, txId: 0 });
  expect(await drain(w)).toEqual([]);
});

test("writes, mkdirs and permission changes at or below the watch fire with the changed path", async () => {
  await w.watch("/a", "t");
  await w.waitEvent("/a", "t");
  await c.write("/a/b/c", "1"); // one event for the written node, none for implicit parents
  await c.mkdir("/a/d");
  await c.write("/a", "self");
  await c.setPerms("/a/d", ["n0", "r1"]);
  await c.mkdir("/a/d"); // exists already: no event
  await c.write("/ab", "sibling-prefix"); // not below /a
  await c.write("/", "root");
  expect(await drain(w)).toEqual([
    ["/a/b/c", "t"],
    ["/a/d", "t"],
    ["/a", "t"],
    ["/a/d", "t"],
  ]);
});

test("one change fires each of a connection's watches at or above it once, in the order they were set, and no other", async () => {
  for (const [path, tok] of [["/a/b", "t1"], ["/x", "t2"], ["/", "t3"], ["/a/b/c", "t4"], ["/a", "t5"], ["/a/bc", "t6"], ["/a/b/c/d", "t7"]]) {
    await w.watch(path!, tok!);
    await w.waitEvent(path!, tok!);
  }
  await w.unwatch("/x", "t2");
  await w.watch("/x", "t2"); // set again: now the newest
  await w.waitEvent("/x", "t2");
  await c.write("/a/b/c", "1");
  await c.write("/x/y", "2");
  expect(await drain(w)).toEqual([
    ["/a/b/c", "t1"],
    ["/a/b/c", "t3"],
    ["/a/b/c", "t4"],
    ["/a/b/c", "t5"],
    ["/x/y", "t3"],
    ["/x/y", "t2"],
  ]);
});

test("removal fires for the removed node on watches at or above it, and for each removed descendant on watches set exactly on it", async () => {
  await c.write("/r/x/y/z", "1");
  await c.write("/r/x/q", "1");
  await w.watch("/r", "above");
  await w.watch("/r/x/y", "exact-desc");
  await w.watch("/r/x/y/z/deeper", "missing-desc");
  await w.watch("/r/x", "self");
  expect((await drain(w)).length).toBe(4);
  await c.rm("/r/x");
  const got = await drain(w);
  expect(got).toContainEqual(["/r/x", "above"]);
  expect(got).toContainEqual(["/r/x", "self"]);
  expect(got).toContainEqual(["/r/x/y", "exact-desc"]);
  expect(got).toHaveLength(3);
  // Removing something that does not exist fires nothing.
  await c.rm("/r/x");
  expect(await drain(w)).toEqual([]);
});

test("a watch on / sees every change; identical tokens on different paths are distinct watches", async () => {
  await w.watch("/", "all");
  await w.watch("/one", "same");
  await w.watch("/two", "same");
  await drain(w);
  await c.write("/one/x", "1");
  await c.write("/two", "2");
  expect(await drain(w)).toEqual([
    ["/one/x", "all"],
    ["/one/x", "same"],
    ["/two", "all"],
    ["/two", "same"],
  ]);
});

test("relative watch paths get relative event paths", async () => {
  await w.watch("rel", "r");
  await w.waitEvent("rel", "r");
  await c.write("/local/domain/0/rel/sub", "1");
  await w.waitEvent("rel/sub", "r");
  const g = await host.guest(4);
  await c.mkdir("/local/domain/4");
  await c.setPerms("/local/domain/4", ["n4"]);
  await g.watch("device", "dev");
  await g.waitEvent("device", "dev");
  await c.write("/local/domain/4/device/vif/0/state", "1");
  await g.waitEvent("device/vif/0/state", "dev");
  await g.watch("/local/domain/4/device", "abs");
  await g.waitEvent("/local/domain/4/device", "abs");
});

test("UNWATCH removes exactly one watch; unknown ones answer ENOENT; duplicates EEXIST", async () => {
  await w.watch("/u", "1");
  await w.watch("/u", "2");
  expect(await w.err(XsOp.WATCH, "/u\0" + "1\0")).toBe("EEXIST");
  await w.unwatch("/u", "1");
  expect(await w.err(XsOp.UNWATCH, "/u\0" + "1\0")).toBe("ENOENT");
  expect(await w.err(XsOp.UNWATCH, "/never\0x\0")).toBe("ENOENT");
  await drain(w);
  await c.write("/u", "v");
  expect(await drain(w)).toEqual([["/u", "2"]]);
});

test("RESET_WATCHES drops all watches and transactions of the caller", async () => {
  await w.watch("/rw", "t");
  const tx = await w.txStart();
  await w.call(XsOp.RESET_WATCHES, "\0");
  await drain(w);
  await c.write("/rw", "v");
  expect(await drain(w)).toEqual([]);
  expect(await w.err(XsOp.READ, "/rw\0", tx)).toBe("ENOENT");
});

test("watches belong to their connection and die with it", async () => {
  const other = await host.dom0();
  await other.watch("/conn", "t");
  other.close();
  await other.closed;
  await w.watch("/conn", "mine");
  await drain(w);
  await c.write("/conn", "v");
  expect(await drain(w)).toEqual([["/conn", "mine"]]);
});

test("@introduceDomain fires on INTRODUCE of a new domain only; @releaseDomain on RELEASE", async () => {
  await w.watch("@introduceDomain", "intro");
  await w.watch("@releaseDomain", "rel");
  await w.watch("/", "root"); // special events do not reach watches on /
  expect((await drain(w)).length).toBe(3);
  await c.call(XsOp.INTRODUCE, "3\0" + "1234\0" + "5\0");
  expect(existsSync(simPaths(host.dir).domainSocket(3))).toBe(true);
  expect(await drain(w)).toEqual([["@introduceDomain", "intro"]]);
  await c.call(XsOp.INTRODUCE, "3\0" + "1234\0" + "5\0"); // again: no new event
  expect(await drain(w)).toEqual([]);
  await c.call(XsOp.RELEASE, "3\0");
  expect(await drain(w)).toEqual([["@releaseDomain", "rel"]]);
});

test("guests get special events only if the special node's permissions let them read it", async () => {
  const g = await host.guest(8);
  await g.watch("@releaseDomain", "rel");
  await g.waitEvent("@releaseDomain", "rel"); // registration always fires
  await c.call(XsOp.INTRODUCE, "9\0" + "1\0" + "2\0");
  await c.call(XsOp.RELEASE, "9\0");
  expect(await drain(g)).toEqual([]);
  await c.setPerms("@releaseDomain", ["n0", "r8"]);
  // The permission change itself is an event on the node, as in xenstored.
  expect(await drain(g)).toEqual([["@releaseDomain", "rel"]]);
  await c.call(XsOp.INTRODUCE, "9\0" + "1\0" + "2\0");
  await c.call(XsOp.RELEASE, "9\0");
  expect(await drain(g)).toEqual([["@releaseDomain", "rel"]]);
});

test("a watcher's own write fires its watch before the WRITE reply (xenstored's order)", async () => {
  await w.watch("/own", "t");
  await drain(w);
  const id = w.send(XsOp.WRITE, "/own\0v");
  await w.reply(id);
  const iEvent = w.log.findLastIndex((m) => m.type === XsOp.WATCH_EVENT);
  const iReply = w.log.findIndex((m) => m.reqId === id);
  expect(strings(w.log[iEvent]!)).toEqual(["/own", "t"]);
  expect(iEvent).toBeLessThan(iReply);
});

test("WATCH tokens and paths are echoed byte for byte", async () => {
  const token = "tok\x01\xff with spaces";
  await w.call(XsOp.WATCH, Buffer.from(`/bytes\0${token}\0`, "latin1"));
  expect(await w.waitEvent("/bytes")).toEqual(["/bytes", token]);
});
