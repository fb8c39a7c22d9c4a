// XSA-423: every protocol header must be contiguous before a packet is handed on (Linux netback
// copied only part of a header spread over many tiny slots). XSA-432: a head packet of 18 tiny
// slots whose total is below netback's header-copy length must not break slot accounting.
// qnicd copies every slot of a packet back to back into one frame slot, so the headers are
// contiguous by construction (pinned byte for byte in test/workers/tx-sg.test.ts); here the daemon
// takes 18 tiny slots as one packet of exactly their bytes, answers each slot once, reads each slot
// exactly once, and refuses more than 20 slots as fatal. SG is offered with the null peer only.
import { afterEach, expect, test } from "bun:test";
import { AuditOp } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { frames } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

test("XSA-423/432: a head packet of 18 tiny slots (90 bytes) is one packet of exactly those bytes, each slot answered and read once", async () => {
  rig = await startHostileRig({ peer: "null" });
  const bad = rig.bad;
  expect(rig.daemon.vifs().find((v) => v.domid === bad.domid)!.features["feature-sg"]).toBe(true);
  const audit = rig.audit(bad);
  const before = rig.stats(bad)!;
  // An Ethernet + IPv4 + TCP header (54 bytes) and 36 of payload, 5 bytes per slot.
  const f = frames(bad.mac, 1, 1, () => 90)[0]!;
  const reqs = bad.fe.postSgPacket(f, Array.from({ length: 18 }, () => 5), 1, Array.from({ length: 18 }, (_, k) => 4091 - k));
  expect(await bad.fe.responses(18)).toEqual(reqs.map((r) => ({ id: r.id, status: NETIF_RSP_OKAY })));
  const s = await rig.statsUntil(bad, (s) => s.tx_packets === before.tx_packets + 1);
  expect([s.tx_bytes - before.tx_bytes, s.tx_errors, s.tx_drops]).toEqual([90, 0, 0]);
  const w = audit.take();
  expect(w.records.map((r) => [r.op, r.ref, r.offset, r.len, r.status])).toEqual(reqs.map((r) => [AuditOp.copyFrom, r.gref, r.offset, 5, 0]));
  expect(await rig.errorNode(bad)).toBeUndefined();
  await rig.neighboursForward(200);
});

test("XSA-432: 20 slots are still one packet; 21 slots are fatal for that vif alone", async () => {
  rig = await startHostileRig({ peer: "null" });
  const bad = rig.bad;
  const twenty = frames(bad.mac, 1, 2, () => 200)[0]!;
  const reqs = bad.fe.postSgPacket(twenty, Array.from({ length: 20 }, () => 10), 1);
  expect(await bad.fe.responses(20)).toEqual(reqs.map((r) => ({ id: r.id, status: NETIF_RSP_OKAY })));
  bad.fe.postSgPacket(frames(bad.mac, 1, 3, () => 210)[0]!, Array.from({ length: 21 }, () => 10), 100);
  await rig.expectFatal(bad, /^tx packet at 0x14 spans more than 20 slots$/);
  expect(bad.fe.headers().tx.rspProd).toBe(20);
  await rig.neighboursForward(200);
});
