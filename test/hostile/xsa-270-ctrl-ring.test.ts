// XSA-270 class (the control ring): every offset and length a control request names is bounded
// against the page and the local tables before anything is copied, req_prod is bounded (Linux
// netback does not bound it on this ring: it loops until req_cons catches up), and a broken control
// ring costs its own vif alone. The hostile guest drives its control ring by hand (the sim
// netfront's CtrlClient on the raw guest's domain); the neighbours on the same worker lose nothing.
import { afterEach, expect, test } from "bun:test";
import { AuditOp, openGrantAudit, type GrantAudit } from "../../src/sim/hypervisor/index.ts";
import { CtrlClient } from "../../src/sim/netfront/index.ts";
import * as C from "../../src/xen/ctrl-netif.ts";
import { XenbusState as S } from "../../src/xen/xenbus-state.ts";
import { startHostileRig, type HostileRig, type RawGuest } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
const ctrls: CtrlClient[] = [];
afterEach(async () => {
  for (const c of ctrls.splice(0)) c.release();
  await rig?.close();
  rig = undefined;
});

/** A raw guest whose connect nodes include a control ring (CtrlClient on its domain). */
async function withCtrl(r: HostileRig, name: string, beforeConnect?: (domid: number) => void): Promise<{ g: RawGuest; ctrl: CtrlClient }> {
  let ctrl!: CtrlClient;
  const g = await r.guest(name, {
    nodes: (fe) => {
      beforeConnect?.(fe.domid);
      ctrl = new CtrlClient(fe.guest, 0);
      ctrls.push(ctrl);
      return { extra: ctrl.nodes() };
    },
  });
  return { g, ctrl };
}

test("XSA-270: feature-ctrl-ring is offered; the frontend's control ring is mapped writable and answered", async () => {
  rig = await startHostileRig();
  expect(await rig.host.xs.tryRead(`/local/domain/0/backend/vif/${rig.bad.domid}/0/feature-ctrl-ring`)).toBe("1");
  let audit: GrantAudit | undefined;
  const { g, ctrl } = await withCtrl(rig, "trudy", (domid) => {
    // Audited from before the connect, so the ring maps show up.
    audit = openGrantAudit(rig!.host.dir, domid);
    audit.enable();
  });
  try {
    const maps = audit!.read().records.filter((r) => r.op === AuditOp.mapWritable).map((r) => r.ref);
    expect(maps.sort()).toEqual([g.fe.txRef, g.fe.rxRef, ctrl.ref].sort());
  } finally {
    audit!.close();
  }
  expect(await ctrl.request(C.XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE)).toEqual({ type: C.XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE, status: 0, data: 128 });
  g.fe.postRawTx([{ id: 1, size: 60 }]);
  expect(await g.fe.responses(1)).toEqual([{ id: 1, status: 0 }]);
  await rig.neighboursForward(100);
});

test("XSA-270: control-ring request offsets and lengths bounded against the page and the local tables: INVALID_PARAMETER, no grant copied", async () => {
  rig = await startHostileRig();
  const { g, ctrl } = await withCtrl(rig, "trudy");
  const audit = rig.audit(g);
  // A page the backend may read, so a copy it should not make would succeed and show.
  const frame = g.fe.guest.allocPage();
  g.fe.guest.pageView(frame).fill(0x5a);
  const ref = g.fe.guest.grantAccess(0, frame, true);
  expect((await ctrl.request(C.XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM, C.XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ)).status).toBe(0);
  expect((await ctrl.request(C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, 16)).status).toBe(0);
  audit.reset();
  const INV = C.XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER;
  const hostile: [string, number, number, number, number][] = [
    ["key longer than 40 bytes", C.XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, ref, 41, 0],
    ["key length 2^32-1", C.XEN_NETIF_CTRL_TYPE_SET_HASH_KEY, ref, 0xffffffff, 0],
    ["mapping past the table size", C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, ref, 16, 1],
    ["mapping offset + length wrapping 2^32", C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, ref, 2, 0xffffffff],
    ["mapping longer than a page of entries", C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, ref, 1025, 0],
    ["mapping size past 128", C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE, 129, 0, 0],
    ["flags with unknown bits", C.XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS, 0xffffffff, 0, 0],
  ];
  for (const [what, type, d0, d1, d2] of hostile) expect({ what, status: (await ctrl.request(type, d0, d1, d2)).status }).toEqual({ what, status: INV });
  // Entries naming queues that do not exist: copied (within bounds), refused, the old table kept.
  expect((await ctrl.request(C.XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING, ref, 16, 0)).status).toBe(INV);
  const copies = audit.read().records.filter((r) => r.op === AuditOp.copyFrom || r.op === AuditOp.copyTo);
  expect(copies.map((r) => ({ ref: r.ref, offset: r.offset, len: r.len, op: r.op }))).toEqual([{ ref, offset: 0, len: 64, op: AuditOp.copyFrom }]);
  // The staging-grant operations are not implemented: NOT_SUPPORTED, nothing touched.
  for (const t of [C.XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE, C.XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING, C.XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING]) expect((await ctrl.request(t, ref, 512)).status).toBe(C.XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
  expect(audit.read().records.length).toBe(1);
  expect(await g.f.backendState()).toBe(S.Connected);
  await rig.neighboursForward(100);
});

test("XSA-270: ctrl req_prod more than a ring ahead disables that vif alone, nothing answered; neighbours lose nothing", async () => {
  rig = await startHostileRig();
  const { g, ctrl } = await withCtrl(rig, "trudy");
  await rig.neighboursForward(50);
  ctrl.setReqProd(0x900);
  await rig.expectFatal(g, /^ctrl req_prod 0x900 is more than a ring ahead of 0x0$/);
  expect(ctrl.header().rspProd).toBe(0);
  await rig.neighboursForward(200);
});

test("XSA-270: a ctrl-ring-ref without event-channel-ctrl is fatal at connect (error node, Closing), as netback's connect_ctrl_ring", async () => {
  rig = await startHostileRig();
  const eve = await rig.guest("eve", { nodes: (fe) => ({ extra: { "ctrl-ring-ref": String(fe.guest.grantAccess(0, fe.guest.allocPage(), false)) } }), connected: false });
  await eve.f.waitBackend(S.Closing);
  expect(await rig.errorNode(eve)).toMatch(/^2 reading event-channel-ctrl: the frontend did not write it/);
  await rig.neighboursForward(100);
});

test("XSA-270: a ctrl-ring-ref that is not granted fails that vif's connect alone", async () => {
  rig = await startHostileRig();
  const eve = await rig.guest("eve", { nodes: (fe) => ({ extra: { "ctrl-ring-ref": "60000", "event-channel-ctrl": String(fe.guest.evtchn.bindUnboundPort(0)) } }), connected: false });
  await eve.f.waitBackend(S.Closing);
  expect(await rig.errorNode(eve)).toMatch(/failed to map ctrl-ring-ref 60000/);
  await rig.neighboursForward(100);
});
