// XSA-155: the frontend can rewrite a request while the backend reads it (here a second process of
// the guest rewrites every slot's offset, size and id in a loop). The backend must copy each request
// out once and act on that one copy: the bytes it forwards, the length it claims, the grant copy it
// asks for and the id it answers must all come from the same read. Every combination the rewriter
// can produce is a valid request (offset 0 or 100, size 60 or 1000), so any mismatch is the
// backend's: a frame whose length is not its copy's, or bytes from another offset.
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { AuditOp } from "../../src/sim/hypervisor/index.ts";
import { NETIF_RSP_OKAY } from "../../src/xen/netif.ts";
import { until } from "../backend/sim-host.ts";
import { BCAST } from "../pool/fake-frontend.ts";
import { startHostileRig, type HostileRig } from "./daemon-rig.ts";

let rig: HostileRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const rewriter = join(import.meta.dir, "fixtures", "slot-rewriter.ts");

for (const datapath of ["batched", "seed"] as const) {
  test(`XSA-155 (${datapath}): slots rewritten by a second process while read: each response, copy and frame from one consistent read`, async () => {
    rig = await startHostileRig({ datapath });
    const bad = rig.bad;
    const audit = rig.audit(bad);
    // The data page: a frame header at offsets 0 and 100, then bytes that say where they are and
    // which round wrote them (so a frame claiming more bytes than were copied shows stale ones).
    const page = bad.fe.dataPage;
    const fill = (round: number) => {
      for (let i = 0; i < 4096; i++) page[i] = (i * 131 + (i >> 8) + round * 29) & 0xff;
      for (const o of [0, 100]) {
        page.set(BCAST, o);
        page.set(bad.mac, o + 6);
        page[o + 12] = o; // which offset the frame was read at
      }
      return page.slice();
    };
    const proc = Bun.spawn([process.execPath, rewriter, rig.host.dir, String(bad.domid), String(bad.fe.ringFrames.tx), "1500"], { stdout: "pipe", stderr: "inherit" });
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    let out = "";
    while (!out.includes("ready")) out += new TextDecoder().decode((await reader.read()).value);
    const t0 = Date.now();
    let answered = 0;
    const copies: ReturnType<typeof audit.take>["records"] = [];
    const lens = new Map<number, number>();
    try {
      for (let round = 0; Date.now() - t0 < 1200; round++) {
        const snapshot = fill(round);
        const k = 64;
        bad.fe.postRawTx(Array.from({ length: k }, (_, j) => ({ id: (answered + j) & 0xff, size: 60 })));
        const got = await bad.fe.responses(k);
        for (const [j, r] of got.entries()) {
          const slot = (answered + j) & 0xff;
          // The id is one of the two the slot ever held; every combination is valid: OKAY.
          expect([slot, slot | 0x100]).toContain(r.id);
          expect(r.status).toBe(NETIF_RSP_OKAY);
        }
        // b keeps up (a flood faster than b drains would be b's loss, not this test's subject).
        await until(`${answered + k} frames at b`, () => rig!.receivedByB(bad).length >= answered + k);
        // Every frame forwarded is this round's page[o .. o + len], for one offset o and one length.
        for (const f of rig.receivedByB(bad).slice(answered, answered + k)) {
          expect([60, 1000]).toContain(f.length);
          const o = f[12]!;
          expect([0, 100]).toContain(o);
          expect(f).toEqual(snapshot.subarray(o, o + f.length));
          lens.set(f.length, (lens.get(f.length) ?? 0) + 1);
        }
        answered += k;
        const w = audit.take();
        expect(w.dropped + w.inFlight).toBe(0);
        copies.push(...w.records);
      }
    } finally {
      while (!out.includes("done")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      await proc.exited;
    }
    const rewrites = Number(/done (\d+)/.exec(out)?.[1] ?? 0);
    expect(rewrites).toBeGreaterThan(answered);
    // The rewriter really raced the backend: both sizes were read.
    expect(lens.size).toBe(2);
    if (datapath === "batched") {
      expect(copies.length).toBe(answered);
      for (const r of copies) {
        expect([r.op, r.ref, r.status]).toEqual([AuditOp.copyFrom, bad.fe.dataRef, 0]);
        expect([0, 100]).toContain(r.offset);
        expect([60, 1000]).toContain(r.len);
      }
    } else {
      expect(copies.filter((r) => r.op === AuditOp.mapReadonly).length).toBe(answered);
    }
    expect(await rig.errorNode(bad)).toBeUndefined();
    await rig.neighboursForward(200);
  });
}
