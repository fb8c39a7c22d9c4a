// Quotas (C xenstored's defaults and error codes) and bounded memory for clients that never read.
import { afterEach, expect, test } from "bun:test";
import { DEFAULT_QUOTAS } from "../../../src/sim/xenstored/quotas.ts";
import { frame, sleep, startTestHost, XsOp, type RawClient, type TestHost } from "./helpers.ts";

let host: TestHost | undefined;
afterEach(async () => {
  await host?.cleanup();
  host = undefined;
});

async function withGuest(quotas: Parameters<typeof startTestHost>[0], domid = 5) {
  host = await startTestHost(quotas);
  const d0 = await host.dom0();
  await d0.mkdir(`/local/domain/${domid}`);
  await d0.setPerms(`/local/domain/${domid}`, [`n${domid}`]);
  const g = await host.guest(domid);
  return { d0, g };
}

test("defaults are C xenstored's", () => {
  expect(DEFAULT_QUOTAS).toMatchObject({
    nodesPerDomain: 1000,
    watchesPerConnection: 128,
    transactionsPerConnection: 10,
    nodesPerTransaction: 1024,
    nodeSize: 2048,
    permsPerNode: 5,
    pathLength: 2048,
  });
});

test("nodes per domain: ENOSPC past the quota, counting implicit parents; dom0 exempt; freed by RM", async () => {
  const { d0, g } = await withGuest({ nodesPerDomain: 10 });
  // The home node is owned by the guest too: 1 node already.
  for (let i = 0; i < 9; i++) await g.write(`n${i}`, "v");
  expect(await g.err(XsOp.WRITE, "one-more\0v")).toBe("ENOSPC");
  await g.rm("n0");
  expect(await g.err(XsOp.WRITE, "a/b\0v")).toBe("ENOSPC"); // needs two
  await g.write("a", "v");
  for (let i = 0; i < 20; i++) await d0.write(`/dom0/n${i}`, "v");
});

test("nodes per domain inside a transaction: counted with the transaction's own creations", async () => {
  const { g } = await withGuest({ nodesPerDomain: 4 });
  const tx = await g.txStart();
  await g.write("a", "1", tx);
  await g.write("b", "1", tx);
  await g.write("c", "1", tx);
  expect(await g.err(XsOp.WRITE, "d\0v", tx)).toBe("ENOSPC");
  await g.txEnd(tx);
});

test("node size: a guest's node over 2048 bytes answers ENOSPC; dom0 may write up to the payload limit", async () => {
  const { d0, g } = await withGuest({});
  const perms = 1; // home inherits n5
  const max = 2048 - 16 - 8 * perms;
  await g.write("fits", "x".repeat(max));
  expect(await g.err(XsOp.WRITE, `toobig\0${"x".repeat(max + 1)}`)).toBe("ENOSPC");
  expect(await g.err(XsOp.READ, "toobig\0")).toBe("ENOENT"); // nothing half-created
  await d0.write("/local/domain/5/dom0-big", "y".repeat(4000));
});

test("watches per connection: E2BIG past the quota; a new connection has its own", async () => {
  const { g } = await withGuest({ watchesPerConnection: 3 });
  for (let i = 0; i < 3; i++) await g.watch(`w${i}`, "t");
  expect(await g.err(XsOp.WATCH, "w3\0t\0")).toBe("E2BIG");
  await g.unwatch("w0", "t");
  await g.watch("w3", "t");
  const d0 = await host!.dom0();
  for (let i = 0; i < 10; i++) await d0.watch(`/x${i}`, "t"); // dom0 exempt
});

test("open transactions per connection: ENOSPC past the quota, freed by ending one", async () => {
  const { g } = await withGuest({ transactionsPerConnection: 2 });
  const t1 = await g.txStart();
  await g.txStart();
  expect(await g.err(XsOp.TRANSACTION_START, "\0")).toBe("ENOSPC");
  await g.txEnd(t1, false);
  await g.txStart();
});

test("permissions per node: ENOSPC for a guest setting more than 5", async () => {
  const { g } = await withGuest({});
  await g.write("p", "v");
  await g.setPerms("p", ["n5", "r1", "r2", "r3", "r4"]);
  expect(await g.err(XsOp.SET_PERMS, "p\0n5\0r1\0r2\0r3\0r4\0r6\0")).toBe("ENOSPC");
});

test("nodes per transaction: ENOSPC, and the transaction can no longer commit", async () => {
  const { g } = await withGuest({ nodesPerTransaction: 5 });
  const tx = await g.txStart();
  let err = "";
  for (let i = 0; i < 10 && !err; i++) err = await g.err(XsOp.WRITE, `t${i}\0v`, tx);
  expect(err).toBe("ENOSPC");
  expect(await g.err(XsOp.TRANSACTION_END, "T\0", tx)).toBe("ENOMEM");
});

test("a client that never reads is bounded: its events are dropped, it is not read; others carry on", async () => {
  host = await startTestHost({ outputBytes: 64 * 1024, pendingWatchEvents: 100 });
  const writer = await host.dom0();
  const other = await host.dom0();
  const stuck = await host.dom0();
  await stuck.watch("/flood", "t");
  await other.watch("/flood", "t");
  stuck.socket.pause(); // stop reading: kernel buffers fill, then the daemon's queue
  const big = "z".repeat(3000);
  const N = 2000;
  // Distinct paths defeat event coalescing: every write is a new event for both watchers.
  for (let i = 0; i < N; i += 100) {
    const ids = [];
    for (let j = i; j < i + 100; j++) ids.push(writer.send(XsOp.WRITE, `/flood/${"p".repeat(1000)}${j}\0${big}`));
    for (const id of ids) expect((await writer.reply(id)).type).toBe(XsOp.WRITE);
  }
  await other.until(() => other.events.length >= N + 1 || undefined, 10000, "all events for the reading client");
  expect(host.logs.some((l) => l.includes("dropping watch events"))).toBe(true);

  // Its requests are not read while its output is over the bound, and are answered once it reads.
  const ids: number[] = [];
  for (let i = 0; i < 200; i++) ids.push(stuck.send(XsOp.READ, `/flood/${"p".repeat(1000)}0\0`));
  await sleep(50);
  stuck.socket.resume();
  for (const id of ids) expect((await stuck.reply(id, 10000)).type).toBe(XsOp.READ);
  expect(stuck.events.length).toBeLessThan(N);
  expect(stuck.events.length).toBeGreaterThan(0);
  await writer.write("/after", "ok");
});

test("a client pipelining requests without reading replies cannot grow the daemon's queue unboundedly", async () => {
  host = await startTestHost({ outputBytes: 32 * 1024 });
  const writer = await host.dom0();
  await writer.write("/v", "q".repeat(4000));
  const greedy = await host.dom0();
  greedy.socket.pause();
  const req = frame(XsOp.READ, "/v\0", 1);
  const batch = Buffer.concat(Array.from({ length: 500 }, () => req));
  for (let i = 0; i < 10; i++) greedy.writeRaw(batch); // 5000 requests, 20 MB of replies
  await sleep(300);
  expect(host.logs.some((l) => l.includes("output queue full"))).toBe(true);
  // Everyone else is served meanwhile.
  const other = await host.dom0();
  expect(await other.read("/v")).toHaveLength(4000);
  greedy.close();
});
