// XSA-396 (netfront's side of it): a grant must not stay mapped by the backend once the response
// for its request is visible, or the guest may reuse a page the backend can still touch. The only
// map path in qnicd's data path is the seed's (--datapath seed maps each tx page read-only and each
// rx page writable, one request at a time); the batched path maps no data page at all, only copies.
import { afterEach, expect, test } from "bun:test";
import { AuditOp } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RX_RING_SIZE, NETIF_TX_RING_SIZE, RxResponse, TxResponse } from "../../src/xen/netif.ts";
import { slotOffset } from "../../src/xen/ring.ts";
import { until } from "../backend/sim-host.ts";
import { frames } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/**
 * Spins (no await: the worker runs on its own thread) reading rsp_prod; the moment a response is
 * visible, its request's gref must not be mapped. Returns how many responses were checked.
 */
function watchResponses(words: Uint32Array, count: number, refOf: (idx: number) => number, mapped: (ref: number) => boolean, limitMs = 10_000): number {
  const end = Date.now() + limitMs;
  let seen = 0;
  while (seen < count) {
    const prod = Atomics.load(words, 2);
    while (seen < prod && seen < count) {
      const ref = refOf(seen);
      if (mapped(ref)) throw new Error(`response ${seen} visible while its gref ${ref} is still mapped`);
      seen++;
    }
    if (Date.now() > end) throw new Error(`${seen} of ${count} responses within ${limitMs} ms`);
  }
  return seen;
}

test("XSA-396 (seed): no tx or rx page is mapped when its response becomes visible; every map is undone", async () => {
  rig = await startHostileRig({ datapath: "seed" });
  const fe = rig.bad.fe;
  const audit = rig.audit(rig.bad);
  const g = fe.guest;
  // tx: 128 requests on 128 pages of their own.
  const refs: number[] = [];
  for (let i = 0; i < 128; i++) {
    const frame = g.allocPage();
    g.pageView(frame).set(frames(rig.bad.mac, 1, i)[0]!, 0);
    refs.push(g.grantAccess(0, frame, true));
  }
  const txWords = new Uint32Array(g.pageView(fe.ringFrames.tx).buffer, g.pageView(fe.ringFrames.tx).byteOffset, 1024);
  fe.postRawTx(refs.map((gref, id) => ({ gref, id, size: 60 + id })));
  expect(watchResponses(txWords, 128, (i) => refs[i]!, (r) => fe.mapped(r))).toBe(128);
  const txv = new DataView(txWords.buffer, txWords.byteOffset, 4096);
  for (let i = 0; i < 128; i++) expect(txv.getInt16(slotOffset(i, NETIF_TX_RING_SIZE, 12) + TxResponse.status, true)).toBe(0);

  // rx: 64 buffers; a's frames fill them.
  fe.postRx(64);
  const rxRefs = fe.rxBufferRefs();
  const rxWords = new Uint32Array(g.pageView(fe.ringFrames.rx).buffer, g.pageView(fe.ringFrames.rx).byteOffset, 1024);
  rig.a.fe.sendFrames(frames(rig.a.mac, 64, 1), 100);
  expect(watchResponses(rxWords, 64, (i) => rxRefs[i]!, (r) => fe.mapped(r))).toBe(64);
  const rxv = new DataView(rxWords.buffer, rxWords.byteOffset, 4096);
  for (let i = 0; i < 64; i++) expect(rxv.getInt16(slotOffset(i, NETIF_RX_RING_SIZE, 8) + RxResponse.status, true)).toBeGreaterThan(0);
  await rig.a.fe.responses(64);

  // The audit agrees: each map undone, in order, before the next one.
  const w = audit.take();
  const ops = w.records.map((r) => r.op);
  expect(ops.length).toBe(2 * (128 + 64));
  for (let i = 0; i < ops.length; i += 2) {
    expect([ops[i], ops[i + 1]]).toEqual(ops[i] === AuditOp.mapReadonly ? [AuditOp.mapReadonly, AuditOp.unmapReadonly] : [AuditOp.mapWritable, AuditOp.unmapWritable]);
    expect(w.records[i]!.ref).toBe(w.records[i + 1]!.ref);
  }
  fe.takeRx();
  await until("b saw a's frames", () => rig!.receivedByB(rig!.a).length === 64);
  await rig.neighboursForward(100);
});

test("XSA-396 (batched): the data path maps no guest page at all, it only copies", async () => {
  rig = await startHostileRig();
  const fe = rig.bad.fe;
  const audit = rig.audit(rig.bad);
  fe.sendFrames(frames(rig.bad.mac, 64, 1), 0);
  await fe.responses(64);
  fe.postRx(32);
  rig.a.fe.sendFrames(frames(rig.a.mac, 32, 1), 0);
  await rig.a.fe.responses(32);
  await fe.received(32);
  const w = audit.take();
  expect(w.records.length).toBe(64 + 32);
  expect(w.records.filter((r) => r.op !== AuditOp.copyFrom && r.op !== AuditOp.copyTo)).toEqual([]);
  await until("b saw a's frames", () => rig!.receivedByB(rig!.a).length === 32);
  await rig.neighboursForward(100);
});
