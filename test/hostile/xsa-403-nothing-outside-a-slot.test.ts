// XSA-403: a granted page may hold unrelated guest data around a request's bytes (Linux netfront
// bounces only untrusted backends' data). The backend reads and forwards only (offset, size) of
// each consumed tx request and writes only into the rx buffers the guest posted, within the page.
// Pinned with the sim's grant-access audit (every copy and map the backend made of the guest's
// grants) and by the frames the neighbour receives, which must carry none of the secret bytes.
import { afterEach, expect, test } from "bun:test";
import { AuditOp } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { BCAST, frames } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const SECRET = 0x5e;

for (const datapath of ["batched", "seed"] as const) {
  test(`XSA-403 (${datapath}): only (offset, size) of each consumed tx slot is read, only posted rx buffers are written`, async () => {
    rig = await startHostileRig({ datapath });
    const bad = rig.bad;
    const g = bad.fe.guest;
    const audit = rig.audit(bad);
    // 64 requests, each on a page of its own full of secret bytes, at scattered offsets.
    const reqs: { gref: number; offset: number; size: number; id: number }[] = [];
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 64; i++) {
      const frame = g.allocPage();
      const page = g.pageView(frame);
      page.fill(SECRET);
      const size = 60 + ((i * 97) % 1400);
      const offset = (i * 509) % (4096 - size);
      const f = new Uint8Array(size);
      for (let k = 12; k < size; k++) f[k] = ((k * 7 + i) & 0x3f) | 0x80; // never the secret byte
      f.set(BCAST, 0);
      f.set(bad.mac, 6);
      page.set(f, offset);
      sent.push(f);
      reqs.push({ gref: g.grantAccess(0, frame, true), offset, size, id: i });
    }
    bad.fe.postRawTx(reqs);
    expect(await bad.fe.responses(64)).toEqual(reqs.map((r) => ({ id: r.id, status: NETIF_RSP_OKAY })));
    await until("b got the 64 frames", () => rig!.receivedByB(bad).length === 64);
    expect(rig.receivedByB(bad)).toEqual(sent);
    const tx = audit.take();
    expect(tx.dropped + tx.inFlight).toBe(0);
    const key = (ref: number, offset: number, len: number) => `${ref}@${offset}+${len}`;
    if (datapath === "batched") {
      // One grant copy per request, exactly its bytes.
      expect(tx.records.map((r) => [r.op, r.status])).toEqual(reqs.map(() => [AuditOp.copyFrom, 0]));
      expect(tx.records.map((r) => key(r.ref, r.offset, r.len)).sort()).toEqual(reqs.map((r) => key(r.gref, r.offset, r.size)).sort());
    } else {
      // The seed maps each request's page read-only (the frame is then copied out of [offset, offset + size)).
      expect(tx.records.filter((r) => r.op === AuditOp.mapReadonly).map((r) => r.ref)).toEqual(reqs.map((r) => r.gref));
      expect(tx.records.filter((r) => r.op === AuditOp.unmapReadonly).map((r) => r.ref)).toEqual(reqs.map((r) => r.gref));
      expect(tx.records.length).toBe(128);
    }

    // rx: 16 buffers posted; a's 16 frames land only in them, at offset 2, inside the page.
    bad.fe.postRx(16);
    const fs = frames(rig.a.mac, 16, 3, (i) => 60 + i * 250);
    rig.a.fe.sendFrames(fs, 5000);
    await rig.a.fe.responses(16);
    const got = await bad.fe.received(16);
    expect(got.map((r) => r.frame)).toEqual(fs);
    const rx = audit.take();
    const writes = rx.records.filter((r) => r.op === AuditOp.copyTo || r.op === AuditOp.mapWritable);
    expect(writes.length).toBe(16);
    expect([...new Set(rx.records.map((r) => r.ref))].sort()).toEqual(bad.fe.rxBufferRefs().sort());
    expect(bad.fe.rxBufferRefs().length).toBe(16);
    for (const r of rx.records) {
      expect<number[]>([AuditOp.copyTo, AuditOp.mapWritable, AuditOp.unmapWritable]).toContain(r.op);
      if (r.op === AuditOp.copyTo) expect(r.offset + r.len).toBeLessThanOrEqual(4096);
    }
    await until("b saw a's frames", () => rig!.receivedByB(rig!.a).length === 16);
    await rig.neighboursForward(200);
  });
}
