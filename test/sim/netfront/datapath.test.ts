import { afterEach, expect, test } from "bun:test";
import { buildArp, buildIcmpEcho, parseIPv4, parseMac } from "../../../src/sim/netfront/frames.ts";
import { createNetfront } from "../../../src/sim/netfront/netfront.ts";
import type { RxMeta } from "../../../src/sim/netfront/rx-queue.ts";
import { NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data, NETTXF_csum_blank, NETTXF_data_validated } from "../../../src/xen/netif.ts";
import { openGuestDomain } from "../../../src/sim/hypervisor/index.ts";
import { NETBACK_FEATURES, startHost, TestBackend, until } from "./harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const MAC = "00:16:3e:12:34:56";

async function connected(opts: { ip?: string; features?: Record<string, string> } = {}) {
  const host = await startHost();
  cleanups.push(() => host.close());
  const domid = await host.guest("g", MAC);
  const be = new TestBackend(host, domid);
  cleanups.push(() => be.close());
  const log: string[] = [];
  const txStatus: [number, number][] = [];
  const nf = await createNetfront({ dir: host.dir, domid, devid: 0, ip: opts.ip, log: (l) => log.push(l), onTxResponse: (id, s) => txStatus.push([id, s]) });
  cleanups.push(() => nf.close());
  const rx: { frame: Uint8Array; meta: RxMeta }[] = [];
  nf.onReceive((frame, meta) => rx.push({ frame, meta }));
  await be.offer(opts.features);
  await be.connect();
  await nf.whenConnected();
  return { host, domid, be, nf, rx, log, txStatus };
}

function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

test("tx frames reach the backend through the ring with their bytes, offset, flags and a read-only grant", async () => {
  const { be, nf, domid, host, txStatus } = await connected();
  const a = frame(60, 1);
  const b = frame(1514, 2);
  const c = frame(4096, 3);
  expect(nf.send(a)).toBe(true);
  expect(nf.send(b, { offset: 66, flags: NETTXF_csum_blank | NETTXF_data_validated })).toBe(true);
  expect(nf.send(c, { offset: 100 })).toBe(true); // a full page: the offset is clamped to 0
  await until("requests", () => be.txHeader().reqProd === 3);
  // The data grants are read-only: the backend cannot map one writable.
  const probe = be.platform.openGrantDevice();
  const v = new DataView(be.txMap!.buffer);
  expect(() => probe.map(domid, [v.getUint32(64 + 12, true)], true)).toThrow(/GNTST_general_error/) // Xen: a writable map of a GTF_readonly grant;
  probe.close();
  const got = be.drainTx();
  expect(got.map((g) => [g.frame.length, g.offset, g.flags])).toEqual([
    [60, 0, 0],
    [1514, 66, NETTXF_csum_blank | NETTXF_data_validated],
    [4096, 0, 0],
  ]);
  expect(got[0]!.frame).toEqual(a);
  expect(got[1]!.frame).toEqual(b);
  expect(got[2]!.frame).toEqual(c);
  // Responses reaped: every grant ended (the entry is cleared), ids reported with their status.
  await until("tx responses", () => txStatus.length === 3);
  expect(txStatus.map(([id, s]) => [id, s])).toEqual(got.map((g) => [g.id, 0]));
  const guest = openGuestDomain(host.dir, domid);
  for (const g of got) expect(guest.grantEntry(g.gref).flags).toBe(0);
  guest.close();
  expect(nf.counters).toMatchObject({ txPackets: 3, txBytes: 60 + 1514 + 4096, txRspOkay: 3 });
  expect(nf.queueDepths().txInFlight).toBe(0);
  // Over the wire format's 0xffff: Linux drops it ("too big for wire format"); here a caller bug.
  expect(() => nf.send(new Uint8Array(65536))).toThrow(RangeError);
});

test("tx notifies the backend only when its req_event asks, and counts error and dropped responses", async () => {
  const { be, nf, txStatus } = await connected();
  be.drainTx(); // sets req_event = req_cons + 1
  expect(nf.send(frame(60, 1))).toBe(true);
  expect(nf.send(frame(60, 2))).toBe(true);
  expect(nf.counters).toMatchObject({ txNotifies: 1, txNotifiesSuppressed: 1 });
  expect(be.events()).toContain(be.txPort);
  be.drainTx(-1);
  await until("responses", () => txStatus.length === 2);
  nf.send(frame(60, 3));
  be.drainTx(-2);
  await until("responses", () => txStatus.length === 3);
  expect(nf.counters).toMatchObject({ txRspError: 2, txRspDropped: 1, txRspOkay: 0 });
});

test("a full tx ring holds frames back like a stopped queue and sends them in order once answered", async () => {
  const { be, nf } = await connected();
  const frames = Array.from({ length: 300 }, (_, i) => frame(64, i));
  for (const f of frames) expect(nf.send(f)).toBe(true);
  // 256 - XEN_NETIF_NR_SLOTS_MIN - 1 = 237 slots may be in use before the queue stops.
  expect(be.txHeader().reqProd).toBe(237);
  expect(nf.queueDepths().txBacklog).toBe(63);
  const got: Uint8Array[] = [];
  await until("all 300 frames", () => {
    for (const g of be.drainTx()) got.push(g.frame);
    return got.length === 300;
  });
  expect(got).toEqual(frames);
});

test("rx frames the backend writes arrive intact, and the ring is kept full of posted buffers", async () => {
  const { be, nf, rx } = await connected();
  await until("rx ring filled", () => be.rxAvailable() === 256);
  const frames = [frame(60, 9), frame(1514, 10), frame(4000, 11)];
  be.postRx(frames[0]!);
  be.postRx(frames[1]!, { offset: 2, flags: NETRXF_data_validated });
  be.postRx(frames[2]!, { offset: 96 });
  await until("3 frames", () => rx.length === 3);
  expect(rx.map((r) => r.frame)).toEqual(frames);
  expect(rx[1]!.meta.flags).toBe(NETRXF_data_validated);
  // Consumed buffers were re-posted: 256 requests outstanding again.
  await until("refilled", () => be.rxAvailable() === 256);
  expect(nf.counters).toMatchObject({ rxPackets: 3, rxBytes: 60 + 1514 + 4000, rxErrors: 0 });
});

test("rsp_event is set past the last consumed response, so a second push before it is read needs no event", async () => {
  const { be, nf, rx } = await connected();
  // Nothing consumed yet: the frontend asked for an event on the first response.
  expect(be.rxHeader().rspEvent).toBe(1);
  expect(be.postRx(frame(60, 1))).toBe(true);
  // The frontend has not run yet (same thread): the next push is covered by the event already sent.
  expect(be.postRx(frame(60, 2))).toBe(false);
  await until("2 frames", () => rx.length === 2);
  await until("rsp_event re-armed", () => be.rxHeader().rspEvent === 3);
  expect(be.postRx(frame(60, 3))).toBe(true);
  await until("3 frames", () => rx.length === 3);
  // The tx ring too: after reaping, the frontend wants an event on the next tx response.
  nf.send(frame(60, 4));
  be.drainTx();
  await until("tx rsp_event", () => be.txHeader().rspEvent === 2);
  expect(nf.ringHeaders()!.tx.rspEvent).toBe(2);
});

test("a multi-slot rx packet with a GSO extra arrives as one frame; the extra slot's buffer is re-posted", async () => {
  const { be, rx } = await connected();
  const whole = frame(9000, 5);
  const parts = [whole.subarray(0, 4096), whole.subarray(4096, 8192), whole.subarray(8192)];
  be.postRx(parts[0]!, { flags: NETRXF_more_data | NETRXF_extra_info, push: false });
  const gso = new Uint8Array(8);
  gso[0] = 1; // XEN_NETIF_EXTRA_TYPE_GSO
  new DataView(gso.buffer).setUint16(2, 1448, true);
  gso[4] = 1; // TCPV4
  be.postRxRaw(gso);
  be.postRx(parts[1]!, { flags: NETRXF_more_data, push: false });
  be.postRx(parts[2]!, { push: false });
  be.pushRx();
  await until("the packet", () => rx.length === 1);
  expect(rx[0]!.frame).toEqual(whole);
  expect(rx[0]!.meta).toEqual({ flags: NETRXF_more_data | NETRXF_extra_info, slots: 3, gso: { size: 1448, type: 1 }, queue: 0 });
  await until("refilled", () => be.rxAvailable() === 256);
});

test("a bad rx response is counted as an error, its buffer re-posted, and the next frame still arrives", async () => {
  const { be, nf, rx, log } = await connected();
  be.postRx(frame(100, 1), { offset: 4000 }); // offset + size > 4096
  be.postRx(frame(60, 2));
  await until("good frame", () => rx.length === 1);
  expect(rx[0]!.frame).toEqual(frame(60, 2));
  expect(nf.counters.rxErrors).toBe(1);
  expect(log.join("\n")).toContain("rx->offset: 4000, size: 100");
  await until("refilled", () => be.rxAvailable() === 256);
  expect(nf.broken).toBe(false);
});

test("a backend claiming more responses than requests disables the device, as Linux does", async () => {
  const { be, nf, log } = await connected();
  new Uint32Array(be.rxMap!.buffer)[2] = 1000; // rsp_prod far past anything posted
  be.ev.notify(be.rxPort);
  await until("broken", () => nf.broken);
  expect(log.join("\n")).toContain("Illegal number of responses 1000");
  expect(nf.send(frame(60, 1))).toBe(false);
});

test("answers ARP for its IP and echo requests to it", async () => {
  const { be, nf } = await connected({ ip: "10.0.0.2" });
  const peerMac = parseMac("00:16:3e:00:00:01")!;
  const peerIp = parseIPv4("10.0.0.1")!;
  const myMac = parseMac(MAC)!;
  const myIp = parseIPv4("10.0.0.2")!;
  be.postRx(buildArp(1, peerMac, peerIp, new Uint8Array(6), myIp));
  be.postRx(buildArp(1, peerMac, peerIp, new Uint8Array(6), parseIPv4("10.0.0.3")!)); // not ours
  const payload = frame(56, 3);
  be.postRx(buildIcmpEcho(8, peerMac, myMac, peerIp, myIp, 0x1234, 7, payload));
  const got: Uint8Array[] = [];
  await until("two replies", () => {
    for (const g of be.drainTx()) got.push(g.frame);
    return got.length === 2;
  });
  expect(got[0]).toEqual(buildArp(2, myMac, myIp, peerMac, peerIp));
  expect(got[1]).toEqual(buildIcmpEcho(0, myMac, peerMac, myIp, peerIp, 0x1234, 7, payload));
  expect(nf.counters).toMatchObject({ arpReplies: 1, echoReplies: 1 });
});

test("with a single event channel, tx completions and rx frames both arrive through it", async () => {
  const { "feature-split-event-channels": _s, ...plain } = NETBACK_FEATURES;
  const { be, nf, rx, txStatus } = await connected({ features: plain });
  expect(be.txPort).toBe(be.rxPort);
  nf.send(frame(60, 1));
  be.drainTx();
  be.postRx(frame(60, 2));
  await until("both", () => txStatus.length === 1 && rx.length === 1);
});

test("an rx extra-info slot of an unknown type drops the packet but re-posts every buffer", async () => {
  const { be, nf, rx, log } = await connected();
  be.postRx(frame(60, 1), { flags: NETRXF_extra_info, push: false });
  const bad = new Uint8Array(8);
  bad[0] = 9; // no such XEN_NETIF_EXTRA_TYPE
  be.postRxRaw(bad);
  be.pushRx();
  be.postRx(frame(60, 2));
  await until("next frame", () => rx.length === 1);
  expect(rx[0]!.frame).toEqual(frame(60, 2));
  expect(nf.counters.rxErrors).toBe(1);
  expect(log.join("\n")).toContain("Invalid extra type: 9");
  await until("refilled", () => be.rxAvailable() === 256);
});

test("a tx response for an id that is not in flight disables the device", async () => {
  const { be, nf, log } = await connected();
  // A response nobody asked for: id 5, with no request outstanding.
  const v = new DataView(be.txMap!.buffer);
  v.setUint16(64, 5, true);
  v.setInt16(66, 0, true);
  be.txRspProdPvt = 1;
  be.pushTx();
  await until("broken", () => nf.broken);
  expect(log.join("\n")).toContain("Response for inactive request");
  expect(log.join("\n")).toContain("Disabled for further use");
});
