// The sim netfront's queue negotiation, pinned against a backend played by hand that only writes
// xenstore nodes: how many queues it picks (talk_to_netback: min(multi-queue-max-queues,
// xennet_max_queues = min(8, vCPUs) unless max_queues is set)), what it writes for 1, 2 and 4
// queues with split or single event channels, the hostile variants a backend's validation meets,
// and that each flow leaves on one queue while received frames from any queue reach the receivers.
import { afterEach, expect, test } from "bun:test";
import { createNetfront, type NetfrontOptions } from "../../../src/sim/netfront/netfront.ts";
import { NETBACK_FEATURES, startHost, TestBackend, until, type Host } from "./harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Trace = { op: string; tx: number; args: readonly string[] }[];

async function setup(nfOpts: Partial<NetfrontOptions> = {}, trace?: Trace) {
  const host = await startHost();
  cleanups.push(() => host.close());
  // Each queue posts 256 rx pages: 8 queues need more than the default 8 MiB guest.
  const { domid } = await host.ts.create("guest", { nics: [{ mac: "00:16:3e:12:34:56" }], noWait: true, memoryMb: 16 });
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 300, probeWaitMs: 300, trace: (op, tx, args) => trace?.push({ op, tx, args }), ...nfOpts });
  cleanups.push(() => nf.close());
  return { host, domid, be, nf };
}

/** NETBACK_FEATURES with multi-queue-max-queues and split event channels as given (undefined: not offered). */
function features(maxQueues: number | undefined, split = true): Record<string, string> {
  const f: Record<string, string> = { ...NETBACK_FEATURES, "feature-split-event-channels": split ? "1" : "0" };
  if (maxQueues === undefined) delete f["multi-queue-max-queues"];
  else f["multi-queue-max-queues"] = String(maxQueues);
  return f;
}

/** Every node under F except the toolstack's, as key -> value (keys relative to F). */
async function frontendKeys(host: Host, F: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    const path = rel ? `${F}/${rel}` : F;
    for (const k of await host.xs.directory(path)) {
      const key = rel ? `${rel}/${k}` : k;
      const children = await host.xs.directory(`${F}/${key}`);
      if (children.length) await walk(key);
      else out[key] = await host.xs.read(`${F}/${key}`);
    }
  };
  await walk("");
  for (const k of ["backend", "backend-id", "state", "handle", "mac", "trusted", "mtu"]) delete out[k];
  return out;
}

const DEVICE_KEYS = {
  "request-rx-copy": "1",
  "feature-rx-notify": "1",
  "feature-sg": "1",
  "feature-gso-tcpv4": "1",
  "feature-gso-tcpv6": "1",
  "feature-ipv6-csum-offload": "1",
};

async function connected(be: TestBackend, offered: Record<string, string>) {
  await be.offer(offered);
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
}

test("one vCPU, or a backend that offers no multi-queue-max-queues: one queue, its keys at the top of the frontend directory", async () => {
  // A backend without multi-queue (today's qnicd): even a 4-vCPU guest writes no multi-queue-num-queues.
  const a = await setup({ vcpus: 4 });
  await connected(a.be, features(undefined));
  const ia = a.nf.connection!;
  expect(ia.queues).toHaveLength(1);
  expect(ia.numQueues).toBeUndefined();
  expect(await frontendKeys(a.host, a.be.F)).toEqual({
    "tx-ring-ref": String(ia.txRingRef),
    "rx-ring-ref": String(ia.rxRingRef),
    "event-channel-tx": String(ia.txPort),
    "event-channel-rx": String(ia.rxPort),
    ...DEVICE_KEYS,
  });
  // Offered 4 but one vCPU: multi-queue-num-queues = 1 is written (Linux writes it whenever the
  // backend offered), and the keys stay flat.
  const b = await setup({ vcpus: 1 });
  await connected(b.be, features(4, false));
  const ib = b.nf.connection!;
  expect(ib.numQueues).toBe(1);
  expect(ib.queues).toEqual([{ id: 0, dir: "", txRingRef: ib.txRingRef, rxRingRef: ib.rxRingRef, txPort: ib.txPort, rxPort: ib.txPort }]);
  expect(await frontendKeys(b.host, b.be.F)).toEqual({
    "multi-queue-num-queues": "1",
    "tx-ring-ref": String(ib.txRingRef),
    "rx-ring-ref": String(ib.rxRingRef),
    "event-channel": String(ib.txPort),
    ...DEVICE_KEYS,
  });
});

test("two queues with split event channels: multi-queue-num-queues, then queue-0 and queue-1 each with rings and tx/rx channels, all in one transaction in Linux's order", async () => {
  const trace: Trace = [];
  const { host, be, nf } = await setup({ vcpus: 2 }, trace);
  await connected(be, features(4));
  const info = nf.connection!;
  expect(info.numQueues).toBe(2);
  expect(info.queues.map((q) => q.dir)).toEqual(["queue-0", "queue-1"]);
  // Queue 0's values stay at the top level of ConnectionInfo for single-queue callers.
  expect([info.txRingRef, info.rxRingRef, info.txPort, info.rxPort]).toEqual([info.queues[0]!.txRingRef, info.queues[0]!.rxRingRef, info.queues[0]!.txPort, info.queues[0]!.rxPort]);
  const [q0, q1] = info.queues;
  // Four distinct ports and four distinct ring grants: nothing is shared between queues.
  expect(new Set([q0!.txPort, q0!.rxPort, q1!.txPort, q1!.rxPort]).size).toBe(4);
  expect(new Set([q0!.txRingRef, q0!.rxRingRef, q1!.txRingRef, q1!.rxRingRef]).size).toBe(4);
  expect(await frontendKeys(host, be.F)).toEqual({
    "multi-queue-num-queues": "2",
    "queue-0/tx-ring-ref": String(q0!.txRingRef),
    "queue-0/rx-ring-ref": String(q0!.rxRingRef),
    "queue-0/event-channel-tx": String(q0!.txPort),
    "queue-0/event-channel-rx": String(q0!.rxPort),
    "queue-1/tx-ring-ref": String(q1!.txRingRef),
    "queue-1/rx-ring-ref": String(q1!.rxRingRef),
    "queue-1/event-channel-tx": String(q1!.txPort),
    "queue-1/event-channel-rx": String(q1!.rxPort),
    ...DEVICE_KEYS,
  });
  const writes = trace.filter((t) => t.op === "WRITE" && t.args[0] !== `${be.F}/state`);
  expect(writes.map((t) => t.args[0]!.slice(be.F.length + 1))).toEqual([
    "multi-queue-num-queues",
    "queue-0/tx-ring-ref", "queue-0/rx-ring-ref", "queue-0/event-channel-tx", "queue-0/event-channel-rx",
    "queue-1/tx-ring-ref", "queue-1/rx-ring-ref", "queue-1/event-channel-tx", "queue-1/event-channel-rx",
    ...Object.keys(DEVICE_KEYS),
  ]);
  expect(new Set(writes.map((t) => t.tx)).size).toBe(1);
  expect(writes[0]!.tx).not.toBe(0);
});

test("four queues with one event channel each when the backend offers no split channels", async () => {
  const { host, be, nf } = await setup({ vcpus: 4 });
  await connected(be, features(8, false));
  const info = nf.connection!;
  expect(info.numQueues).toBe(4);
  expect(info.split).toBe(false);
  const want: Record<string, string> = { "multi-queue-num-queues": "4" };
  for (const q of info.queues) {
    expect(q.txPort).toBe(q.rxPort);
    want[`queue-${q.id}/tx-ring-ref`] = String(q.txRingRef);
    want[`queue-${q.id}/rx-ring-ref`] = String(q.rxRingRef);
    want[`queue-${q.id}/event-channel`] = String(q.txPort);
  }
  expect(await frontendKeys(host, be.F)).toEqual({ ...want, ...DEVICE_KEYS });
  expect(new Set(info.queues.map((q) => q.txPort)).size).toBe(4);
});

test("the queue count is min(offered, min(8, vCPUs)), or min(offered, max_queues) when that is set; an old netfront keeps one channel though split is offered", async () => {
  const cases: [Partial<NetfrontOptions>, number | undefined, number][] = [
    [{ vcpus: 4 }, 2, 2], // the backend's offer caps it
    [{ vcpus: 16 }, 16, 8], // MAX_QUEUES_DEFAULT caps the vCPU default
    [{ vcpus: 1, maxQueues: 3 }, 4, 3], // xen_netfront.max_queues=3 replaces the vCPU default
    [{ vcpus: 4, maxQueues: 1 }, 4, 1], // xen_netfront.max_queues=1
    [{ vcpus: 4 }, undefined, 1], // no multi-queue offered
  ];
  for (const [opts, offered, want] of cases) {
    const { be, nf } = await setup(opts);
    await connected(be, features(offered));
    expect([opts, offered, nf.connection!.queues.length]).toEqual([opts, offered, want]);
    await cleanups.pop()!();
    await cleanups.pop()!();
    await cleanups.pop()!();
  }
  const { host, be, nf } = await setup({ vcpus: 2, splitEventChannels: false });
  await connected(be, features(2, true));
  const keys = await frontendKeys(host, be.F);
  expect(nf.connection!.split).toBe(false);
  expect(Object.keys(keys).filter((k) => k.includes("event-channel"))).toEqual(["queue-0/event-channel", "queue-1/event-channel"]);
});

test("hostile variants write what Linux never does: multi-queue-num-queues of 0, over the offer, not a number, and a queue directory missing a key", async () => {
  const dump = async (hostile: NonNullable<NetfrontOptions["hostile"]>, offered = 2) => {
    const { host, be } = await setup({ vcpus: 2, hostile });
    await connected(be, features(offered));
    const keys = await frontendKeys(host, be.F);
    for (let i = 0; i < 3; i++) await cleanups.pop()!();
    return keys;
  };
  const zero = await dump({ numQueuesValue: "0" });
  expect(zero["multi-queue-num-queues"]).toBe("0");
  expect(zero["queue-1/rx-ring-ref"]).toMatch(/^\d+$/);

  const over = await dump({ queues: 5 }, 4);
  expect(over["multi-queue-num-queues"]).toBe("5");
  expect(Object.keys(over).filter((k) => k.endsWith("/tx-ring-ref"))).toHaveLength(5);

  const word = await dump({ numQueuesValue: "two" });
  expect(word["multi-queue-num-queues"]).toBe("two");

  const hole = await dump({ omitKeys: ["queue-1/rx-ring-ref"] });
  expect(hole["multi-queue-num-queues"]).toBe("2");
  expect(hole["queue-0/rx-ring-ref"]).toMatch(/^\d+$/);
  expect(hole["queue-1/tx-ring-ref"]).toMatch(/^\d+$/);
  expect("queue-1/rx-ring-ref" in hole).toBe(false);
});

/** An Ethernet + IPv4 + UDP frame of flow (src:sport -> dst:dport), 64 bytes. */
function udp4(src: number, dst: number, sport: number, dport: number): Uint8Array {
  const f = new Uint8Array(64);
  const v = new DataView(f.buffer);
  f.set([0x00, 0x16, 0x3e, 0, 0, 1, 0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]);
  v.setUint16(12, 0x0800);
  v.setUint8(14, 0x45);
  v.setUint16(16, 50);
  v.setUint8(22, 64);
  v.setUint8(23, 17);
  v.setUint32(26, src);
  v.setUint32(30, dst);
  v.setUint16(34, sport);
  v.setUint16(36, dport);
  v.setUint16(38, 30);
  return f;
}

test("four queues carry traffic: each flow always leaves on the queue its hash picks, flows spread over queues, non-IP goes to queue 0, and rx on any queue reaches the receivers", async () => {
  const { host, domid, be, nf } = await setup({ vcpus: 4 });
  await be.offer(features(4));
  await until("frontend Connected", async () => (await be.frontendState()) === 4);
  // One hand-played backend per queue; queue 0's announces Connected once all are mapped.
  const players = [be];
  for (let i = 1; i < 4; i++) {
    const p = new TestBackend(host, domid);
    cleanups.push(() => p.close());
    players.push(p);
  }
  for (let i = 3; i >= 0; i--) await players[i]!.connect({ dir: `queue-${i}`, announce: i === 0 });
  await nf.whenConnected();

  const flows = Array.from({ length: 32 }, (_, i) => udp4(0x0a000002, 0x0a000001 + (i % 3), 40000 + i, 53));
  const expected = flows.map((f) => nf.txQueueFor(f)!);
  // Spread: 32 flows over 4 queues land on more than one queue (a constant hash would not).
  expect(new Set(expected).size).toBeGreaterThan(1);
  // Each flow three times, interleaved: every copy lands on its flow's queue.
  for (let round = 0; round < 3; round++) for (const f of flows) expect(nf.send(f)).toBe(true);
  const seen: number[][] = [[], [], [], []];
  await until("every frame on some tx ring", () => {
    for (let q = 0; q < 4; q++) for (const r of players[q]!.drainTx()) seen[q]!.push(new DataView(r.frame.buffer).getUint16(34));
    return seen.flat().length === flows.length * 3;
  });
  for (let q = 0; q < 4; q++) {
    const sports = seen[q]!;
    const want = flows.flatMap((f, i) => (expected[i] === q ? [40000 + i, 40000 + i, 40000 + i] : [])).sort();
    expect([q, [...sports].sort()]).toEqual([q, want]);
  }
  // The reverse direction of a flow picks the same queue (the hash orders the two ends).
  expect(nf.txQueueFor(udp4(0x0a000001, 0x0a000002, 53, 40000))).toBe(nf.txQueueFor(udp4(0x0a000002, 0x0a000001, 40000, 53)));
  // ARP is no IP flow: queue 0.
  const arp = new Uint8Array(42);
  arp.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x16, 0x3e, 0x12, 0x34, 0x56, 0x08, 0x06]);
  expect(nf.txQueueFor(arp)).toBe(0);
  // Per-queue tx counters match where the frames went; the totals are their sum.
  const stats = nf.queueStats();
  expect(stats.map((s) => s.counters.txPackets)).toEqual(seen.map((s) => s.length));
  expect(nf.counters.txPackets).toBe(flows.length * 3);
  await until("every tx response reaped", () => nf.queueDepths().txInFlight === 0);
  expect(nf.counters.txRspOkay).toBe(flows.length * 3);

  // Rx: one frame posted on each queue's rx ring, all reach onReceive.
  const got: number[] = [];
  nf.onReceive((f) => got.push(f[63]!));
  for (let q = 0; q < 4; q++) {
    await until(`queue ${q}'s rx buffers`, () => players[q]!.rxAvailable() > 0);
    const f = udp4(0x0a000001, 0x0a000002, 53, 40000);
    f[63] = q;
    players[q]!.postRx(f);
  }
  await until("four frames received", () => got.length === 4);
  expect(got.sort()).toEqual([0, 1, 2, 3]);
  expect(nf.queueStats().map((s) => s.counters.rxPackets)).toEqual([1, 1, 1, 1]);
  expect(nf.counters.rxPackets).toBe(4);
  // A frame forced onto a queue goes there, whatever its flow.
  expect(nf.send(flows[0]!, { queue: (expected[0]! + 1) % 4 })).toBe(true);
  await until("the forced frame", () => players[(expected[0]! + 1) % 4]!.drainTx().length === 1);
});

test("when a queue cannot be set up, the queues built so far are undone and the device fails as Linux's talk_to_netback does: error node, Closing, nothing written", async () => {
  const host = await startHost();
  cleanups.push(() => host.close());
  // 1 MiB of guest RAM: 256 pages, two ring pages per queue, so queue 128 finds none left.
  const { domid } = await host.ts.create("small", { nics: [{ mac: "00:16:3e:12:34:56" }], noWait: true, memoryMb: 1 });
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const log: string[] = [];
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, log: (l) => log.push(l), hostile: { queues: 200 } });
  cleanups.push(() => nf.close());
  await be.offer(features(8));
  await until("frontend Closing", async () => (await be.frontendState()) === 5);
  expect(await host.xs.read(`/local/domain/${domid}/error/device/vif/0/error`)).toMatch(/^12 setting up queue \d+: .*out of memory/);
  expect(nf.connection).toBeUndefined();
  expect(Object.keys(await frontendKeys(host, be.F))).toEqual([]);
  // Every page went back: a fresh one-queue netfront on the same guest gets its two ring pages and
  // all the other 254 as rx buffers (256 would need two more; the shortfall is only logged).
  await nf.close();
  const again = await createNetfront({ dir: host.dir, domid, devid: 0, resetWaitMs: 300 });
  cleanups.push(() => again.close());
  await be.setState(6);
  await host.xs.write(`${be.F}/state`, "1");
  await be.setState(2);
  await until("the second netfront Connected", async () => (await be.frontendState()) === 4);
  expect(again.connection!.queues).toHaveLength(1);
  expect(again.queueDepths().rxPosted).toBe(254);
});
