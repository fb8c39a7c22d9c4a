// A backend process killed while it has a guest's grants mapped: on Xen, the dying process's
// kernel unmaps them (Linux gntdev_release on the fd's last close), so the guest can end access to
// its old ring pages and reuse them. The sim releases a dead process's pins the same way, whether
// the guest's end-access or a successor's new grant device comes first, and only that process's.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { createDomain, destroyDomain, openGuestDomain, type GuestDomain } from "../../../src/sim/hypervisor/index.ts";
import { openPlatform, type Platform } from "../../../src/platform/index.ts";
import { simPaths } from "../../../src/sim/paths.ts";
import { GTF_reading, GTF_writing } from "../../../src/xen/grant-table.ts";
import { Child, freshHost } from "./helpers.ts";

let host: ReturnType<typeof freshHost>;
let domid: number;
let guest: GuestDomain;
const children: Child[] = [];

beforeAll(() => {
  host = freshHost("dead-gnt");
  domid = createDomain(host.dir, { memoryPages: 256 });
  guest = openGuestDomain(host.dir, domid);
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.proc.exitCode === null && c.proc.signalCode === null) await c.kill();
});
afterAll(() => {
  guest.close();
  host.cleanup();
});

/** Two "ring pages" granted to dom0, as netfront grants its tx and rx rings. */
function rings(): number[] {
  return [0, 1].map(() => guest.grantAccess(0, guest.allocPage(), false));
}
const inUse = (gref: number) => (guest.grantEntry(gref).flags & (GTF_reading | GTF_writing)) !== 0;
const pinFiles = () => readdirSync(simPaths(host.dir).shmDir).filter((f) => f.endsWith(".pins"));

async function backendMapping(grefs: number[]): Promise<Child> {
  const child = new Child();
  children.push(child);
  expect(await child.call({ op: "mapAsBackend", dir: host.dir, domid, grefs })).toMatchObject({ mapped: grefs.length });
  return child;
}

test("SIGKILL of a backend holding mappings: the guest can then end access to those grants", async () => {
  const grefs = rings();
  const child = await backendMapping(grefs);
  // Alive, it holds them: end-access is refused, as Xen refuses it for a mapped grant.
  for (const g of grefs) expect(guest.endAccess(g)).toBe(false);
  expect(grefs.every(inUse)).toBe(true);
  await child.kill();
  for (const g of grefs) expect(guest.endAccess(g)).toBe(true);
  expect(grefs.some(inUse)).toBe(false);
  expect(guest.grantEntry(grefs[0]!).flags).toBe(0);
});

test("a successor opening its grant device releases a dead predecessor's pins before the guest asks", async () => {
  const grefs = rings();
  const child = await backendMapping(grefs);
  await child.kill();
  expect(grefs.every(inUse)).toBe(true); // nobody has looked yet
  const successor: Platform = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  try {
    successor.openGrantDevice();
    expect(grefs.some(inUse)).toBe(false);
    // The successor maps the same ring pages again, as an adopting daemon would.
    const gnt = successor.openGrantDevice();
    const m = gnt.map(domid, grefs, true);
    expect(guest.endAccess(grefs[0]!)).toBe(false);
    m.unmap();
  } finally {
    successor.close();
  }
  for (const g of grefs) expect(guest.endAccess(g)).toBe(true);
});

test("only the dead process's pins go: a live backend's mapping of the same grant stays in force", async () => {
  const grefs = rings();
  const live = await backendMapping(grefs);
  const dead = await backendMapping(grefs);
  expect(guest.grantEntry(grefs[0]!).flags & GTF_writing).toBe(GTF_writing);
  await dead.kill();
  for (const g of grefs) expect(guest.endAccess(g)).toBe(false);
  expect(grefs.every(inUse)).toBe(true);
  await live.exit(); // closes its platform: unmaps, as a clean exit does
  for (const g of grefs) expect(guest.endAccess(g)).toBe(true);
});

test("a dead backend's pins on a domain destroyed meanwhile are simply dropped; no pin file outlives its device", async () => {
  const d2 = createDomain(host.dir, { memoryPages: 16 });
  const g2 = openGuestDomain(host.dir, d2);
  const gref = g2.grantAccess(0, g2.allocPage(), false);
  const child = new Child();
  children.push(child);
  await child.call({ op: "mapAsBackend", dir: host.dir, domid: d2, grefs: [gref] });
  expect(pinFiles().length).toBeGreaterThan(0);
  await child.kill();
  g2.close();
  destroyDomain(host.dir, d2);
  // The next device opened anywhere reaps the dead one; its records name a domain that is gone.
  const p = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  p.openGrantDevice();
  expect(pinFiles()).toHaveLength(1); // the one just opened
  p.close();
  expect(pinFiles()).toEqual([]);
});

test("many mappings, some unmapped and remapped in between: the dead process's pins are exactly its live ones", async () => {
  // Past the pin file's first size (64 records), with holes, in this process and in the child.
  const grefs = Array.from({ length: 150 }, () => guest.grantAccess(0, guest.allocPage(), false));
  const p = openPlatform({ kind: "sim", dir: host.dir, domid: 0 });
  try {
    const gnt = p.openGrantDevice();
    const maps = grefs.map((g) => gnt.map(domid, [g], false));
    maps.forEach((m, i) => i % 2 && m.unmap());
    const triple = gnt.map(domid, grefs.slice(1, 7).filter((_, i) => i % 2 === 0), true); // refs 1, 3, 5 again
    const child = await backendMapping(grefs.filter((_, i) => i % 3 === 0));
    await child.kill();
    // Reaping (on this end-access) drops the child's pins only: ours keep every even gref and 1, 3, 5.
    expect(guest.endAccess(grefs[3]!)).toBe(false);
    const stillMapped = grefs.map((g, i) => (inUse(g) ? i : -1)).filter((i) => i >= 0);
    expect(stillMapped).toEqual(grefs.map((_, i) => i).filter((i) => i % 2 === 0 || i === 1 || i === 3 || i === 5));
    triple.unmap();
    maps.forEach((m, i) => i % 2 === 0 && m.unmap());
    expect(grefs.some(inUse)).toBe(false);
  } finally {
    p.close();
  }
  for (const g of grefs) expect(guest.endAccess(g)).toBe(true);
});
