import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { createDomain, destroyDomain, openGuestDomain, type GuestDomain } from "../../../src/sim/hypervisor/index.ts";
import { GrantCopyBatch, openPlatform, PlatformError, type GrantDevice, type Platform } from "../../../src/platform/index.ts";
import {
  GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_general_error, GNTST_okay,
  GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing,
} from "../../../src/xen/grant-table.ts";
import { freshHost } from "./helpers.ts";

let host: ReturnType<typeof freshHost>;
let domid: number;
let guest: GuestDomain;
let platform: Platform;
let gnt: GrantDevice;

beforeAll(() => {
  host = freshHost("grants");
  domid = createDomain(host.dir, { memoryPages: 128 });
  guest = openGuestDomain(host.dir, domid);
  platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  gnt = platform.openGrantDevice();
});
afterAll(() => {
  platform.close();
  host.cleanup();
});

function grantPage(fill: number, readonly = false, to = 0): { frame: number; gref: number } {
  const frame = guest.allocPage();
  guest.pageView(frame).fill(fill);
  return { frame, gref: guest.grantAccess(to, frame, readonly) };
}

function mapStatus(dom: number, refs: number[], writable: boolean): number {
  try {
    gnt.map(dom, refs, writable).unmap();
    return GNTST_okay;
  } catch (e) {
    expect(e).toBeInstanceOf(PlatformError);
    return (e as PlatformError).status;
  }
}

describe("grant map", () => {
  test("grefs start after the 8 reserved entries and use the grant_entry_v1 layout", () => {
    const { frame, gref } = grantPage(1, true);
    expect(gref).toBeGreaterThanOrEqual(8);
    expect(guest.grantEntry(gref)).toEqual({ flags: GTF_permit_access | GTF_readonly, domid: 0, frame });
    expect(guest.endAccess(gref)).toBe(true);
    expect(guest.grantEntry(gref).flags).toBe(0);
  });

  test("a nonexistent domain is GNTST_bad_domain", () => {
    const { gref } = grantPage(1);
    expect(mapStatus(99, [gref], false)).toBe(GNTST_bad_domain);
  });

  test("a ref beyond the grant table is GNTST_bad_gntref", () => {
    expect(mapStatus(domid, [16384], false)).toBe(GNTST_bad_gntref);
    expect(mapStatus(domid, [0xffffffff], false)).toBe(GNTST_bad_gntref);
  });

  test("an entry that was never granted is GNTST_general_error, as Xen's _set_status_v1", () => {
    expect(mapStatus(domid, [5000], false)).toBe(GNTST_general_error);
  });

  test("a grant to another domain is GNTST_general_error", () => {
    const { gref } = grantPage(1, false, 7);
    expect(mapStatus(domid, [gref], false)).toBe(GNTST_general_error);
  });

  test("a writable map of a GTF_readonly grant is GNTST_general_error; a read-only map works", () => {
    const { gref } = grantPage(9, true);
    expect(mapStatus(domid, [gref], true)).toBe(GNTST_general_error);
    const m = gnt.map(domid, [gref], false);
    expect(new Uint8Array(m.buffer)[100]).toBe(9);
    m.unmap();
  });

  test("the error says which domain and ref failed", () => {
    expect(() => gnt.map(domid, [16384], false)).toThrow(/dom\d+ ref 16384 failed with GNTST_bad_gntref/);
  });

  test("a mapping sees the guest's later writes and the guest sees the backend's", () => {
    const { frame, gref } = grantPage(0);
    const m = gnt.map(domid, [gref], true);
    const view = new Uint8Array(m.buffer);
    guest.pageView(frame)[10] = 0xab;
    expect(view[10]).toBe(0xab);
    view[4095] = 0xcd;
    expect(guest.pageView(frame)[4095]).toBe(0xcd);
    m.unmap();
  });

  test("several refs map as one contiguous range, in ref order", () => {
    const pages = [grantPage(0x11), grantPage(0x22), grantPage(0x33)];
    const m = gnt.map(domid, [pages[2].gref, pages[0].gref, pages[1].gref], true);
    const v = new Uint8Array(m.buffer);
    expect(m.pages).toBe(3);
    expect([v[0], v[4096], v[8192], v[12287]]).toEqual([0x33, 0x11, 0x22, 0x22]);
    m.unmap();
  });

  test("a mapped grant is marked in use (GTF_reading/GTF_writing) and endAccess refuses until unmap", () => {
    const { gref } = grantPage(0);
    const m = gnt.map(domid, [gref], true);
    expect(guest.grantEntry(gref).flags & (GTF_reading | GTF_writing)).toBe(GTF_reading | GTF_writing);
    expect(guest.endAccess(gref)).toBe(false);
    m.unmap();
    expect(guest.grantEntry(gref).flags & (GTF_reading | GTF_writing)).toBe(0);
    expect(guest.endAccess(gref)).toBe(true);
    // an ended grant cannot be mapped any more
    expect(mapStatus(domid, [gref], false)).toBe(GNTST_general_error);
  });

  test("two read-only maps keep GTF_reading until both are unmapped", () => {
    const { gref } = grantPage(0, true);
    const a = gnt.map(domid, [gref], false);
    const b = gnt.map(domid, [gref], false);
    expect(guest.grantEntry(gref).flags & GTF_writing).toBe(0);
    a.unmap();
    expect(guest.grantEntry(gref).flags & GTF_reading).toBe(GTF_reading);
    expect(guest.endAccess(gref)).toBe(false);
    b.unmap();
    b.unmap(); // idempotent
    expect(guest.endAccess(gref)).toBe(true);
  });

  test("a failing ref in a multi-ref map releases the refs pinned before it", () => {
    const ok = grantPage(0);
    expect(() => gnt.map(domid, [ok.gref, 16384], true)).toThrow(PlatformError);
    expect(guest.grantEntry(ok.gref).flags & (GTF_reading | GTF_writing)).toBe(0);
    expect(guest.endAccess(ok.gref)).toBe(true);
  });
});

describe("grant copy", () => {
  const local = new Uint8Array(64 * 1024); // kept referenced: native code writes into it
  const localAddr = ptr(local);
  const batch = new GrantCopyBatch(64);

  test("the segment writer follows struct gntdev_grant_copy_segment", () => {
    const b = new GrantCopyBatch(2);
    b.setGrantToLocal(1, 0x1234, 0xdeadbeef, 0x0abc, 0x1122334455, 0x0fed);
    const dv = new DataView(b.buffer, 24);
    expect(dv.getUint32(0, true)).toBe(0xdeadbeef);
    expect(dv.getUint16(4, true)).toBe(0x0abc);
    expect(dv.getUint16(6, true)).toBe(0x1234);
    expect(dv.getBigUint64(8, true)).toBe(0x1122334455n);
    expect(dv.getUint16(16, true)).toBe(0x0fed);
    expect(dv.getUint16(18, true)).toBe(1); // GNTCOPY_source_gref
    b.free();
  });

  test("guest -> backend copies carry the payload exactly", () => {
    const { frame, gref } = grantPage(0);
    const v = guest.pageView(frame);
    for (let i = 0; i < 4096; i++) v[i] = (i * 13 + 7) & 0xff;
    local.fill(0);
    batch.setGrantToLocal(0, domid, gref, 0, localAddr, 4096);
    batch.setGrantToLocal(1, domid, gref, 100, localAddr + 8192 + 3, 60);
    expect(gnt.copy(batch, 2)).toBe(0);
    expect([batch.status(0), batch.status(1)]).toEqual([GNTST_okay, GNTST_okay]);
    expect(Buffer.from(local.subarray(0, 4096)).equals(Buffer.from(v))).toBe(true);
    expect(Buffer.from(local.subarray(8195, 8255)).equals(Buffer.from(v.subarray(100, 160)))).toBe(true);
    expect(local[8194]).toBe(0);
    expect(local[8255]).toBe(0);
  });

  test("backend -> guest copies carry the payload exactly and touch nothing else", () => {
    const { frame, gref } = grantPage(0xee);
    for (let i = 0; i < 1500; i++) local[i] = (i * 3) & 0xff;
    batch.setLocalToGrant(0, localAddr, domid, gref, 2, 1500);
    expect(gnt.copy(batch, 1)).toBe(0);
    const v = guest.pageView(frame);
    expect(v[0]).toBe(0xee);
    expect(v[1]).toBe(0xee);
    for (let i = 0; i < 1500; i++) if (v[2 + i] !== ((i * 3) & 0xff)) throw new Error(`byte ${i} differs`);
    expect(v[1502]).toBe(0xee);
  });

  test("grant -> grant copies work", () => {
    const a = grantPage(0x5a, true);
    const b = grantPage(0);
    batch.setGrantToGrant(0, domid, a.gref, 0, domid, b.gref, 1000, 96);
    expect(gnt.copy(batch, 1)).toBe(0);
    expect(guest.pageView(b.frame)[1000]).toBe(0x5a);
    expect(guest.pageView(b.frame)[1095]).toBe(0x5a);
    expect(guest.pageView(b.frame)[1096]).toBe(0);
  });

  test("every failure gets its GNTST status, and only the good segments are copied", () => {
    const good = grantPage(0x77);
    const ro = grantPage(0x10, true);
    const other = grantPage(0x20, false, 3);
    const dst = grantPage(0);
    local.fill(0);
    batch.setGrantToLocal(0, 99, good.gref, 0, localAddr, 64); // nonexistent domain
    batch.setGrantToLocal(1, domid, 16384, 0, localAddr, 64); // beyond the table
    batch.setGrantToLocal(2, domid, 6000, 0, localAddr, 64); // never granted
    batch.setGrantToLocal(3, domid, other.gref, 0, localAddr, 64); // granted to dom3
    batch.setLocalToGrant(4, localAddr, domid, ro.gref, 0, 64); // dest into a read-only grant
    batch.setGrantToLocal(5, domid, good.gref, 4000, localAddr, 97); // source offset+len > 4096
    batch.setLocalToGrant(6, localAddr, domid, dst.gref, 4095, 2); // dest offset+len > 4096
    batch.setGrantToLocal(7, domid, good.gref, 0, localAddr + 4096, 64); // good
    batch.setGrantToLocal(8, domid, ro.gref, 4032, localAddr + 8192, 64); // good: reading a read-only grant
    batch.setLocalToGrant(9, localAddr, domid, dst.gref, 4032, 64); // good: exactly to the page end
    expect(gnt.copy(batch, 10)).toBe(7);
    const statuses = Array.from({ length: 10 }, (_, i) => batch.status(i));
    expect(statuses).toEqual([
      GNTST_bad_domain, GNTST_bad_gntref, GNTST_general_error, GNTST_general_error, GNTST_general_error,
      GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_okay, GNTST_okay, GNTST_okay,
    ]);
    expect(local[0]).toBe(0); // no failing segment wrote to local
    expect(local[4096]).toBe(0x77);
    expect(local[8192 + 63]).toBe(0x10);
    expect(guest.pageView(ro.frame)[0]).toBe(0x10); // read-only page untouched
    expect(guest.pageView(dst.frame)[4095]).toBe(0); // the failing segment 6 wrote nothing (segment 9 wrote zeros)
  });

  test("statuses are reset on every copy (a reused batch does not keep old failures)", () => {
    const good = grantPage(1);
    batch.setGrantToLocal(0, 99, good.gref, 0, localAddr, 8);
    expect(gnt.copy(batch, 1)).toBe(1);
    batch.setGrantToLocal(0, domid, good.gref, 0, localAddr, 8);
    expect(gnt.copy(batch, 1)).toBe(0);
    expect(batch.status(0)).toBe(GNTST_okay);
  });

  test("count beyond the batch capacity is refused", () => {
    expect(() => gnt.copy(batch, 65)).toThrow(/count must be/);
  });
});

describe("domain destruction", () => {
  test("a backend keeps valid memory for pages it still has mapped; new copies get bad_domain", () => {
    const d = createDomain(host.dir, { memoryPages: 8 });
    const g = openGuestDomain(host.dir, d);
    const f = g.allocPage();
    g.pageView(f).fill(0x42);
    const gref = g.grantAccess(0, f, false);
    const m = gnt.map(d, [gref], true);
    g.close();
    destroyDomain(host.dir, d);
    const v = new Uint8Array(m.buffer);
    expect(v[17]).toBe(0x42);
    v[17] = 1; // still writable, no fault
    const b = new GrantCopyBatch(1);
    const buf = new Uint8Array(64);
    b.setGrantToLocal(0, d, gref, 0, ptr(buf), 64);
    expect(gnt.copy(b, 1)).toBe(1);
    expect(b.status(0)).toBe(GNTST_bad_domain);
    m.unmap();
    b.free();
  });
});

describe("registry", () => {
  test("domains are listed, described and destroyed; dom0 always exists and cannot be destroyed", async () => {
    const { createDomain: create, domainExists, domainInfo, listDomains } = await import("../../../src/sim/hypervisor/index.ts");
    const d = create(host.dir, { memoryPages: 3 });
    expect(listDomains(host.dir)).toContain(d);
    expect(listDomains(host.dir)).toContain(0);
    expect(domainInfo(host.dir, d)).toEqual({ domid: d, memoryPages: 3 });
    expect(domainExists(host.dir, d)).toBe(true);
    destroyDomain(host.dir, d);
    expect(domainExists(host.dir, d)).toBe(false);
    expect(domainInfo(host.dir, d)).toBeUndefined();
    expect(listDomains(host.dir)).not.toContain(d);
    expect(() => destroyDomain(host.dir, d)).toThrow(/no such domain/);
    expect(() => destroyDomain(host.dir, 0)).toThrow(/dom0 cannot be destroyed/);
    // a fresh domain does not reuse the domid just destroyed
    const e = create(host.dir, { memoryPages: 3 });
    expect(e).not.toBe(d);
    destroyDomain(host.dir, e);
  });
});
