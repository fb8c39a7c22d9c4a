// XSA-39: a frontend whose req_prod runs more than a ring ahead of what the backend answered
// (netback's "Impossible number of requests" / xenvif_rx_ring_slots_available) is hostile: that
// vif is disabled, on tx and on rx, on either data path, and nothing of the overflowed ring is
// consumed; the neighbours on the same worker lose nothing.
import { afterEach, expect, test } from "bun:test";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

for (const datapath of ["batched", "seed"] as const) {
  test(`XSA-39 tx (${datapath}): req_prod 0x1300 ahead of 0 disables the vif, nothing answered; neighbours lose nothing`, async () => {
    rig = await startHostileRig({ datapath });
    await rig.neighboursForward(50);
    rig.bad.fe.setReqProd(0x1300);
    await rig.expectFatal(rig.bad, /^tx req_prod 0x1300 is more than a ring ahead of 0x0$/);
    expect(rig.bad.fe.headers().tx.rspProd).toBe(0);
    await rig.neighboursForward(200);
  });

  test(`XSA-39 rx (${datapath}): rx req_prod 0x900 ahead of 0 disables the vif, nothing answered; neighbours lose nothing`, async () => {
    rig = await startHostileRig({ datapath });
    await rig.neighboursForward(50);
    rig.bad.fe.setRxReqProd(0x900);
    await rig.expectFatal(rig.bad, /^rx req_prod 0x900 is more than a ring ahead of 0x0$/);
    expect(rig.bad.fe.headers().rx.rspProd).toBe(0);
    await rig.neighboursForward(200);
  });
}

test("XSA-39 tx: exactly a ring's worth outstanding (256) is legal and all answered; one more after that is fatal", async () => {
  rig = await startHostileRig();
  const bad = rig.bad.fe;
  bad.postRawTx(Array.from({ length: 256 }, (_, i) => ({ id: i, size: 60 })));
  expect((await bad.responses(256)).every((r) => r.status === 0)).toBe(true);
  // Answered 256; req_prod 256 + 257 is one past a full ring.
  bad.setReqProd(256 + 257);
  await rig.expectFatal(rig.bad, /^tx req_prod 0x201 is more than a ring ahead of 0x100$/);
  await rig.neighboursForward(100);
});

test("XSA-39 rx with nothing to receive (null peer): the kick with rx req_prod far ahead disables the vif at once", async () => {
  rig = await startHostileRig({ peer: "null" });
  rig.bad.fe.setRxReqProd(0x900);
  await rig.expectFatal(rig.bad, /^rx req_prod 0x900 is more than a ring ahead of 0x0$/);
  await rig.neighboursForward(100);
});
