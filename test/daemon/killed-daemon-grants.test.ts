// kill -9 of the daemon (the process running src/main.ts) while it serves a guest: the ring pages
// it had mapped are released as a dead process's are on Xen, so the guest can end access to them
// (and a successor can map them again). Before, the sim kept them pinned for ever.
import { afterEach, expect, test } from "bun:test";
import { spawn, type Subprocess } from "bun";
import { resolve } from "node:path";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { FakeFrontend } from "../pool/fake-frontend.ts";
import { ScriptedFrontend } from "../backend/scripted-frontend.ts";
import { startSimHost, type SimHost } from "../backend/sim-host.ts";

const MAIN = resolve(import.meta.dir, "../../src/main.ts");
let host: SimHost | undefined;
let proc: Subprocess<"ignore", "ignore", "ignore"> | undefined;
let rings: FakeFrontend | undefined;
afterEach(async () => {
  rings?.close();
  rings = undefined;
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
  proc = undefined;
  await host?.close();
  host = undefined;
});

test("SIGKILL of the daemon: the guest can end access to the ring pages it had mapped", async () => {
  host = await startSimHost({ initTimeoutMs: 10_000 });
  proc = spawn([process.execPath, MAIN, "--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
    env: { PATH: process.env.PATH ?? "" },
  });
  const d = await host.ts.create("alice", { vifs: 1 });
  rings = new FakeFrontend(host.dir, d.domid);
  const f = new ScriptedFrontend(await host.guestClient(d.domid), d.domid, 0);
  await f.connect({ txRingRef: String(rings.txRef), rxRingRef: String(rings.rxRef), evtchn: String(rings.txPort) });
  await f.waitBackend(S.Connected);
  // Served: both rings mapped, so the guest may not take them back.
  expect(rings.mapped(rings.txRef) && rings.mapped(rings.rxRef)).toBe(true);
  expect(rings.guest.endAccess(rings.txRef)).toBe(false);

  proc.kill("SIGKILL");
  expect(await proc.exited).not.toBe(0);
  expect(rings.guest.endAccess(rings.txRef)).toBe(true);
  expect(rings.guest.endAccess(rings.rxRef)).toBe(true);
  expect(rings.mapped(rings.txRef) || rings.mapped(rings.rxRef)).toBe(false);
}, 30_000);
