// The daemon against the sim's Linux-faithful netfront (src/sim/netfront): the handshake, a reset
// walk (5, 6, 1) and a reconnect on fresh rings, frames counted, and teardown by the toolstack.
import { afterEach, expect, test } from "bun:test";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { buildArp, createNetfront, parseIPv4, parseMac, type Netfront } from "../../src/sim/netfront/index.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startSimHost, until, type SimHost } from "../backend/sim-host.ts";

let host: SimHost | undefined;
let daemon: Daemon | undefined;
const fronts: Netfront[] = [];
const logs: string[] = [];
afterEach(async () => {
  for (const f of fronts.splice(0)) await f.close();
  await daemon?.stop();
  daemon = undefined;
  await host?.close();
  host = undefined;
  logs.length = 0;
});

async function start() {
  host = await startSimHost();
  const config = loadConfig({ argv: ["--platform", "sim", "--sim-dir", host.dir, "--peer", "null", "--http", "127.0.0.1:0", "--workers", "1"], env: {} });
  daemon = await startDaemon(config, { log: createLogger({ level: "debug", format: "text", write: (l) => logs.push(l) }) });
  return { host, daemon };
}

async function vif(d: Daemon, name: string) {
  return (await (await fetch(`${d.http.url}/vifs/${name}`)).json()) as {
    backendState: { number: number };
    frontendState: { number: number };
    counters: Record<string, number> | null;
  };
}

test("netfront connects through the daemon, resets (5, 6, 1) and reconnects on fresh rings", async () => {
  const { host, daemon } = await start();
  const d = await host.ts.create("alice", { vifs: 1 });
  const nf = await createNetfront({ dir: host.dir, domid: d.domid, devid: 0, resetWaitMs: 2000, probeWaitMs: 2000 });
  fronts.push(nf);
  const first = await nf.whenConnected(5000);
  expect(nf.backendState).toBe(S.Connected);
  expect(first.mac).toBe(await host.xs.read(`/local/domain/0/backend/vif/${d.domid}/0/mac`));

  // A frame from the guest reaches the worker (the null peer drops it, and counts it).
  expect(nf.send(buildArp(1, parseMac(first.mac)!, parseIPv4("10.0.0.2")!, new Uint8Array(6), parseIPv4("10.0.0.1")!))).toBe(true);
  await until("tx counted", async () => {
    const c = (await vif(daemon, `vif${d.domid}.0`)).counters;
    return c !== null && c.tx_packets + c.tx_drops >= 1;
  });

  await nf.reset();
  const second = await nf.whenConnected(5000);
  expect(second.txRingRef).not.toBe(first.txRingRef);
  const v = await vif(daemon, `vif${d.domid}.0`);
  expect(v.backendState.number).toBe(S.Connected);
  expect(v.frontendState.number).toBe(S.Connected);
  expect(logs.filter((l) => l.includes(`vif${d.domid}.0: connected`)).length).toBe(2);
});

test("xl destroy of a guest whose netfront is connected: the vif is closed and forgotten, libxl does not time out", async () => {
  const { host, daemon } = await start();
  const d = await host.ts.create("alice", { vifs: 1 });
  const nf = await createNetfront({ dir: host.dir, domid: d.domid, devid: 0, resetWaitMs: 2000, probeWaitMs: 2000 });
  fronts.push(nf);
  await nf.whenConnected(5000);
  // The guest dies first (its driver stops), as with a real destroy.
  await nf.close();
  const t0 = Date.now();
  await host.ts.destroy(String(d.domid));
  expect(Date.now() - t0).toBeLessThan(3000);
  await until("vif forgotten", () => daemon.vifs().length === 0);
  expect(host.libxlLog.filter((l) => / error /i.test(l))).toEqual([]);
});
