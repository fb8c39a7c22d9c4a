// The client against the real sim xenstored (src/sim/xenstored), one run directory per test.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startXenstored } from "../../src/sim/xenstored/server.ts";
import { XenstoreClient, XenstoreConnectionError, permsToString } from "../../src/xenstore/index.ts";

let dir: string;
let xsd: { socketPath: string; close(): Promise<void> } | undefined;
const clients: XenstoreClient[] = [];

async function connect(opts: Parameters<typeof XenstoreClient.connect>[0] = {}) {
  const c = await XenstoreClient.connect({ path: xsd!.socketPath, reconnect: { initialDelayMs: 10, maxDelayMs: 50 }, ...opts });
  clients.push(c);
  return c;
}

/** Resolves when `pred` holds, polling `events`; fails with what was seen after `ms`. */
async function until(events: string[], pred: (e: string[]) => boolean, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred(events)) {
    if (Date.now() > end) throw new Error(`timed out; events: ${JSON.stringify(events)}`);
    await Bun.sleep(5);
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "qnicd-xs-sim-"));
  xsd = await startXenstored({ dir, log: () => {} });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await xsd?.close();
  xsd = undefined;
  rmSync(dir, { recursive: true, force: true });
});

test("node operations round-trip", async () => {
  const xs = await connect();
  await xs.write("/t/a", "1");
  await xs.write("/t/b", "two");
  await xs.mkdir("/t/c");
  expect(await xs.read("/t/b")).toBe("two");
  expect((await xs.directory("/t")).sort()).toEqual(["a", "b", "c"]);
  expect(await xs.tryRead("/t/none")).toBeUndefined();
  await expect(xs.read("/t/none")).rejects.toMatchObject({ code: "ENOENT" });
  await xs.setPerms("/t/a", [{ domid: 3, access: "n" }, { domid: 0, access: "r" }]);
  expect(permsToString(await xs.getPerms("/t/a"))).toBe("n3,r0");
  await xs.rm("/t");
  expect(await xs.tryRead("/t")).toBeUndefined();
  expect(await xs.getDomainPath(7)).toBe("/local/domain/7");
});

test("a watch fires once on registration, then per change, dispatched by token; unwatch stops it", async () => {
  const xs = await connect();
  const a: string[] = [];
  const b: string[] = [];
  const wa = await xs.watch("/w/a", (p) => a.push(p));
  await xs.watch("/w/b", (p) => b.push(p));
  await until(a, (e) => e.length === 1);
  await xs.write("/w/a/x", "1");
  await until(a, (e) => e.includes("/w/a/x"));
  expect(b).toEqual(["/w/b"]);
  await wa.unwatch();
  await xs.write("/w/a/y", "1");
  await xs.write("/w/b", "1"); // a round trip after the write: any event for /w/a/y would be here by now
  await until(b, (e) => e.length === 2);
  expect(a).toEqual(["/w/a", "/w/a/x"]);
});

test("conflicting transactions: the loser's body runs again and both increments land", async () => {
  const x1 = await connect();
  const x2 = await connect();
  await x1.write("/counter", "0");
  let runs = 0;
  let gate!: () => void;
  const opened = new Promise<void>((r) => (gate = r));
  const slow = x1.transaction(async (tx) => {
    runs++;
    const v = Number(await tx.read("/counter"));
    if (runs === 1) {
      gate();
      await Bun.sleep(50); // x2 commits meanwhile
    }
    await tx.write("/counter", String(v + 1));
  });
  await opened;
  await x2.transaction(async (tx) => tx.write("/counter", String(Number(await tx.read("/counter")) + 1)));
  await slow;
  expect(runs).toBe(2);
  expect(await x1.read("/counter")).toBe("2");
});

test("INTRODUCE fires @introduceDomain, RELEASE fires @releaseDomain", async () => {
  const xs = await connect();
  const ev: string[] = [];
  await xs.watch("@introduceDomain", (p) => ev.push(p));
  await xs.watch("@releaseDomain", (p) => ev.push(p));
  await until(ev, (e) => e.length === 2);
  expect(await xs.isDomainIntroduced(5)).toBe(false);
  await xs.introduce(5, 0xfeffc, 1);
  await until(ev, (e) => e.length === 3);
  expect(ev[2]).toBe("@introduceDomain");
  expect(await xs.isDomainIntroduced(5)).toBe(true);
  await xs.release(5);
  await until(ev, (e) => e.length === 4);
  expect(ev[3]).toBe("@releaseDomain");
  expect(await xs.isDomainIntroduced(5)).toBe(false);
});

test("an oversized write is refused before sending; the connection stays usable", async () => {
  const xs = await connect();
  await expect(xs.write("/big", "x".repeat(5000))).rejects.toMatchObject({ code: "E2BIG" });
  await xs.write("/ok", "1");
  expect(await xs.read("/ok")).toBe("1");
});

test("xenstored restart mid-session: the client reconnects, the tree persisted, watches fire again", async () => {
  const xs = await connect();
  const seen: string[] = [];
  const events: string[] = [];
  xs.on("disconnected", () => events.push("disconnected"));
  xs.on("reconnected", () => events.push("reconnected"));
  await xs.watch("/r", (p) => seen.push(p));
  await xs.write("/r/before", "1");
  await until(seen, (e) => e.includes("/r/before"));

  const n = seen.length;
  await xsd!.close();
  await until(events, (e) => e.includes("disconnected"));
  // While xenstored is down: a write fails at once and clearly; a read waits for the reconnect.
  const w = await xs.write("/r/during", "1").catch((e) => e);
  expect(w).toBeInstanceOf(XenstoreConnectionError);
  const r = xs.read("/r/before");

  xsd = await startXenstored({ dir, log: () => {} });
  expect(await r).toBe("1");
  await until(events, (e) => e.includes("reconnected"));
  await until(seen, (e) => e.length > n);
  expect(seen[n]).toBe("/r"); // fired once on re-registration
  await xs.write("/r/after", "1");
  await until(seen, (e) => e.includes("/r/after"));
  expect(events).toEqual(["disconnected", "reconnected"]);
});
