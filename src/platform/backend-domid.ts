// Which domain qnicd serves vifs from (--domid). In dom0, where xenstored runs, it is 0. In a driver
// domain (xl's vif `backend=` key names it) xenstore is reached through /dev/xen/xenbus, and the
// domain reads its own id from xenstore: a relative path is resolved against the caller's
// /local/domain/<id> (xen docs/misc/xenstore.txt), and libxl writes `domid` there for every domain
// it builds (libxl_dom.c, libxl__build_post). The same read is a check when --domid is given: serving another
// domain's backend directory would fail later on permissions, with a far less clear message.
import { existsSync } from "node:fs";
import { XenstoreClient } from "../xenstore/index.ts";
import { XENBUS_DEVICE_PATH, XENSTORED_SOCKET_PATH } from "./xen.ts";

export type DomidSetting = number | "auto";

export interface DomidProbe {
  exists(path: string): boolean;
  /** The calling domain's `domid` node, read through `endpoint`. */
  readOwnDomid(endpoint: string): Promise<string | undefined>;
}

const realProbe: DomidProbe = { exists: existsSync, readOwnDomid };

/** The domain a process's xenstore connection belongs to, from the relative `domid` node. */
export async function readOwnDomid(endpoint: string): Promise<string | undefined> {
  const xs = await XenstoreClient.connect({ path: endpoint, reconnect: { enabled: false }, onError: () => {} });
  try {
    return await xs.tryRead("domid");
  } finally {
    xs.close();
  }
}

/** --domid for the platform: the number itself, or for "auto" 0 unless xenstore says otherwise. */
export async function backendDomid(setting: DomidSetting, kind: "xen" | "sim", probe: DomidProbe = realProbe): Promise<number> {
  // The sim picks the xenstore socket by domid (src/platform/sim.ts), so there is nothing to ask.
  if (kind === "sim") return setting === "auto" ? 0 : setting;
  // As XenPlatform: the socket where xenstored runs locally (dom0), else the kernel's device.
  if (probe.exists(XENSTORED_SOCKET_PATH) || !probe.exists(XENBUS_DEVICE_PATH)) return setting === "auto" ? 0 : setting;
  let text: string | undefined;
  try {
    text = await probe.readOwnDomid(XENBUS_DEVICE_PATH);
  } catch (e) {
    throw new Error(`qnicd: reading this domain's id (domid) through ${XENBUS_DEVICE_PATH} failed: ${(e as Error).message}: give it with --domid N`);
  }
  const own = text !== undefined && /^\d{1,5}$/.test(text) ? Number(text) : undefined;
  if (own === undefined) {
    if (setting !== "auto") return setting;
    throw new Error(`qnicd: this domain's xenstore has no usable domid node (${text === undefined ? "none" : JSON.stringify(text)}) through ${XENBUS_DEVICE_PATH}: give the domain's id with --domid N (xl domid NAME in dom0 prints it)`);
  }
  if (setting !== "auto" && setting !== own) {
    throw new Error(`qnicd: --domid ${setting}, but this domain is dom${own} (its xenstore domid node): leave --domid out or give --domid ${own}`);
  }
  return own;
}
