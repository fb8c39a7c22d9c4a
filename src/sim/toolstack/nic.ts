// Adding and removing a vif the way libxl does (libxl_nic.c, libxl_device.c).
//
// Add (libxl__device_add_async + libxl__device_generic_add), ONE transaction:
//   L = /libxl/<domid>/device/vif/<devid> must not exist; rm L; L/frontend, L/backend
//   rm F; mkdir F; perms F = [n<domid>, r<bedom>]; F/backend
//   F/{backend-id, state=1, handle, mac, trusted}, each written then given F's perms
//   F/mtu with [n<bedom>, r<domid>] (read-only to the guest)
//   rm B; mkdir B; perms B = [n<bedom>, r<domid>]; B/frontend
//   B/{frontend-id, online=1, state=1, script, vifname?, mac, rate?, mtu (only if != 1500),
//      bridge, handle, type, hotplug-status=""}
//   the same backend entries again under L
// then wait (10 s) for B/state = 2 and run the hotplug script.
//
// Remove (libxl__initiate_device_generic_remove), force "auto" for network-detach, "on" for destroy:
//   one transaction: [force on: clean up F]; read B/state (gone: just delete the nodes);
//   B/online = 0; B/state = 5 unless it is already 6
//   wait 10 s for B/state = 6; on timeout with force auto, go again with force on (a second 10 s);
//   then delete F, L and B (libxl__device_destroy), also after a final timeout.
import { randomBytes } from "node:crypto";
import { XenbusState } from "../../xen/xenbus-state.ts";
import type { XenstoreClient, XsPerm } from "../../xenstore/index.ts";
import { LibxlRc, type LibxlLog } from "./libxl-log.ts";
import { backendPath, frontendPath, libxlDevicePath, type DeviceRef } from "./paths.ts";
import { pathCleanup, rmIfExists, waitForState, writev } from "./xs-helpers.ts";

/** LIBXL_DEVICE_NIC_MTU_DEFAULT */
export const NIC_MTU_DEFAULT = 1500;
/** libxl__xen_script_dir_path() + "/vif-bridge" on Debian. */
export const DEFAULT_VIF_SCRIPT = "/etc/xen/scripts/vif-bridge";
export const DEFAULT_BRIDGE = "xenbr0";

export interface NicConfig {
  devid: number;
  mac: string;
  bridge: string;
  script: string;
  mtu: number;
  /** B/vifname: the backend interface's name, when the user chose one. */
  vifname?: string;
  /** B/rate: "bytes,usecs" (bytes allowed per interval), when rate-limited (vif-rate.ts parses xl's rate=). */
  rate?: { bytesPerInterval: number | bigint; intervalUsecs: number };
  trusted: boolean;
  backendDomid: number;
  backendKind: string;
}

/** libxl__device_nic_setdefault's random MAC: Xen's OUI 00:16:3e, then 7+8+8 random bits. */
export function randomXenMac(): string {
  const r = randomBytes(3);
  return ["00", "16", "3e", r[0]! & 0x7f, r[1]!, r[2]!].map((b) => (typeof b === "string" ? b : b.toString(16).padStart(2, "0"))).join(":");
}

/** Canonical lower-case form, or undefined when `s` is not a unicast MAC. */
export function parseMac(s: string): string | undefined {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(s)) return undefined;
  const mac = s.toLowerCase();
  return Number.parseInt(mac.slice(0, 2), 16) & 1 ? undefined : mac;
}

export function nicDefaults(devid: number, partial: Partial<NicConfig> = {}): NicConfig {
  return {
    devid,
    mac: partial.mac ?? randomXenMac(),
    bridge: partial.bridge ?? DEFAULT_BRIDGE,
    script: partial.script ?? DEFAULT_VIF_SCRIPT,
    mtu: partial.mtu ?? NIC_MTU_DEFAULT,
    vifname: partial.vifname,
    rate: partial.rate,
    trusted: partial.trusted ?? true,
    backendDomid: partial.backendDomid ?? 0,
    backendKind: partial.backendKind ?? "vif",
  };
}

export const deviceRef = (domid: number, nic: NicConfig): DeviceRef => ({
  domid,
  devid: nic.devid,
  backendDomid: nic.backendDomid,
  backendKind: nic.backendKind,
});

type KV = readonly [string, string];

/** The entry lists, in libxl's order (device_add_async's three, then libxl__set_xenstore_nic's). */
export function nicEntries(domid: number, nic: NicConfig): { back: KV[]; front: KV[]; roFront: KV[] } {
  const back: KV[] = [
    ["frontend-id", String(domid)],
    ["online", "1"],
    ["state", String(XenbusState.Initialising)],
    ["script", nic.script],
  ];
  if (nic.vifname) back.push(["vifname", nic.vifname]);
  back.push(["mac", nic.mac]);
  if (nic.rate) back.push(["rate", `${nic.rate.bytesPerInterval},${nic.rate.intervalUsecs}`]);
  if (nic.mtu !== NIC_MTU_DEFAULT) back.push(["mtu", String(nic.mtu)]);
  back.push(["bridge", nic.bridge], ["handle", String(nic.devid)], ["type", "vif"]);
  // "Force backend to wait for hotplug script execution before switching to connected state."
  back.push(["hotplug-status", ""]);
  const front: KV[] = [
    ["backend-id", String(nic.backendDomid)],
    ["state", String(XenbusState.Initialising)],
    ["handle", String(nic.devid)],
    ["mac", nic.mac],
    ["trusted", nic.trusted ? "1" : "0"],
  ];
  const roFront: KV[] = [["mtu", String(nic.mtu)]];
  return { back, front, roFront };
}

export class DeviceExistsError extends Error {}

/** Writes one vif's nodes in one transaction (no waiting). */
export async function writeNicNodes(xs: XenstoreClient, domid: number, nic: NicConfig): Promise<void> {
  const dev = deviceRef(domid, nic);
  const F = frontendPath(dev);
  const B = backendPath(dev);
  const L = libxlDevicePath(dev);
  const { back, front, roFront } = nicEntries(domid, nic);
  const fePerms: XsPerm[] = [
    { domid, access: "n" },
    { domid: nic.backendDomid, access: "r" },
  ];
  const bePerms: XsPerm[] = [
    { domid: nic.backendDomid, access: "n" },
    { domid, access: "r" },
  ];
  await xs.transaction(async (t) => {
    if ((await t.tryRead(L)) !== undefined) throw new DeviceExistsError(`device already exists in xenstore`);
    await rmIfExists(t, L);
    await t.write(`${L}/frontend`, F);
    await t.write(`${L}/backend`, B);

    await rmIfExists(t, F);
    await t.mkdir(F);
    await t.setPerms(F, fePerms);
    await t.write(`${F}/backend`, B);
    await writev(t, F, front, fePerms);
    await writev(t, F, roFront, bePerms);

    await rmIfExists(t, B);
    await t.mkdir(B);
    await t.setPerms(B, bePerms);
    await t.write(`${B}/frontend`, F);
    await writev(t, B, back);

    await writev(t, L, back);
  });
}

export interface NicWaitResult {
  devid: number;
  ok: boolean;
  rc?: number;
}

/**
 * libxl__wait_device_connection: wait for B/state = InitWait, then run the hotplug script. In the
 * sim there is no vif-bridge; its visible effect on xenstore (B/hotplug-status = "connected",
 * which Linux netback waits for before Connected) is written instead.
 */
export async function waitNicConnection(xs: XenstoreClient, dev: DeviceRef, timeoutMs: number, log: LibxlLog): Promise<NicWaitResult> {
  const B = backendPath(dev);
  const r = await waitForState(xs, `${B}/state`, XenbusState.InitWait, timeoutMs);
  if (r !== "ok") {
    const rc = r === "timeout" ? LibxlRc.TIMEDOUT : LibxlRc.INVAL;
    log("error", "libxl_device.c:device_backend_callback", dev.domid, `unable to add device with path ${B} - rc ${rc}`);
    return { devid: dev.devid, ok: false, rc };
  }
  await xs.write(`${B}/hotplug-status`, "connected");
  return { devid: dev.devid, ok: true };
}

/** libxl__device_destroy: F, L and B removed (each with empty parents) in one transaction. */
export async function destroyDeviceNodes(xs: XenstoreClient, dev: DeviceRef): Promise<void> {
  await xs.transaction(async (t) => {
    await pathCleanup(t, frontendPath(dev));
    await pathCleanup(t, libxlDevicePath(dev));
    await pathCleanup(t, backendPath(dev));
  });
}

export type RemoveForce = "auto" | "on";

export interface RemoveOptions {
  force: RemoveForce;
  timeoutMs: number;
  /**
   * Sim-only shortcut (not libxl): when the backend never left Initialising, nobody is there to
   * answer, so do not wait for Closed. Used by `--no-wait` and by `sim down`.
   */
  skipWaitIfUnclaimed?: boolean;
}

/** Returns 0, or the libxl rc the removal ended with (the nodes are gone unless noted in the log). */
export async function removeNic(xs: XenstoreClient, dev: DeviceRef, opts: RemoveOptions, log: LibxlLog): Promise<number> {
  const B = backendPath(dev);
  let force = opts.force;
  for (;;) {
    const state = await xs.transaction(async (t) => {
      if (force === "on") await pathCleanup(t, frontendPath(dev));
      const s = await t.tryRead(`${B}/state`);
      if (s === undefined) return undefined;
      await t.write(`${B}/online`, "0");
      if (Number.parseInt(s, 10) !== XenbusState.Closed) await t.write(`${B}/state`, String(XenbusState.Closing));
      return Number.parseInt(s, 10);
    });
    if (state === undefined) {
      // libxl aborts the transaction here (the frontend cleanup above is dropped too) and goes
      // straight to deleting the nodes.
      log("info", "libxl_device.c:libxl__initiate_device_generic_remove", undefined, `backend ${B} already removed, cleanup frontend only`);
      await destroyDeviceNodes(xs, dev);
      return 0;
    }
    if (opts.skipWaitIfUnclaimed && state === XenbusState.Initialising) {
      await destroyDeviceNodes(xs, dev);
      return 0;
    }
    const r = await waitForState(xs, `${B}/state`, XenbusState.Closed, opts.timeoutMs);
    if (r === "ok") {
      // The hotplug script would run "offline" here; in the sim it has nothing to undo.
      await destroyDeviceNodes(xs, dev);
      return 0;
    }
    if (r === "timeout" && force === "auto") {
      log("debug", "libxl_device.c:device_backend_callback", dev.domid, "Timeout reached, initiating forced remove");
      force = "on";
      continue;
    }
    const rc = r === "timeout" ? LibxlRc.TIMEDOUT : LibxlRc.INVAL;
    log("error", "libxl_device.c:device_backend_callback", dev.domid, `unable to remove device with path ${B} - rc ${rc}`);
    // device_hotplug_done: a forced removal deletes the nodes even though the backend never answered.
    if (force === "on") await destroyDeviceNodes(xs, dev);
    return rc;
  }
}
