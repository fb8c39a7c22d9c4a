// XSA-90: a fatal frontend error disables that vif from a safe point: what was answered before
// the violation stays answered, the violating packet is not consumed, the vif's rings and event
// channel are let go (carrier off, error node, Closing), and nothing the guest writes afterwards
// reaches the data path again. The violation here is netback's "Cross page boundary"
// (xenvif_fatal_tx_err): a first tx slot whose bytes run past its page (offset 4000, size 200).
import { afterEach, expect, test } from "bun:test";
import { ECS_UNBOUND } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

for (const datapath of ["batched", "seed"] as const) {
  test(`XSA-90 (${datapath}): a first slot crossing its page is fatal at a safe point; rings, port and later writes let go; neighbours lose nothing`, async () => {
    rig = await startHostileRig({ datapath });
    const bad = rig.bad;
    await rig.neighboursForward(50);
    bad.fe.postRawTx([
      { id: 1, size: 60 },
      { id: 2, size: 60 },
      { id: 3, offset: 4000, size: 200 },
      { id: 4, size: 60 },
    ]);
    await rig.expectFatal(bad, /^tx packet at 0x2: its first slot at offset 4000 with 200 bytes crosses its page$/);
    // Answered before the violation: kept; the violating packet and what follows: never consumed.
    expect(bad.fe.takeResponses()).toEqual([
      { id: 1, status: NETIF_RSP_OKAY },
      { id: 2, status: NETIF_RSP_OKAY },
    ]);
    // The vif is let go: ring grants unmapped, the backend's port closed (the guest's is unbound again).
    await until("rings unmapped", () => !bad.fe.mapped(bad.fe.txRef) && !bad.fe.mapped(bad.fe.rxRef));
    await until("port unbound", () => bad.fe.portState(bad.fe.txPort) === ECS_UNBOUND);
    expect(rig.logs.filter((l) => l.includes(`${bad.vif}:`) && l.includes("crosses its page")).length).toBe(1);
    // Writes after the fault reach nothing: no responses, no new log lines about it.
    const lines = rig.logs.length;
    bad.fe.postRawTx([{ id: 5, size: 60 }]);
    bad.fe.setReqProd(0x9000);
    await rig.neighboursForward(200);
    expect(bad.fe.headers().tx.rspProd).toBe(2);
    expect(rig.logs.slice(lines).filter((l) => l.includes(bad.vif))).toEqual([]);
    expect(rig.daemon.vifs().find((v) => v.domid === bad.domid)?.slot ?? null).toBeNull();
  });
}

test("XSA-90: a runt whose head crosses its page is an error, not fatal (netback checks the size first)", async () => {
  rig = await startHostileRig();
  rig.bad.fe.postRawTx([
    { id: 1, offset: 4090, size: 13 },
    { id: 2, size: 60 },
  ]);
  expect(await rig.bad.fe.responses(2)).toEqual([
    { id: 1, status: -1 },
    { id: 2, status: NETIF_RSP_OKAY },
  ]);
  expect(await rig.errorNode(rig.bad)).toBeUndefined();
  await rig.neighboursForward(100);
});
