// The daemon on a simulated host with guests whose rings the test writes by hand: a hostile
// frontend (anything a guest can write: ring indices, slots, grants, events, xenstore nodes) and
// well-behaved neighbours on the same daemon and the same worker, whose loss must stay zero.
// Shared by the advisory tests in this directory (one file per XSA class) and test/daemon.
import { expect } from "bun:test";
import { loadConfig } from "../../src/config/index.ts";
import { startDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger } from "../../src/log.ts";
import { createWorkerPool } from "../../src/pool/index.ts";
import { openGrantAudit, type GrantAudit } from "../../src/sim/hypervisor/index.ts";
import { readVifStats, type VifStats } from "../../src/stats/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { ScriptedFrontend, type RingNodes } from "../backend/scripted-frontend.ts";
import { startSimHost, until, type SimHost } from "../backend/sim-host.ts";
import { drainRx, FakeFrontend, frames, macOf } from "../pool/fake-frontend.ts";

export interface RawGuest {
  name: string;
  domid: number;
  /** `vif<domid>.0`, the daemon's name for it. */
  vif: string;
  /** Its xenstore side (Linux netfront's handshake, or anything hostile). */
  f: ScriptedFrontend;
  /** Its rings, grants and event channel. */
  fe: FakeFrontend;
  mac: Uint8Array;
}

export interface RawGuestOptions {
  /** What its netfront writes besides (or instead of) its real rings; a function gets the rings first. */
  nodes?: RingNodes | ((fe: FakeFrontend) => RingNodes);
  /** false: do not wait for the backend's Connected (a guest expected to fail). */
  connected?: boolean;
}

/**
 * A guest created by the toolstack whose netfront is the test: granted ring pages (FakeFrontend)
 * announced through xenstore as Linux netfront does (ScriptedFrontend, asking for SG and GSO).
 * `nodes` overrides what it writes; `connected: false` skips waiting for the backend's Connected.
 */
export async function rawGuest(h: SimHost, name: string, o: RawGuestOptions & { n?: number } = {}): Promise<RawGuest> {
  const d = await h.ts.create(name, { vifs: 1 });
  const fe = new FakeFrontend(h.dir, d.domid);
  const f = new ScriptedFrontend(await h.guestClient(d.domid), d.domid, 0);
  try {
    const nodes = typeof o.nodes === "function" ? o.nodes(fe) : o.nodes;
    await f.connect({ txRingRef: String(fe.txRef), rxRingRef: String(fe.rxRef), evtchn: String(fe.txPort), ...nodes });
    if (o.connected !== false) await f.waitBackend(S.Connected);
  } catch (e) {
    fe.close();
    throw e;
  }
  return { name, domid: d.domid, vif: `vif${d.domid}.0`, f, fe, mac: macOf(o.n ?? (d.domid & 0xff)) };
}

export interface HostileRigOptions {
  /** switch (default): neighbours a -> b through the daemon's switch; null: SG/GSO offered, the neighbour's tx is counted. */
  peer?: "switch" | "null";
  datapath?: "batched" | "seed";
  /** One worker (default): the hostile vif and its neighbours share it, the hardest case. */
  workers?: number;
  rxStallMs?: number;
  rxQueueBytes?: number;
}

export interface HostileRig {
  host: SimHost;
  daemon: Daemon;
  logs: string[];
  peer: "switch" | "null";
  /** The hostile guest (connected first, so it holds the first slot of the worker). */
  bad: RawGuest;
  /** Well-behaved neighbours: a sends; b receives (switch peer only); both drain their rx rings all along. */
  a: RawGuest;
  b: RawGuest | null;
  /** A further raw guest on the same daemon. */
  guest(name: string, o?: RawGuestOptions): Promise<RawGuest>;
  /** Frames b received whose source MAC is `from`'s (b takes everything as it comes). */
  receivedByB(from: { mac: Uint8Array }): Uint8Array[];
  /** The vif's counters as its worker publishes them (null once it is gone). */
  stats(g: RawGuest): VifStats | null;
  /** Waits until `done` holds for g's counters; returns the last ones read. */
  statsUntil(g: RawGuest, done: (s: VifStats) => boolean, ms?: number): Promise<VifStats>;
  /**
   * `n` frames from neighbour a, each answered OKAY once and in order; with the switch every one
   * reaches b intact and in order, with the null peer a's counters show them sent with no drop.
   */
  neighboursForward(n: number): Promise<void>;
  /** The backend's error node for g, or undefined. */
  errorNode(g: RawGuest): Promise<string | undefined>;
  /** g disabled: its backend Closing and an error node "71 data path: <message>" matching `message`. */
  expectFatal(g: RawGuest, message: RegExp): Promise<string>;
  /** The grant-access audit of g's domain, enabled (closed with the rig). */
  audit(g: RawGuest): GrantAudit;
  close(): Promise<void>;
}

export async function startHostileRig(o: HostileRigOptions = {}): Promise<HostileRig> {
  const peer = o.peer ?? "switch";
  const host = await startSimHost();
  const logs: string[] = [];
  const guests: RawGuest[] = [];
  const audits: GrantAudit[] = [];
  let daemon: Daemon | undefined;
  let sentByA = 0;
  let drainer: { stop(): Promise<void> } | undefined;
  const close = async () => {
    await drainer?.stop();
    for (const a of audits) {
      a.disable();
      a.close();
    }
    await daemon?.stop();
    for (const g of guests) g.fe.close();
    await host.close();
  };
  try {
    const datapath = o.datapath ?? "batched";
    const workers = o.workers ?? 1;
    const argv = ["--platform", "sim", "--sim-dir", host.dir, "--http", "127.0.0.1:0", "--workers", String(workers), "--peer", peer, "--datapath", datapath];
    const config = loadConfig({ argv, env: {} });
    daemon = await startDaemon(config, {
      log: createLogger({ level: "debug", format: "text", write: (l) => logs.push(l) }),
      createPool: (c) =>
        createWorkerPool({
          platform: c.platform.config,
          workers: c.workers,
          stats: c.stats,
          log: c.log,
          datapath,
          // As the daemon's own pool: SG/GSO is offered with every peer on the batched path.
          scatterGather: datapath === "batched",
          rxStallMs: o.rxStallMs,
          rxQueueBytes: o.rxQueueBytes,
        }),
    });
    const d = daemon;
    const add = async (name: string, go: RawGuestOptions = {}) => {
      const g = await rawGuest(host, name, { ...go, n: guests.length + 1 });
      guests.push(g);
      return g;
    };
    const bad = await add("mallory");
    const a = await add("alice");
    const b = peer === "switch" ? await add("bob") : null;
    // a and b take every frame as it comes (so broadcast floods from the hostile guest never
    // overflow them); b's are kept, sorted by source MAC.
    const byMac = new Map<string, Uint8Array[]>();
    const key = (mac: Uint8Array) => Array.from(mac).join(":");
    drainer = drainRx(b ? [a.fe, b.fe] : [a.fe], (fe, frame) => {
      if (fe !== b?.fe) return;
      const k = key(frame.subarray(6, 12));
      let l = byMac.get(k);
      if (!l) byMac.set(k, (l = []));
      l.push(frame);
    });
    const stats = (g: RawGuest) => {
      const v = d.vifs().find((x) => x.domid === g.domid);
      return v?.slot ? readVifStats(d.stats, v.slot) : null;
    };
    const rig: HostileRig = {
      host,
      daemon: d,
      logs,
      peer,
      bad,
      a,
      b,
      guest: add,
      receivedByB: (from) => byMac.get(key(from.mac)) ?? [],
      stats,
      async statsUntil(g, done, ms = 5000) {
        const end = Date.now() + ms;
        for (;;) {
          const s = stats(g);
          if (s && done(s)) return s;
          if (Date.now() > end) throw new Error(`${g.vif}: counters never reached the expected values: ${JSON.stringify(s)}`);
          await Bun.sleep(2);
        }
      },
      async neighboursForward(n) {
        const before = stats(a)!;
        const seen = rig.receivedByB(a).length;
        const all: Uint8Array[] = [];
        let id = sentByA;
        for (let sent = 0; sent < n; ) {
          const k = Math.min(48, n - sent);
          const fs = frames(a.mac, k, id);
          a.fe.sendFrames(fs, id);
          expect(await a.fe.responses(k)).toEqual(fs.map((_, i) => ({ id: (id + i) & 0xffff, status: NETIF_RSP_OKAY })));
          id += k;
          sent += k;
          all.push(...fs);
        }
        const after = await rig.statsUntil(a, (s) => s.tx_packets >= before.tx_packets + n);
        expect([after.tx_packets - before.tx_packets, after.tx_drops - before.tx_drops, after.tx_errors - before.tx_errors]).toEqual([n, 0, 0]);
        if (b) {
          await until(`${n} frames from ${a.vif} at ${b.vif}`, () => rig.receivedByB(a).length >= seen + n);
          expect(rig.receivedByB(a).slice(seen)).toEqual(all);
        }
        sentByA += n;
        // Nothing lost anywhere on the neighbours' side of the daemon.
        for (const g of b ? [a, b] : [a]) {
          const s = stats(g)!;
          expect({ vif: g.vif, rx_drops: s.rx_drops, rx_errors: s.rx_errors, tx_drops: s.tx_drops, tx_errors: s.tx_errors, carrier: s.carrier }).toEqual({ vif: g.vif, rx_drops: 0, rx_errors: 0, tx_drops: 0, tx_errors: 0, carrier: 1 });
          expect(await g.f.backendState()).toBe(S.Connected);
        }
      },
      errorNode: (g) => host.xs.tryRead(`/local/domain/0/error/backend/vif/${g.domid}/0/error`),
      async expectFatal(g, message) {
        await g.f.waitBackend(S.Closing);
        const node = await until(`${g.vif}'s error node`, () => rig.errorNode(g));
        expect(node).toMatch(/^71 data path: /);
        expect(node.slice("71 data path: ".length)).toMatch(message);
        return node;
      },
      audit(g) {
        const au = openGrantAudit(host.dir, g.domid);
        au.enable();
        audits.push(au);
        return au;
      },
      close,
    };
    return rig;
  } catch (e) {
    await close();
    throw e;
  }
}
