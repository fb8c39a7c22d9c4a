// The xenstore client through a /dev/xen/xenbus-like device (test/xenstore/fake-xenbus-device.ts):
// every operation the daemon uses works when replies arrive in pieces, watch events come on the
// same fd, each write() carries exactly one whole message, an oversized message is refused before
// it is written, and a device that goes away is reopened with the watches registered again.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startXenstored } from "../../src/sim/xenstored/server.ts";
import { isCharacterDevice, isXenstoreError, XenstoreClient, xenbusDeviceTransport } from "../../src/xenstore/index.ts";
import { FakeXenbusDevice } from "./fake-xenbus-device.ts";

let dir: string;
let xsd: { socketPath: string; close(): Promise<void> } | undefined;
let device: FakeXenbusDevice | undefined;
const clients: XenstoreClient[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "qnicd-xenbus-"));
  xsd = await startXenstored({ dir, log: () => {} });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Bun.sleep(5);
  device?.close();
  device = undefined;
  await xsd?.close();
  xsd = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function throughDevice(pieceSize: number) {
  device = new FakeXenbusDevice(xsd!.socketPath, pieceSize);
  const xs = await XenstoreClient.connect({
    transport: { factory: xenbusDeviceTransport("/dev/xen/xenbus", device.file), endpoint: "/dev/xen/xenbus" },
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    onError: () => {},
  });
  clients.push(xs);
  return xs;
}

async function until(what: string, pred: () => boolean, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

for (const pieceSize of [1, 7, 4096]) {
  test(`reads, writes, transactions and watch events, replies arriving ${pieceSize} byte(s) at a time`, async () => {
    const xs = await throughDevice(pieceSize);
    const fired: string[] = [];
    await xs.watch("/local/domain/5/backend", (path) => fired.push(path));
    await until("the first watch event", () => fired.length === 1);

    // Requests in flight together: replies are matched by req_id across interleaved pieces.
    await Promise.all(Array.from({ length: 20 }, (_, i) => xs.write(`/local/domain/5/backend/vif/${i}/state`, String(i % 7))));
    expect(await xs.directory("/local/domain/5/backend/vif")).toHaveLength(20);
    expect(await xs.read("/local/domain/5/backend/vif/13/state")).toBe("6");
    await xs.transaction(async (t) => {
      await t.write("/local/domain/5/backend/vif/0/online", "1");
      await t.write("/local/domain/5/backend/vif/0/state", "2");
    });
    expect(await xs.read("/local/domain/5/backend/vif/0/online")).toBe("1");
    await until("watch events for the writes", () => fired.includes("/local/domain/5/backend/vif/0/online"));
    expect(await xs.tryRead("/local/domain/5/nothing")).toBeUndefined();

    expect(device!.violations).toEqual([]);
    expect(device!.writes.length).toBeGreaterThan(25);
  });
}

test("a message over the driver's 4096 bytes is refused before it is written; the connection carries on", async () => {
  const xs = await throughDevice(7);
  const path = "/local/domain/5/big";
  // 4096 - 16 (header) - path and its NUL: the largest value that still fits, and one byte more.
  const fits = 4096 - 16 - (path.length + 1);
  await xs.write(path, "x".repeat(fits));
  expect((await xs.read(path)).length).toBe(fits);
  const err = await xs.write(path, "x".repeat(fits + 1)).catch((e) => e);
  expect(isXenstoreError(err, "E2BIG")).toBe(true);
  expect((err as Error).message).toBe("a xenstore message of 4097 bytes does not fit through /dev/xen/xenbus (at most 4096 bytes with its header)");
  expect((await xs.read(path)).length).toBe(fits);
  expect(device!.violations).toEqual([]);
});

test("the device going away: the client opens it again and its watches fire again", async () => {
  const xs = await throughDevice(7);
  const fired: string[] = [];
  let reconnected = 0;
  xs.on("reconnected", () => reconnected++);
  await xs.watch("/local/domain/5/x", (p) => fired.push(p));
  await until("the first event", () => fired.length === 1);
  device!.closeDeviceEnd();
  await until("the reconnect", () => reconnected === 1);
  expect(device!.opens).toBe(2);
  await until("the re-registered watch's event", () => fired.length === 2);
  await xs.write("/local/domain/5/x", "after");
  await until("an event for the write", () => fired.length === 3);
  expect(device!.violations).toEqual([]);
});

test("only a character device is taken for a xenbus device", () => {
  expect(isCharacterDevice("/dev/null")).toBe(true);
  expect(isCharacterDevice(xsd!.socketPath)).toBe(false);
  expect(isCharacterDevice(join(dir, "missing"))).toBe(false);
});
