// Transactions: isolation until commit, conflicts answer EAGAIN, abort discards, events on commit.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { drain, sleep, startTestHost, XsOp, type RawClient, type TestHost } from "./helpers.ts";

let host: TestHost;
let a: RawClient;
let b: RawClient;
beforeEach(async () => {
  host = await startTestHost();
  a = await host.dom0();
  b = await host.dom0();
});
afterEach(async () => {
  await host.cleanup();
});

test("writes in a transaction are invisible outside until commit, visible inside at once", async () => {
  await a.write("/t/x", "old");
  const tx = await a.txStart();
  await a.write("/t/x", "new", tx);
  await a.write("/t/created/deep", "c", tx);
  expect(await a.read("/t/x", tx)).toBe("new");
  expect(await a.ls("/t", tx)).toEqual(["x", "created"]);
  expect(await b.read("/t/x")).toBe("old");
  expect(await b.err(XsOp.READ, "/t/created\0")).toBe("ENOENT");
  expect(await a.read("/t/x")).toBe("old"); // same connection, no tx_id: global view
  await a.txEnd(tx);
  expect(await b.read("/t/x")).toBe("new");
  expect(await b.read("/t/created/deep")).toBe("c");
});

test("TRANSACTION_END F discards everything", async () => {
  await a.write("/abort/x", "keep");
  const tx = await a.txStart();
  await a.write("/abort/x", "changed", tx);
  await a.rm("/abort", tx);
  expect(await a.err(XsOp.READ, "/abort/x\0", tx)).toBe("ENOENT");
  await a.txEnd(tx, false);
  expect(await b.read("/abort/x")).toBe("keep");
  expect(await a.err(XsOp.READ, "/abort/x\0", tx)).toBe("ENOENT"); // the id is gone
});

test("a commit after someone else changed a node the transaction read answers EAGAIN and applies nothing", async () => {
  await a.write("/c/read", "1");
  const tx = await a.txStart();
  expect(await a.read("/c/read", tx)).toBe("1");
  await a.write("/c/written", "mine", tx);
  await b.write("/c/read", "2");
  expect(await a.err(XsOp.TRANSACTION_END, "T\0", tx)).toBe("EAGAIN");
  expect(await b.err(XsOp.READ, "/c/written\0")).toBe("ENOENT");
  // The transaction is over either way.
  expect(await a.err(XsOp.TRANSACTION_END, "T\0", tx)).toBe("ENOENT");
});

test("conflicts also come from nodes written, removed, or looked up while missing", async () => {
  await a.write("/k/w", "0");
  const t1 = await a.txStart();
  await a.write("/k/w", "tx", t1);
  await b.write("/k/w", "outside");
  expect(await a.err(XsOp.TRANSACTION_END, "T\0", t1)).toBe("EAGAIN");
  expect(await b.read("/k/w")).toBe("outside");

  const t2 = await a.txStart();
  expect(await a.err(XsOp.READ, "/k/later\0", t2)).toBe("ENOENT");
  await b.write("/k/later", "appeared");
  expect(await a.err(XsOp.TRANSACTION_END, "T\0", t2)).toBe("EAGAIN");

  const t3 = await a.txStart();
  await a.read("/k/w", t3);
  await b.rm("/k/w");
  expect(await a.err(XsOp.TRANSACTION_END, "T\0", t3)).toBe("EAGAIN");
});

test("two transactions creating children of one parent: the second to commit retries", async () => {
  await a.mkdir("/par");
  const t1 = await a.txStart();
  const t2 = await b.txStart();
  await a.write("/par/one", "1", t1);
  await b.write("/par/two", "2", t2);
  await a.txEnd(t1);
  expect(await b.err(XsOp.TRANSACTION_END, "T\0", t2)).toBe("EAGAIN");
  const t3 = await b.txStart();
  await b.write("/par/two", "2", t3);
  await b.txEnd(t3);
  expect(await a.ls("/par")).toEqual(["one", "two"]);
});

test("unrelated changes elsewhere do not conflict", async () => {
  // (Creating /iso inside the transaction would touch / and conflict with any new top-level node.)
  await a.mkdir("/iso");
  const tx = await a.txStart();
  await a.write("/iso/mine", "1", tx);
  await b.write("/elsewhere", "x");
  await a.txEnd(tx);
  expect(await b.read("/iso/mine")).toBe("1");
});

test("watch events for transactional changes fire only on successful commit", async () => {
  await b.watch("/ev", "t");
  await drain(b);
  const tx = await a.txStart();
  await a.write("/ev/x", "1", tx);
  await a.write("/ev/y", "1", tx);
  expect(await drain(b)).toEqual([]);
  await a.txEnd(tx);
  expect(await drain(b)).toEqual([
    ["/ev/x", "t"],
    ["/ev/y", "t"],
  ]);
  const aborted = await a.txStart();
  await a.write("/ev/z", "1", aborted);
  await a.txEnd(aborted, false);
  const failed = await a.txStart();
  await a.read("/ev/x", failed);
  await a.write("/ev/z", "1", failed);
  await b.write("/ev/x", "2");
  expect(await drain(b)).toEqual([["/ev/x", "t"]]);
  expect(await a.err(XsOp.TRANSACTION_END, "T\0", failed)).toBe("EAGAIN");
  expect(await drain(b)).toEqual([]);
});

test("nested TRANSACTION_START answers EBUSY; END without a transaction ENOENT; bad END argument EINVAL", async () => {
  const tx = await a.txStart();
  expect(await a.err(XsOp.TRANSACTION_START, "\0", tx)).toBe("EBUSY");
  expect(await a.err(XsOp.TRANSACTION_END, "T\0")).toBe("ENOENT");
  expect(await a.err(XsOp.TRANSACTION_END, "X\0", tx)).toBe("EINVAL");
  expect(await a.err(XsOp.TRANSACTION_END, "T", tx)).toBe("EINVAL");
  await a.txEnd(tx);
});

test("transaction ids are per connection and not usable from another connection", async () => {
  const t1 = await a.txStart();
  const t2 = await a.txStart();
  expect(t1).not.toBe(t2);
  expect(t1).toBeGreaterThan(0);
  expect(await b.err(XsOp.READ, "/\0", t1)).toBe("ENOENT");
  await a.txEnd(t1, false);
  await a.txEnd(t2, false);
});

test("a transaction dies with its connection", async () => {
  const c = await host.dom0();
  const tx = await c.txStart();
  await c.write("/gone", "x", tx);
  c.close();
  await c.closed;
  await sleep(10);
  expect(await a.err(XsOp.READ, "/gone\0")).toBe("ENOENT");
});

test("RM and SET_PERMS inside a transaction apply at commit", async () => {
  await a.write("/tr/x/y", "1");
  const tx = await a.txStart();
  await a.rm("/tr/x", tx);
  await a.write("/tr/p", "v", tx);
  await a.setPerms("/tr/p", ["r0", "b3"], tx);
  expect(await b.ls("/tr")).toEqual(["x"]);
  await a.txEnd(tx);
  expect(await b.ls("/tr")).toEqual(["p"]);
  expect(await b.getPerms("/tr/p")).toEqual(["r0", "b3"]);
});

test("a guest's transaction follows the same permission rules", async () => {
  await a.mkdir("/local/domain/6");
  await a.setPerms("/local/domain/6", ["n6"]);
  const g = await host.guest(6);
  const tx = await g.txStart();
  await g.write("state", "4", tx);
  expect(await g.err(XsOp.WRITE, "/tool/x\0v", tx)).toBe("EACCES");
  await g.txEnd(tx);
  expect(await a.read("/local/domain/6/state")).toBe("4");
  expect(await a.getPerms("/local/domain/6/state")).toEqual(["n6"]);
});
