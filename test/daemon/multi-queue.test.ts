// Multi-queue end to end: the daemon against the sim's Linux-faithful netfront on a guest with
// several vCPUs. The netfront opens min(vCPUs, multi-queue-max-queues) queues with split event
// channels; each queue is served on its own (spread over the workers), carries its flows, and
// /vifs shows each queue's counters beside their sum.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { canUseTap } from "../net/tap-helper.ts";
import { createSocket } from "node:dgram";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { IDENTITY_OFFSET, J_IDENTITY_LEN, type VifIdentity } from "../../src/state/vif-journal.ts";
import { buildUdpFrame, parseMac } from "../../src/net/frames.ts";
import { until } from "../backend/sim-host.ts";
import { daemonFixture } from "../support/daemon-fixture.ts";

const fx = daemonFixture();

interface QueueJson {
  queue: number;
  worker: number;
  counters: Record<string, number> | null;
}
interface VifJson {
  worker: number;
  features: Record<string, boolean | number>;
  counters: Record<string, number> | null;
  queues: QueueJson[];
}

async function start(extra: string[]) {
  const host = await fx.startHost();
  await fx.startDaemon(["--workers", "2", "--max-queues", "4", ...extra], { log: "warn" });
  return { host };
}

/** The current daemon's /vifs/<name> (after a restart, the successor's). */
const vif = (name: string) => fx.vif<VifJson>(name);

const ip = (s: string) => s.split(".").map(Number) as [number, number, number, number];

test("a 2-vCPU guest opens two queues with split event channels; its flows spread over both, each served on its own worker; /vifs sums them", async () => {
  const { host } = await start(["--peer", "switch"]);
  const a = await host.ts.create("alice", { vifs: 1 });
  const b = await host.ts.create("bob", { vifs: 1 });
  const alice = await fx.netfront({ domid: a.domid, vcpus: 2 });
  const bob = await fx.netfront({ domid: b.domid, vcpus: 1 });
  const ai = await alice.whenConnected(5000);
  const bi = await bob.whenConnected(5000);
  expect(ai.numQueues).toBe(2);
  expect(ai.queues.length).toBe(2);
  expect(ai.split).toBe(true);
  expect(bi.queues.length).toBe(1);
  expect(await host.xs.read(`/local/domain/0/backend/vif/${a.domid}/0/multi-queue-max-queues`)).toBe("4");

  let got = 0;
  bob.onReceive((f) => {
    if (f.length === 200) got++;
  });
  // 64 flows (source ports) of 4 frames each: netfront picks a queue per flow.
  const flows = 64;
  for (let port = 0; port < flows; port++)
    for (let i = 0; i < 4; i++)
      expect(alice.send(buildUdpFrame({ srcMac: parseMac(ai.mac), dstMac: parseMac(bi.mac), srcIp: ip("10.0.0.2"), dstIp: ip("10.0.0.3"), srcPort: 40000 + port, dstPort: 9, size: 200 }))).toBe(true);
  await until("every frame at bob", () => got === flows * 4, 10_000);

  const perQueue = alice.queueStats().map((q) => q.counters.txPackets);
  expect(perQueue.every((n) => n > 0)).toBe(true);
  const v = await vif(`vif${a.domid}.0`);
  expect(v.features["multi-queue-num-queues"]).toBe(2);
  expect(v.features["feature-split-event-channels"]).toBe(true);
  expect(v.queues.map((q) => q.queue)).toEqual([0, 1]);
  // The pool spreads one vif's queues over the workers, as netback runs each queue on its own threads.
  expect(new Set(v.queues.map((q) => q.worker)).size).toBe(2);
  await until("the daemon counted what each queue sent", async () => {
    const now = await vif(`vif${a.domid}.0`);
    return now.queues.every((q, i) => (q.counters?.tx_packets ?? 0) >= perQueue[i]!);
  });
  const after = await vif(`vif${a.domid}.0`);
  const sum = after.queues.reduce((s, q) => s + q.counters!.tx_packets, 0);
  expect(after.counters!.tx_packets).toBe(sum);
  expect(after.counters!.carrier).toBe(1);
});

test("a guest limited to one queue (max_queues=1) keeps the single-queue layout and is served as before", async () => {
  const { host } = await start(["--peer", "null"]);
  const a = await host.ts.create("alice", { vifs: 1 });
  const nf = await fx.netfront({ domid: a.domid, vcpus: 4, maxQueues: 1 });
  const info = await nf.whenConnected(5000);
  expect(info.queues.length).toBe(1);
  expect(await host.xs.read(`/local/domain/${a.domid}/device/vif/0/tx-ring-ref`)).toBe(String(info.txRingRef));
  const v = await vif(`vif${a.domid}.0`);
  expect(v.queues.length).toBe(1);
  expect(v.features["multi-queue-num-queues"]).toBe(1);
});

test.skipIf(!canUseTap())("--peer tap: one multi-queue TAP with a queue per ring pair; the host's flows reach the guest over both queues", async () => {
  const prefix = `qm${(process.pid % 1000).toString(36)}x`;
  const { host } = await start(["--peer", "tap", "--vifname-prefix", prefix]);
  const a = await host.ts.create("alice", { vifs: 1 });
  const nf = await fx.netfront({ domid: a.domid, vcpus: 2, ip: "10.97.0.2" });
  const info = await nf.whenConnected(5000);
  expect(info.queues.length).toBe(2);
  const ifname = `${prefix}${a.domid}.0`;
  // tun shows one tx-/rx- queue directory per attached queue fd.
  await until("two TAP queues attached", () => readdirSync(`/sys/class/net/${ifname}/queues`).filter((q) => q.startsWith("rx-")).length === 2);
  expect(spawnSync("ip", ["addr", "add", "10.97.0.1/24", "dev", ifname]).status).toBe(0);
  expect(spawnSync("ip", ["neigh", "replace", "10.97.0.2", "lladdr", info.mac, "dev", ifname]).status).toBe(0);
  let got = 0;
  nf.onReceive((f) => {
    if (f.length > 42 && f[23] === 17) got++;
  });
  const socks = Array.from({ length: 32 }, () => createSocket("udp4"));
  try {
    await until("frames of many flows reached the guest over both queues", async () => {
      for (const s of socks) s.send("hello", 9, "10.97.0.2");
      await Bun.sleep(20);
      return nf.queueStats().every((q) => q.counters.rxPackets > 0);
    }, 10_000);
  } finally {
    for (const s of socks) s.close();
  }
  expect(got).toBeGreaterThan(0);
  const v = await vif(`vif${a.domid}.0`);
  expect(v.queues.every((q) => (q.counters?.rx_packets ?? 0) > 0)).toBe(true);
});

test("a 2-queue guest with a control ring on the switch: each frame reaches it on the queue its mapping names, with a hash extra, so the hash reached its other queue's worker; a restart keeps it so", async () => {
  const { host } = await start(["--peer", "switch"]);
  const a = await host.ts.create("alice", { vifs: 1 });
  const b = await host.ts.create("bob", { vifs: 1 });
  const mapping = [0, 1, 1];
  const alice = await fx.netfront({ domid: a.domid, vcpus: 2, ctrlRing: { hash: { mapping } } });
  const bob = await fx.netfront({ domid: b.domid });
  const ai = await alice.whenConnected(5000);
  const bi = await bob.whenConnected(5000);
  expect(ai.queues.length).toBe(2);
  expect((await alice.hashConfigured()!).every((r) => r.status === 0)).toBe(true);
  let round: { queue: number; hash?: number }[] = [];
  alice.onReceive((f, m) => {
    if (f.length === 200) round.push({ queue: m.queue, hash: m.hash?.value });
  });
  // UDP is hashed by its addresses (netif.h has no UDP type): one source address per flow.
  const toAlice = (i: number) => buildUdpFrame({ srcMac: parseMac(bi.mac), dstMac: parseMac(ai.mac), srcIp: ip(`10.0.1.${10 + i}`), dstIp: ip("10.0.0.2"), srcPort: 6000, dstPort: 9, size: 200 });
  // Alice's MAC is learned on queue 0 (unsteered, every unicast frame would go there); bob's
  // first frames are flooded until then, and floods are steered too.
  expect(alice.send(buildUdpFrame({ srcMac: parseMac(ai.mac), dstMac: parseMac(bi.mac), srcIp: ip("10.0.0.2"), dstIp: ip("10.0.0.3"), srcPort: 5, dstPort: 9, size: 100 }), { queue: 0 })).toBe(true);
  const steered = async () => {
    round = [];
    for (let i = 0; i < 16; i++) bob.send(toAlice(i));
    await Bun.sleep(50);
    return round.length >= 16 && new Set(round.map((r) => r.queue)).size === 2 && round.every((r) => r.hash !== undefined && mapping[r.hash % mapping.length] === r.queue);
  };
  await until("a round of 16 flows, every frame on the queue the mapping names, each with a hash extra", steered);
  // Taken over by the next qnicd: the guest never configures its hash again, and needs not.
  await fx.restartDaemon();
  await until("the same after a restart", steered);
  expect(alice.counters.connects).toBe(1);
});

test.skipIf(!canUseTap())("--peer tap with a control ring: each of the host's flows reaches the guest on the queue the frontend's mapping names (mapping[hash % size]), before and after a restart", async () => {
  const prefix = `qs${(process.pid % 1000).toString(36)}x`;
  const { host } = await start(["--peer", "tap", "--vifname-prefix", prefix]);
  const a = await host.ts.create("alice", { vifs: 1 });
  const mapping = [0, 1, 1];
  const nf = await fx.netfront({ domid: a.domid, vcpus: 2, ip: "10.96.0.2", ctrlRing: { hash: { mapping } } });
  const info = await nf.whenConnected(5000);
  expect(info.queues.length).toBe(2);
  expect((await nf.hashConfigured()!).every((r) => r.status === 0)).toBe(true);
  const ifname = `${prefix}${a.domid}.0`;
  // UDP is hashed by its addresses only (netif.h has no UDP hash type): one source address per flow.
  const sources = Array.from({ length: 16 }, (_, i) => `10.96.0.${10 + i}`);
  for (const src of sources) expect(spawnSync("ip", ["addr", "add", `${src}/24`, "dev", ifname]).status).toBe(0);
  expect(spawnSync("ip", ["neigh", "replace", "10.96.0.2", "lladdr", info.mac, "dev", ifname]).status).toBe(0);
  let round: { queue: number; hash?: number }[] = [];
  nf.onReceive((f, m) => {
    if (f.length > 42 && f[23] === 17) round.push({ queue: m.queue, hash: m.hash?.value });
  });
  const socks = await Promise.all(sources.map((address) => new Promise<ReturnType<typeof createSocket>>((resolve) => {
    const s = createSocket("udp4");
    s.bind({ address, port: 0 }, () => resolve(s));
  })));
  try {
    // The kernel's own flow hash would put about half of 16 flows on another queue than the
    // mapping names; a round where every frame agrees, on both queues, is the steering at work.
    const steered = async () => {
      round = [];
      for (const s of socks) s.send("hello", 9, "10.96.0.2");
      await Bun.sleep(50);
      return round.length >= 16 && new Set(round.map((r) => r.queue)).size === 2 && round.every((r) => r.hash !== undefined && mapping[r.hash % mapping.length] === r.queue);
    };
    await until("a round of 16 flows, every frame on the queue the mapping names", steered, 10_000);
    // The TAP persists, its program with it; the successor restores the journaled hash and steers anew.
    await fx.restartDaemon();
    await until("the same after a restart", steered, 10_000);
    expect(nf.counters.connects).toBe(1);
  } finally {
    for (const s of socks) s.close();
  }
});

// 48: as many as the simulated guest's 16384 grants serve (each queue grants 256 rx buffers), and
// more than the journal's identity held when queues were written as objects (about 45).
test("a 48-queue guest (--max-queues 64) connects, every queue with its journal, and a restart takes all 48 over", async () => {
  const { host } = await start(["--peer", "null", "--max-queues", "64"]);
  // 48 queues post 48 x 256 rx buffers: more than the default 8 MiB guest has.
  const a = await host.ts.create("alice", { vifs: 1, memoryMb: 128 });
  const nf = await fx.netfront({ domid: a.domid, vcpus: 48, maxQueues: 48 });
  expect((await nf.whenConnected(15_000)).queues.length).toBe(48);
  const name = `vif${a.domid}.0`;
  expect((await vif(name)).queues.length).toBe(48);
  await fx.restartDaemon();
  await until("all 48 queues taken over", async () => (await vif(name).catch(() => null))?.queues?.length === 48, 15_000);
  expect(nf.counters.connects).toBe(1);
});

test("journals written before queue refs were compact (queues as objects) are still taken over", async () => {
  const { host } = await start(["--peer", "null"]);
  const a = await host.ts.create("alice", { vifs: 1 });
  const nf = await fx.netfront({ domid: a.domid, vcpus: 2 });
  expect((await nf.whenConnected(5000)).queues.length).toBe(2);
  // While no qnicd runs, each journal's identity is rewritten as the earlier qnicd wrote it.
  await fx.restartDaemon((dir) => {
    const files = readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".journal"));
    expect(files.length).toBe(2);
    for (const f of files) {
      const path = `${dir}/${f}`;
      const buf = readFileSync(path);
      const len = buf.readUInt32LE(J_IDENTITY_LEN * 4);
      const id = JSON.parse(buf.subarray(IDENTITY_OFFSET, IDENTITY_OFFSET + len).toString()) as VifIdentity;
      const old = { ...id, queues: id.queueRefs!.map(([txRingRef, rxRingRef, txEvtchn, rxEvtchn]) => ({ txRingRef, rxRingRef, txEvtchn, rxEvtchn })), queueRefs: undefined };
      const json = Buffer.from(JSON.stringify(old));
      buf.fill(0, IDENTITY_OFFSET, IDENTITY_OFFSET + Math.max(len, json.length));
      json.copy(buf, IDENTITY_OFFSET);
      buf.writeUInt32LE(json.length, J_IDENTITY_LEN * 4);
      writeFileSync(path, buf);
    }
  });
  const name = `vif${a.domid}.0`;
  await until("both queues taken over", async () => (await vif(name).catch(() => null))?.queues?.length === 2, 10_000);
  expect(nf.counters.connects).toBe(1);
});
