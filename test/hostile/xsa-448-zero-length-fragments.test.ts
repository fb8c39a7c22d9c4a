// XSA-448: zero-length slots after the first are legal: answered OKAY, and they build no empty
// fragment (no zero-length grant copy: Linux netback's empty frags broke its accounting). A first
// slot of size 0 is a runt: an error, not a crash.
import { afterEach, expect, test } from "bun:test";
import { AuditOp } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { frames } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

test("XSA-448: zero-length fragments are answered OKAY and copy nothing; the packet is exactly its non-empty slots", async () => {
  rig = await startHostileRig({ peer: "null" });
  const bad = rig.bad;
  const audit = rig.audit(bad);
  const before = rig.stats(bad)!;
  const f = frames(bad.mac, 1, 1, () => 1000)[0]!;
  const reqs = bad.fe.postSgPacket(f, [600, 0, 0, 400, 0], 1);
  expect(await bad.fe.responses(5)).toEqual(reqs.map((r) => ({ id: r.id, status: NETIF_RSP_OKAY })));
  const s = await rig.statsUntil(bad, (s) => s.tx_packets === before.tx_packets + 1);
  expect(s.tx_bytes - before.tx_bytes).toBe(1000);
  const w = audit.take();
  expect(w.records.map((r) => [r.op, r.ref, r.len])).toEqual([
    [AuditOp.copyFrom, reqs[0]!.gref, 600],
    [AuditOp.copyFrom, reqs[3]!.gref, 400],
  ]);
  // A zero-length first slot (and an all-empty packet) is a runt: ERROR for each slot, the vif carries on.
  bad.fe.postRawTx([{ id: 10, size: 0 }]);
  bad.fe.postSgPacket(new Uint8Array(0), [0, 0], 11);
  expect(await bad.fe.responses(3)).toEqual([10, 11, 12].map((id) => ({ id, status: NETIF_RSP_ERROR })));
  expect(audit.take().records).toEqual([]);
  expect(await rig.errorNode(bad)).toBeUndefined();
  await rig.neighboursForward(200);
});
