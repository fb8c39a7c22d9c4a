// A guest that rewrites its frontend nodes as fast as xenstored takes them, for 10 s, against the
// daemon as its own process: every write is a re-evaluation of its vif, and each of those used to
// be worth a log line or several (3,000-4,000 lines, up to 467 KiB, in 10 s: a guest could fill
// dom0's disk). The daemon's lines about that vif stay under 50 (a burst, then one summary per
// window), while a neighbour vif connecting in the middle of the storm and the daemon's own lines
// are logged in full.
import { afterEach, expect, test } from "bun:test";
import { startRig, type Rig } from "../../bench/lib/sim-daemon.ts";
import { createNetfront, type Netfront } from "../../src/sim/netfront/index.ts";
import { simPaths } from "../../src/sim/paths.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { XenstoreClient } from "../../src/xenstore/index.ts";
import { FakeFrontend } from "../pool/fake-frontend.ts";
import { ScriptedFrontend } from "../backend/scripted-frontend.ts";

const STORM_MS = 10_000;
const SEED = 15;

let rig: Rig | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await rig?.close();
  rig = undefined;
});

/** Deterministic choices (mulberry32), so a failing storm can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One write a hostile netfront could make to its own directory: its state (every value, and
 * garbage), its ring references and event channel (valid, foreign, garbage), the features it
 * requests. Valid values come often enough that the vif keeps connecting and failing.
 */
function stormWrite(f: ScriptedFrontend, rings: FakeFrontend, r: () => number): Promise<void> {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const node = pick(["state", "state", "state", "tx-ring-ref", "rx-ring-ref", "event-channel", "request-rx-copy", "multi-queue-num-queues", "feature-sg"]);
  const value =
    node === "state"
      ? pick([String(S.Initialising), String(S.Connected), String(S.Connected), String(S.Closing), String(S.Closed), "9", "x"])
      : node === "tx-ring-ref"
        ? pick([String(rings.txRef), "8000", "eight"])
        : node === "rx-ring-ref"
          ? pick([String(rings.rxRef), "8001", "-1"])
          : node === "event-channel"
            ? pick([String(rings.txPort), "1023", "port"])
            : pick(["0", "1", "4", "yes"]);
  return f.xs.write(`${f.F}/${node}`, value);
}

test("a guest rewriting its frontend nodes for 10 s gets under 50 log lines; a neighbour and the daemon are not silenced", async () => {
  rig = await startRig({ workers: 1 });
  const r = rig;
  const d = await r.ts.create("storm", { vifs: 1 });
  const rings = new FakeFrontend(r.dir, d.domid);
  cleanups.push(() => rings.close());
  const gxs = await XenstoreClient.connect({ path: simPaths(r.dir).domainSocket(d.domid), reconnect: { enabled: false } });
  cleanups.push(() => gxs.close());
  const f = new ScriptedFrontend(gxs, d.domid, 0);
  await f.connect({ txRingRef: String(rings.txRef), rxRingRef: String(rings.rxRef), evtchn: String(rings.txPort) });
  await f.waitBackend(S.Connected);
  const vif = `vif${d.domid}.0`;
  const aboutStorm = (l: string) => new RegExp(`\\b${vif.replace(".", "\\.")}\\b`).test(l);
  const before = r.daemonLog.filter(aboutStorm).length;

  // The storm, with a neighbour guest created and connected half-way through it.
  const r0 = rng(SEED);
  let writes = 0;
  let neighbour: { vif: string; nf: Netfront } | undefined;
  const neighbourJoins = (async () => {
    await Bun.sleep(STORM_MS / 2);
    const n = await r.ts.create("neighbour", { vifs: 1 });
    const nf = await createNetfront({ dir: r.dir, domid: n.domid, devid: 0 });
    cleanups.push(() => nf.close());
    await nf.whenConnected(15_000);
    neighbour = { vif: `vif${n.domid}.0`, nf };
  })();
  const end = Date.now() + STORM_MS;
  while (Date.now() < end) {
    await stormWrite(f, rings, r0);
    writes++;
  }
  await neighbourJoins;
  // Let the daemon work through what the storm queued.
  await Bun.sleep(1000);
  const stormLines = r.daemonLog.filter(aboutStorm).length - before;
  const bytes = r.daemonLog.filter(aboutStorm).reduce((n, l) => n + l.length + 1, 0);
  if (process.env.LOG_STORM_SHOW) console.log(r.daemonLog.filter(aboutStorm).join("\n"));
  console.log(`log storm: ${writes} frontend writes in ${STORM_MS} ms -> ${stormLines} daemon log lines about ${vif} (${bytes} bytes)`);

  const { exitCode } = await r.close();
  expect(exitCode).toBe(0);
  expect(writes).toBeGreaterThan(1000);
  expect(stormLines).toBeLessThan(50);
  // The limiter said what it held back, in its own words.
  expect(r.daemonLog.some((l) => l.includes(`${vif}: `) && /\d[\d,]* similar lines suppressed in the last 10 s/.test(l))).toBe(true);
  // The neighbour's whole connection story, and the daemon's own last words, were logged.
  const n = neighbour!.vif;
  for (const what of [`${n}: backend Initialising -> InitWait`, `${n}: connecting`, `${n}: connected`, `${n}: backend InitWait -> Connected`])
    expect(r.daemonLog.some((l) => l.includes(what))).toBe(true);
  expect(r.daemonLog.some((l) => l.includes("stopped: every vif closed, nothing left mapped or running"))).toBe(true);
}, 60_000);
