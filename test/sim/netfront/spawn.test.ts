import { afterEach, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { netfrontGuestFiles, runningNetfrontGuest, startNetfrontGuest, stopNetfrontGuests } from "../../../src/sim/netfront/spawn.ts";
import { playNetback, startHost, TestBackend, until } from "./harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const events = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : []);

test("a detached guest started for the toolstack connects, logs its events to a file, and is stopped by pid file", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const player = await playNetback(be);
  cleanups.push(() => player.stop());
  const pid = startNetfrontGuest(host.dir, domid, 0);
  cleanups.push(() => stopNetfrontGuests(host.dir, domid).then(() => {}));
  const files = netfrontGuestFiles(host.dir, domid, 0);
  // Until the child has exec'd, /proc/<pid>/cmdline is still ours and names no netfront.
  await until("the guest's own command line", () => runningNetfrontGuest(host.dir, domid, 0) !== undefined);
  expect(runningNetfrontGuest(host.dir, domid, 0)).toBe(pid);
  expect(() => startNetfrontGuest(host.dir, domid, 0)).toThrow(/already runs/);
  await until("connected event", () => events(files.eventsFile).find((e) => e.event === "connected"), 10_000);
  expect(await be.frontendState()).toBe(4);
  expect(await stopNetfrontGuests(host.dir, domid)).toBe(1);
  expect(runningNetfrontGuest(host.dir, domid, 0)).toBeUndefined();
  expect(existsSync(files.pidFile)).toBe(false);
  expect(events(files.eventsFile).at(-1)).toEqual({ event: "exit" });
}, 30_000);

test("the toolstack's vCPU count and a max_queues setting reach the detached guest's command line and its queue count", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g");
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  // The player maps flat keys: one queue, which xen_netfront.max_queues=1 gives a 4-vCPU guest.
  const player = await playNetback(be);
  cleanups.push(() => player.stop());
  const pid = startNetfrontGuest(host.dir, domid, 0, { vcpus: 4, maxQueues: 1 });
  cleanups.push(() => stopNetfrontGuests(host.dir, domid).then(() => {}));
  // Right after spawn() the child may not have exec'd yet: wait for its own command line.
  const cmd = await until("the guest's command line", () => {
    const c = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return c.includes("--vcpus") && c;
  });
  expect(cmd.slice(cmd.indexOf("--vcpus"), cmd.indexOf("--vcpus") + 2)).toEqual(["--vcpus", "4"]);
  expect(cmd.slice(cmd.indexOf("--max-queues"), cmd.indexOf("--max-queues") + 2)).toEqual(["--max-queues", "1"]);
  const files = netfrontGuestFiles(host.dir, domid, 0);
  const connected = await until("connected event", () => events(files.eventsFile).find((e) => e.event === "connected"), 10_000);
  expect([connected.numQueues, connected.queues.length]).toEqual([1, 1]);
}, 30_000);
