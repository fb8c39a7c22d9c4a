// The grant device's per-domain cache (the domain's whole RAM and grant table mapped, its RAM file
// open) must not outlive the backend's use of that domain: once it kept every guest a worker had
// served mapped, an 8 MiB mapping and an fd per destroyed guest (test/daemon/lifecycle.test.ts).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { GrantCopyBatch, openPlatform, PlatformError, type GrantDevice, type Platform } from "../../../src/platform/index.ts";
import { createDomain, destroyDomain, openGuestDomain } from "../../../src/sim/hypervisor/index.ts";
import { simPaths } from "../../../src/sim/paths.ts";
import { freshHost } from "./helpers.ts";

let host: ReturnType<typeof freshHost>;
let platform: Platform;
let gnt: GrantDevice;
const local = new Uint8Array(4096); // kept referenced: native code writes into it
const batch = new GrantCopyBatch(1);

beforeAll(() => {
  host = freshHost("gntdev-release");
  platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  gnt = platform.openGrantDevice();
});
afterAll(() => {
  batch.free();
  platform.close();
  host.cleanup();
});

/** This process's mappings and fds naming dom<domid>'s files (the guest's own views included). */
function held(domid: number): number {
  const file = `${simPaths(host.dir).shmDir}/dom${domid}.`;
  const maps = readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.includes(file)).length;
  let fds = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(file)) fds++;
    } catch {
      // the readdir's own fd, closed by now
    }
  }
  return maps + fds;
}

function guestWithGrant() {
  const domid = createDomain(host.dir, { memoryPages: 64 });
  const guest = openGuestDomain(host.dir, domid);
  const gref = guest.grantAccess(0, guest.allocPage(), false);
  return { domid, guest, gref };
}

test("unmapping a domain's last mapping lets go of its memory", () => {
  const { domid, guest, gref } = guestWithGrant();
  const base = held(domid);
  const a = gnt.map(domid, [gref], true);
  const b = gnt.map(domid, [gref], false);
  expect(held(domid)).toBeGreaterThan(base);
  a.unmap();
  // b still maps it: the data path keeps its cache.
  batch.setGrantToLocal(0, domid, gref, 0, ptr(local), 64);
  expect(gnt.copy(batch, 1)).toBe(0);
  b.unmap();
  expect(held(domid)).toBe(base);
  guest.close();
  destroyDomain(host.dir, domid);
  expect(held(domid)).toBe(0);
});

test("a destroyed domain only copied from is let go at the device's next map", () => {
  const g = guestWithGrant();
  batch.setGrantToLocal(0, g.domid, g.gref, 0, ptr(local), 64);
  expect(gnt.copy(batch, 1)).toBe(0);
  g.guest.close();
  destroyDomain(host.dir, g.domid);
  expect(held(g.domid)).toBeGreaterThan(0);

  const other = guestWithGrant();
  gnt.map(other.domid, [other.gref], false).unmap();
  expect(held(g.domid)).toBe(0);
  other.guest.close();
  destroyDomain(host.dir, other.domid);
});

test("a mapping that outlives its domain's destruction releases everything when unmapped", () => {
  const { domid, guest, gref } = guestWithGrant();
  const m = gnt.map(domid, [gref], true);
  guest.close();
  destroyDomain(host.dir, domid);
  // A dying Xen domain's pages stay valid while mapped: the backend may still read its rings.
  new Uint8Array(m.buffer)[0] = 1;
  m.unmap();
  expect(held(domid)).toBe(0);
});

test("a map refused for a bad grant keeps nothing of the domain", () => {
  const { domid, guest } = guestWithGrant();
  const base = held(domid);
  expect(() => gnt.map(domid, [9000], false)).toThrow(PlatformError);
  expect(held(domid)).toBe(base);
  guest.close();
  destroyDomain(host.dir, domid);
});
