// A domain's own xenstore nodes, as libxl writes them for a PV guest:
// libxl__domain_make (libxl_create.c), libxl__build_post (libxl_dom.c), and removal in
// devices_destroy_cb (libxl_domain.c).
import type { XenstoreClient, XsPerm } from "../../xenstore/index.ts";
import { domainPath, libxlPath, TOOLSTACK_DOMID, vmPath } from "./paths.ts";
import { mknod, rmIfExists, writev } from "./xs-helpers.ts";

/** The sim has no real store ring: fixed stand-ins for what xc_dom_* would report for a PV guest. */
export const SIM_STORE_PORT = 1;
export const SIM_STORE_MFN = 0xfeffc;

export interface DomainRecord {
  domid: number;
  name: string;
  uuid: string;
  maxMemKb: number;
  vcpus: number;
}

/**
 * libxl__domain_make's transaction. Ownership: the domain's directory belongs to dom0 and the guest
 * may only read it ("roperm"); the nodes the guest must write (control/shutdown, data, drivers,
 * feature, attr, error, device/suspend/event-channel) are owned by the guest ("rwperm").
 */
export async function makeDomainNodes(xs: XenstoreClient, d: DomainRecord): Promise<void> {
  const dom = domainPath(d.domid);
  const vm = vmPath(d.uuid);
  const lx = libxlPath(d.domid);
  const noperm: XsPerm[] = [{ domid: TOOLSTACK_DOMID, access: "n" }];
  const roperm: XsPerm[] = [
    { domid: TOOLSTACK_DOMID, access: "n" },
    { domid: d.domid, access: "r" },
  ];
  const rwperm: XsPerm[] = [{ domid: d.domid, access: "n" }];
  await xs.transaction(async (t) => {
    await rmIfExists(t, dom);
    await mknod(t, dom, roperm);
    await rmIfExists(t, vm);
    await mknod(t, vm, roperm);
    await rmIfExists(t, lx);
    await mknod(t, lx, noperm);
    await mknod(t, `${lx}/device`, noperm);

    await t.write(`${dom}/vm`, vm);
    await t.write(`${dom}/name`, d.name); // libxl__domain_rename
    await mknod(t, `${dom}/cpu`, roperm);
    await mknod(t, `${dom}/memory`, roperm);
    await mknod(t, `${dom}/device`, roperm);
    await mknod(t, `${dom}/device/suspend/event-channel`, rwperm);
    await mknod(t, `${dom}/control`, roperm);
    for (const k of ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq"]) {
      await mknod(t, `${dom}/control/${k}`, rwperm);
    }
    for (const k of ["data", "drivers", "feature", "attr", "error"]) await mknod(t, `${dom}/${k}`, rwperm);

    await t.write(`${vm}/uuid`, d.uuid);
    await t.write(`${vm}/name`, d.name);
    await t.write(`${dom}/control/platform-feature-multiprocessor-suspend`, "1");
    await t.write(`${dom}/control/platform-feature-xs_reset_watches`, "1");
    await t.write(`${lx}/type`, "pv");
  });
}

/** libxl__build_post: memory, domid, store details, vcpus; then INTRODUCE (fires @introduceDomain). */
export async function buildPost(xs: XenstoreClient, d: DomainRecord): Promise<void> {
  const dom = domainPath(d.domid);
  const ents: [string, string][] = [
    ["memory/static-max", String(d.maxMemKb)],
    ["memory/target", String(d.maxMemKb)],
    ["memory/videoram", "0"],
    ["domid", String(d.domid)],
    ["store/port", String(SIM_STORE_PORT)],
    ["store/ring-ref", String(SIM_STORE_MFN)],
  ];
  for (let i = 0; i < d.vcpus; i++) ents.push([`cpu/${i}/availability`, "online"]);
  const now = Date.now();
  const vmEnts: [string, string][] = [
    ["image/ostype", "linux"],
    ["start_time", `${Math.floor(now / 1000)}.${String(Math.floor((now % 1000) / 10)).padStart(2, "0")}`],
  ];
  const vm = await xs.read(`${dom}/vm`);
  await xs.transaction(async (t) => {
    await writev(t, dom, ents);
    await writev(t, vm, vmEnts);
  });
  await xs.introduce(d.domid, SIM_STORE_MFN, SIM_STORE_PORT);
}

/** devices_destroy_cb's xenstore part: the vm path, the domain's directory, libxl's area. */
export async function removeDomainNodes(xs: XenstoreClient, domid: number): Promise<void> {
  const dom = domainPath(domid);
  const vm = await xs.tryRead(`${dom}/vm`);
  if (vm) await rmIfExists(xs, vm);
  await rmIfExists(xs, dom);
  await rmIfExists(xs, libxlPath(domid));
}
