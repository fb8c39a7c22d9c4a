// Client behaviour that needs a server misbehaving on purpose (see fake-xenstored.ts).
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XsOp } from "../../src/xen/xs-wire.ts";
import { nulTerminated, splitNul, utf8 } from "../../src/xenstore/codec.ts";
import { XenstoreClient, XenstoreConnectionError, XenstoreError, XenstoreTransactionConflictError } from "../../src/xenstore/index.ts";
import { startFake, type FakeXenstored } from "./fake-xenstored.ts";

let dir: string;
let fake: FakeXenstored | undefined;
let client: XenstoreClient | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "qnicd-xs-conn-"));
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await fake?.close();
  fake = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const ok = (m: { type: number; reqId: number; txId: number }, payload = nulTerminated("OK")) => ({ type: m.type, reqId: m.reqId, txId: m.txId, payload });

test("many requests in flight; replies matched by req_id even when they arrive in reverse order", async () => {
  const held: (() => void)[] = [];
  fake = await startFake(join(dir, "s"), (m, c) => {
    const [path] = splitNul(m.payload);
    held.push(() => c.send(ok(m, utf8.encode(`value of ${path}`))));
    if (held.length === 5) for (const f of held.reverse()) f();
  });
  client = await XenstoreClient.connect({ path: fake.path });
  const paths = ["/a", "/b", "/c", "/d", "/e"];
  const values = await Promise.all(paths.map((p) => client!.read(p)));
  expect(values).toEqual(paths.map((p) => `value of ${p}`));
  const ids = fake.received.map((m) => m.reqId);
  expect(new Set(ids).size).toBe(5);
  expect(ids).toEqual([...ids].sort((a, b) => a - b)); // incrementing
});

test("an ERROR reply becomes a XenstoreError whose code is the xenstore error name", async () => {
  fake = await startFake(join(dir, "s"), (m, c) => c.send({ type: XsOp.ERROR, reqId: m.reqId, txId: 0, payload: nulTerminated("EACCES") }));
  client = await XenstoreClient.connect({ path: fake.path });
  const err = await client.write("/x", "1").catch((e) => e);
  expect(err).toBeInstanceOf(XenstoreError);
  expect(err.code).toBe("EACCES");
  expect(err.message).toContain('WRITE "/x"');
  expect(await client.tryRead("/x").catch((e) => e.code)).toBe("EACCES"); // only ENOENT means "absent"
});

test("an oversized write fails locally and nothing is sent", async () => {
  fake = await startFake(join(dir, "s"), (m, c) => c.send(ok(m)));
  client = await XenstoreClient.connect({ path: fake.path });
  const err = await client.write("/big", "v".repeat(4096)).catch((e) => e);
  expect(err.code).toBe("E2BIG");
  await client.write("/small", "v".repeat(4096 - "/small\0".length));
  expect(fake.received.map((m) => m.type)).toEqual([XsOp.WRITE]);
});

test("transaction retries the whole function on EAGAIN, then succeeds", async () => {
  let commits = 0;
  fake = await startFake(join(dir, "s"), (m, c) => {
    if (m.type === XsOp.TRANSACTION_START) c.send(ok(m, nulTerminated(String(40 + commits))));
    else if (m.type === XsOp.TRANSACTION_END && ++commits < 3) c.send({ type: XsOp.ERROR, reqId: m.reqId, txId: m.txId, payload: nulTerminated("EAGAIN") });
    else c.send(ok(m));
  });
  client = await XenstoreClient.connect({ path: fake.path });
  let runs = 0;
  const r = await client.transaction(async (tx) => {
    runs++;
    await tx.write("/a", "1");
    return tx.txId;
  });
  expect(runs).toBe(3);
  expect(r).toBe(42);
  const writes = fake.received.filter((m) => m.type === XsOp.WRITE).map((m) => m.txId);
  expect(writes).toEqual([40, 41, 42]);
});

test("transaction gives up after maxAttempts with a clear error", async () => {
  fake = await startFake(join(dir, "s"), (m, c) => {
    if (m.type === XsOp.TRANSACTION_START) c.send(ok(m, nulTerminated("5")));
    else if (m.type === XsOp.TRANSACTION_END) c.send({ type: XsOp.ERROR, reqId: m.reqId, txId: m.txId, payload: nulTerminated("EAGAIN") });
    else c.send(ok(m));
  });
  client = await XenstoreClient.connect({ path: fake.path });
  const err = await client.transaction(async (tx) => tx.write("/a", "1"), { maxAttempts: 3 }).catch((e) => e);
  expect(err).toBeInstanceOf(XenstoreTransactionConflictError);
  expect(err.code).toBe("EAGAIN");
  expect(err.message).toMatch(/gave up after 3 attempts/);
});

test("a throwing transaction body aborts (TRANSACTION_END F) and rethrows", async () => {
  fake = await startFake(join(dir, "s"), (m, c) => c.send(ok(m, m.type === XsOp.TRANSACTION_START ? nulTerminated("9") : nulTerminated("OK"))));
  client = await XenstoreClient.connect({ path: fake.path });
  await expect(client.transaction(async () => { throw new Error("boom"); })).rejects.toThrow("boom");
  const end = fake.received.find((m) => m.type === XsOp.TRANSACTION_END)!;
  expect(splitNul(end.payload)).toEqual(["F"]);
  expect(end.txId).toBe(9);
});

test("connection loss: in-flight writes fail clearly, in-flight reads are resent after reconnect", async () => {
  const path = join(dir, "s");
  let swallow = true;
  fake = await startFake(path, (m, c) => {
    if (!swallow) c.send(ok(m, m.type === XsOp.READ ? utf8.encode("v") : nulTerminated("OK")));
  });
  client = await XenstoreClient.connect({ path, reconnect: { initialDelayMs: 10 } });
  const events: string[] = [];
  client.on("disconnected", () => events.push("disconnected"));
  client.on("reconnected", () => events.push("reconnected"));
  const w = client.write("/w", "1").catch((e) => e);
  const r = client.read("/r");
  while (fake.received.length < 2) await Bun.sleep(5);
  await fake.close();
  swallow = false;
  fake = await startFake(path, (m, c) => c.send(ok(m, m.type === XsOp.READ ? utf8.encode("v") : nulTerminated("OK"))));
  const werr = await w;
  expect(werr).toBeInstanceOf(XenstoreConnectionError);
  expect(werr.code).toBe("ECONNRESET");
  expect(werr.message).toMatch(/WRITE "\/w".*not retried/);
  expect(await r).toBe("v");
  expect(events).toEqual(["disconnected", "reconnected"]);
});

test("with reconnect disabled, a lost connection fails everything and closes the client", async () => {
  const path = join(dir, "s");
  fake = await startFake(path, () => {});
  client = await XenstoreClient.connect({ path, reconnect: { enabled: false } });
  let closed = false;
  client.on("closed", () => (closed = true));
  const r = client.read("/r").catch((e) => e);
  while (fake.received.length < 1) await Bun.sleep(5);
  await fake.close();
  expect(await r).toBeInstanceOf(XenstoreConnectionError);
  expect(closed).toBe(true);
  expect(await client.read("/x").catch((e) => e.code)).toBe("ECONNRESET");
});

test("connecting to a socket nobody listens on fails with a clear message", async () => {
  const err = await XenstoreClient.connect({ path: join(dir, "nobody") }).catch((e) => e);
  expect(err).toBeInstanceOf(XenstoreConnectionError);
  expect(err.message).toContain("cannot connect to xenstored at");
});
