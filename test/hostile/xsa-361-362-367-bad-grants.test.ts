// XSA-361/362/367: grant references are guest input. A tx slot or rx buffer naming a gref beyond
// the table, never granted, granted to another domain, revoked, or read-only where the backend
// must write is answered NETIF_RSP_ERROR (the grant op's status is checked, never assumed), the
// vif carries on, and a bad ring reference fails only that vif's connect. Neighbours lose nothing.
import { afterEach, expect, test } from "bun:test";
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { until } from "../backend/sim-host.ts";
import { frames } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

for (const datapath of ["batched", "seed"] as const) {
  test(`XSA-361/362/367 tx (${datapath}): bad, foreign and revoked grefs are answered ERROR one by one, the vif carries on`, async () => {
    rig = await startHostileRig({ datapath });
    const g = rig.bad.fe.guest;
    const foreign = g.grantAccess(rig.bad.domid + 50, g.allocPage(), true);
    const revoked = g.grantAccess(0, g.allocPage(), true);
    expect(g.endAccess(revoked)).toBe(true);
    rig.bad.fe.postRawTx([
      { id: 1, gref: 60000, size: 60 }, // beyond the grant table
      { id: 2, gref: 0xffffffff, size: 60 },
      { id: 3, gref: 5000, size: 60 }, // never granted
      { id: 4, gref: foreign, size: 60 }, // granted to another domain
      { id: 5, gref: revoked, size: 60 }, // granted, then revoked
      { id: 6, size: 60 }, // good
    ]);
    expect(await rig.bad.fe.responses(6)).toEqual([1, 2, 3, 4, 5, 6].map((id) => ({ id, status: id === 6 ? NETIF_RSP_OKAY : NETIF_RSP_ERROR })));
    const s = await rig.statsUntil(rig.bad, (s) => s.tx_errors === 5);
    expect([s.tx_errors, s.tx_packets]).toEqual([5, 1]);
    expect(await rig.errorNode(rig.bad)).toBeUndefined();
    await rig.neighboursForward(200);
  });

  test(`XSA-361/362/367 rx (${datapath}): rx buffers that are read-only, foreign or beyond the table get ERROR, the good one gets its frame`, async () => {
    rig = await startHostileRig({ datapath });
    const fe = rig.bad.fe;
    const g = fe.guest;
    const readonly = g.grantAccess(0, g.allocPage(), true);
    const foreign = g.grantAccess(rig.bad.domid + 50, g.allocPage(), false);
    fe.postRawRx([
      { id: 0, gref: readonly },
      { id: 1, gref: foreign },
      { id: 2, gref: 60000 },
    ]);
    fe.postRx(1); // slot 3: a good buffer
    const fs = frames(rig.a.mac, 4, 7, () => 100);
    rig.a.fe.sendFrames(fs, 9000);
    const got = await fe.received(4);
    expect(got.map((r) => r.status)).toEqual([NETIF_RSP_ERROR, NETIF_RSP_ERROR, NETIF_RSP_ERROR, 100]);
    expect(got[3]!.frame).toEqual(fs[3]!);
    expect((await rig.statsUntil(rig.bad, (s) => s.rx_errors === 3)).rx_packets).toBe(1);
    expect(await rig.errorNode(rig.bad)).toBeUndefined();
    await rig.a.fe.responses(4);
    // (a's 4 frames above count as forwarded too: b saw them.)
    await until("b saw a's frames", () => rig!.receivedByB(rig!.a).length === 4);
    await rig.neighboursForward(200);
  });
}

test("XSA-361/362/367 rings: a tx-ring-ref that is not granted fails that vif's connect alone (error node, Closing)", async () => {
  rig = await startHostileRig();
  const eve = await rig.guest("eve", { nodes: { txRingRef: "60000" }, connected: false });
  await eve.f.waitBackend(S.Closing);
  // ENOENT, as Linux netback writes for a ring that will not map (never a blanket EIO).
  expect(await rig.errorNode(eve)).toMatch(/^2 mapping rings and binding event channels: .*60000/);
  await rig.neighboursForward(200);
  expect(await rig.bad.f.backendState()).toBe(S.Connected);
});
