// The daemon fixture's promise: whatever a test did, its teardown leaves no daemon, no host, no
// runtime directory and no TAP; a step that fails does not stop the ones after it.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { until } from "../backend/sim-host.ts";
import { linkExists } from "../net/tap-helper.ts";
import { canUseTapAndIp, daemonFixture } from "./daemon-fixture.ts";

const fx = daemonFixture();

test("a failing cleanup does not keep the daemon or the host alive: teardown throws its error after stopping them", async () => {
  const host = await fx.startHost();
  const daemon = await fx.startDaemon(["--workers", "1", "--peer", "null"], { log: "info" });
  await fx.guest("alice");
  fx.cleanup(() => {
    throw new Error("the test's own cleanup failed");
  });
  const runtimeDir = daemon.runtimeDir;
  expect(existsSync(runtimeDir)).toBe(true);
  await expect(fx.teardown()).rejects.toThrow("the test's own cleanup failed");
  // Stopped: its HTTP API is gone.
  expect(await fetch(`${daemon.http.url}/health`).then(() => "answered", () => "refused")).toBe("refused");
  expect(existsSync(runtimeDir)).toBe(false);
  expect(existsSync(host.dir)).toBe(false);
  expect(() => fx.daemon).toThrow("no daemon runs");
  expect(() => fx.host).toThrow("no host");
});

test("after restartDaemon() the daemon stopped is the successor; the first one's logs are kept beside its own", async () => {
  await fx.startHost();
  const first = await fx.startDaemon(["--workers", "1", "--peer", "null"], { log: "info" });
  const alice = await fx.guest("alice");
  const second = await fx.restartDaemon();
  expect(second).not.toBe(first);
  expect(fx.daemon).toBe(second);
  await until("alice taken over", () => second.vifs().some((v) => v.domid === alice.domid && v.slot !== null));
  expect(fx.logs.some((l) => l.includes("stopped for a restart"))).toBe(true);
  await fx.teardown();
  expect(await fetch(`${second.http.url}/health`).then(() => "answered", () => "refused")).toBe("refused");
  expect(fx.logs).toEqual([]);
});

test.skipIf(!canUseTapAndIp())("a restart whose successor never comes: teardown has a last daemon take the vifs over and close them, so the persistent TAP goes too", async () => {
  const prefix = `qf${(process.pid % 1296).toString(36)}x`;
  await fx.startHost();
  await fx.startDaemon(["--workers", "1", "--peer", "tap", "--vifname-prefix", prefix], { log: "info" });
  const alice = await fx.guest("alice");
  const tap = `${prefix}${alice.domid}.0`;
  await expect(fx.restartDaemon(() => Promise.reject(new Error("failed between the stop and the start")))).rejects.toThrow("failed between");
  // Left for a successor: the TAP persists while no qnicd runs.
  expect(linkExists(tap)).toBe(true);
  await fx.teardown();
  // The kernel drops a TAP once an io_uring lets go of its fd, from a work queue: soon, not at once.
  await until("the TAP gone", () => !linkExists(tap), 5000);
});
