// The grant-access audit: opt-in per domain, it logs every grant copy and map a backend performs
// against that domain's grants (which ref, which direction, which process), for tests to read from
// any process (src/sim/hypervisor/audit.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { GrantCopyBatch, openPlatform, type GrantDevice, type Platform } from "../../../src/platform/index.ts";
import { AuditOp, createDomain, openGrantAudit, openGuestDomain, type GrantAudit, type GuestDomain } from "../../../src/sim/hypervisor/index.ts";
import { GNTST_bad_copy_arg, GNTST_general_error, GNTST_okay } from "../../../src/xen/grant-table.ts";
import { Child, freshHost } from "./helpers.ts";

let host: ReturnType<typeof freshHost>;
let domid: number;
let otherDomid: number;
let guest: GuestDomain;
let platform: Platform;
let gnt: GrantDevice;
let audit: GrantAudit;
const local = new Uint8Array(8192); // kept referenced: native code reads and writes it
const batch = new GrantCopyBatch(64);

beforeAll(() => {
  host = freshHost("grant-audit");
  domid = createDomain(host.dir, { memoryPages: 64 });
  otherDomid = createDomain(host.dir, { memoryPages: 64 });
  guest = openGuestDomain(host.dir, domid);
  platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  gnt = platform.openGrantDevice();
  audit = openGrantAudit(host.dir, domid);
});
afterAll(() => {
  batch.free();
  platform.close();
  host.cleanup();
});

function grantPage(readonly = false): number {
  return guest.grantAccess(0, guest.allocPage(), readonly);
}

describe("grant-access audit", () => {
  test("off by default: copies and maps leave no record", () => {
    const gref = grantPage();
    batch.setGrantToLocal(0, domid, gref, 0, ptr(local), 64);
    expect(gnt.copy(batch, 1)).toBe(0);
    gnt.map(domid, [gref], true).unmap();
    expect(audit.enabled).toBe(false);
    expect(audit.read().total).toBe(0);
  });

  test("every copy segment is logged with ref, direction, offset, length, status, pid and caller", () => {
    const src = grantPage(true);
    const dst = grantPage();
    audit.enable();
    expect(audit.enabled).toBe(true);
    batch.setGrantToLocal(0, domid, src, 100, ptr(local), 60);
    batch.setLocalToGrant(1, ptr(local), domid, dst, 4000, 96);
    batch.setLocalToGrant(2, ptr(local), domid, src, 0, 10); // read-only grant as destination
    batch.setGrantToLocal(3, domid, dst, 4090, ptr(local), 10); // crosses the page
    expect(gnt.copy(batch, 4)).toBe(2);
    const w = audit.take();
    expect(w.total).toBe(4);
    expect(w.dropped).toBe(0);
    expect(w.records).toEqual([
      { ref: src, op: AuditOp.copyFrom, status: GNTST_okay, offset: 100, len: 60, pid: process.pid, callerDomid: 0 },
      { ref: dst, op: AuditOp.copyTo, status: GNTST_okay, offset: 4000, len: 96, pid: process.pid, callerDomid: 0 },
      { ref: src, op: AuditOp.copyTo, status: GNTST_general_error, offset: 0, len: 10, pid: process.pid, callerDomid: 0 },
      { ref: dst, op: AuditOp.copyFrom, status: GNTST_bad_copy_arg, offset: 4090, len: 10, pid: process.pid, callerDomid: 0 },
    ]);
    expect(audit.read().total).toBe(0); // take() began a new window
  });

  test("a grant-to-grant copy is logged in each domain's own log, only where auditing is on", () => {
    const other = openGuestDomain(host.dir, otherDomid);
    const theirs = other.grantAccess(0, other.allocPage(), false);
    const otherAudit = openGrantAudit(host.dir, otherDomid);
    const ours = grantPage(true);
    audit.reset();
    batch.setGrantToGrant(0, domid, ours, 0, otherDomid, theirs, 0, 32);
    expect(gnt.copy(batch, 1)).toBe(0);
    expect(audit.take().records.map((r) => [r.ref, r.op])).toEqual([[ours, AuditOp.copyFrom]]);
    expect(otherAudit.read().total).toBe(0);
    otherAudit.enable();
    expect(gnt.copy(batch, 1)).toBe(0);
    expect(otherAudit.read().records.map((r) => [r.ref, r.op])).toEqual([[theirs, AuditOp.copyTo]]);
    otherAudit.disable();
    otherAudit.close();
    other.close();
    audit.reset();
  });

  test("maps and unmaps are logged per ref, a failed pin with its status and its rollback", () => {
    const a = grantPage();
    const b = grantPage(true);
    audit.reset();
    const m = gnt.map(domid, [a, b], false);
    m.unmap();
    expect(() => gnt.map(domid, [a, b], true)).toThrow(/GNTST_general_error/);
    const r = audit.take().records.map((x) => [x.ref, x.op, x.status]);
    expect(r).toEqual([
      [a, AuditOp.mapReadonly, 0],
      [b, AuditOp.mapReadonly, 0],
      [a, AuditOp.unmapReadonly, 0],
      [b, AuditOp.unmapReadonly, 0],
      [a, AuditOp.mapWritable, 0],
      [b, AuditOp.mapWritable, GNTST_general_error],
      [a, AuditOp.unmapWritable, 0],
    ]);
  });

  test("a bounded log: it keeps the newest accesses, the overwritten ones are counted as dropped", () => {
    const gref = grantPage();
    audit.reset();
    const rounds = Math.ceil((audit.capacity + 100) / 64);
    for (let i = 0; i < 64; i++) batch.setGrantToLocal(i, domid, gref, i, ptr(local), 1);
    for (let r = 0; r < rounds; r++) gnt.copy(batch, 64);
    const w = audit.take();
    expect(w.total).toBe(rounds * 64);
    expect(w.records.length).toBe(audit.capacity);
    expect(w.dropped).toBe(rounds * 64 - audit.capacity);
    expect(w.inFlight).toBe(0);
    expect(w.records[0]!.offset).toBe((rounds * 64 - audit.capacity) % 64);
    expect(w.records[audit.capacity - 1]!.offset).toBe(63);
    expect(audit.read().total).toBe(0);
  });

  test("take() while a backend copies in another thread loses nothing: every access lands in exactly one window", async () => {
    const gref = grantPage();
    audit.reset();
    const worker = new Worker(new URL("./fixtures/copy-loop.ts", import.meta.url).href);
    const done = new Promise<number>((res) => worker.addEventListener("message", (e) => res((e as MessageEvent).data as number)));
    worker.postMessage({ dir: host.dir, domid, gref, rounds: 400 });
    let seen = 0;
    let finished = false;
    let copies = 0;
    void done.then((n) => {
      copies = n;
      finished = true;
    });
    const offsets: number[] = [];
    while (!finished) {
      const w = audit.take();
      expect(w.dropped).toBe(0);
      for (const r of w.records) offsets.push(r.offset);
      seen += w.records.length;
      await Bun.sleep(0);
    }
    const last = audit.take();
    for (const r of last.records) offsets.push(r.offset);
    seen += last.records.length;
    worker.terminate();
    expect(copies).toBe(400 * 16);
    expect(seen).toBe(copies);
    // In order, none twice: the worker copies offsets 0..15 round after round.
    expect(offsets.every((o, i) => o === i % 16)).toBe(true);
  });

  test("a backend in another process is logged with its pid, and the window is shared by every reader", async () => {
    const gref = grantPage(true);
    audit.reset();
    const child = new Child();
    try {
      const r = await child.call({ op: "copyFromGrant", dir: host.dir, domid, ref: gref, offset: 8, len: 16 });
      expect(r.status).toBe(GNTST_okay);
      const second = openGrantAudit(host.dir, domid);
      const w = second.read();
      second.close();
      expect(w.records).toEqual([{ ref: gref, op: AuditOp.copyFrom, status: 0, offset: 8, len: 16, pid: r.pid, callerDomid: 0 }]);
      expect(r.pid).not.toBe(process.pid);
    } finally {
      await child.exit();
    }
  });

  test("disable() stops logging", () => {
    const gref = grantPage();
    audit.disable();
    audit.reset();
    batch.setGrantToLocal(0, domid, gref, 0, ptr(local), 8);
    expect(gnt.copy(batch, 1)).toBe(0);
    expect(audit.read().total).toBe(0);
    expect(audit.enabled).toBe(false);
  });
});
