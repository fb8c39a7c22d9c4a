// Where a backend's nodes live in xenstore. Everything is an absolute path: the daemon's client is
// privileged (dom0's socket or /dev/xen/xenbus), and absolute paths read the same in logs.

/** /local/domain/<bedom>/backend/<type>: the directory the toolstack creates devices under. */
export function backendRoot(backendDomid: number, type: string): string {
  return `/local/domain/${backendDomid}/backend/${type}`;
}

/** B = <root>/<frontend domid>/<devid> */
export function deviceBackendPath(root: string, domid: number, devid: number): string {
  return `${root}/${domid}/${devid}`;
}

/**
 * Linux's xenbus_va_dev_error writes "error/<nodename>/error" relative to the backend's home, with
 * nodename "backend/<type>/<domid>/<devid>": so /local/domain/<bedom>/error/backend/<type>/<domid>/<devid>.
 * This returns that directory; the message goes in its "error" node.
 */
export function deviceErrorDir(backendDomid: number, type: string, domid: number, devid: number): string {
  return `/local/domain/${backendDomid}/error/backend/${type}/${domid}/${devid}`;
}

/** Linux netback's interface name ("vif%u.%u"), used in logs, /vifs and as the default TAP name. */
export function vifName(domid: number, devid: number, prefix = "vif"): string {
  return `${prefix}${domid}.${devid}`;
}

/** Largest domid a guest can have (DOMID_FIRST_RESERVED - 1). */
const DOMID_MAX = 0x7fef;

/** A domid or devid path component: plain decimal, no sign, no leading zeros, in range. */
export function parseIdComponent(s: string | undefined, max = 0xffffffff): number | undefined {
  if (s === undefined || !/^(0|[1-9]\d{0,9})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

export type WatchTarget =
  /** `node`: the path below B ("" for B itself, "state", "queue-0/x"). */
  | { kind: "device"; domid: number; devid: number; node: string }
  /** The root itself or a <domid> directory changed: something appeared or went away. */
  | { kind: "scan" }
  | { kind: "ignore" };

/** Which device (if any) a watch event under `root` concerns. */
export function classifyBackendEvent(root: string, path: string): WatchTarget {
  if (path === root) return { kind: "scan" };
  if (!path.startsWith(`${root}/`)) return { kind: "ignore" };
  const [d, dev, ...rest] = path.slice(root.length + 1).split("/");
  const domid = parseIdComponent(d, DOMID_MAX);
  if (domid === undefined) return { kind: "ignore" };
  if (dev === undefined) return { kind: "scan" };
  const devid = parseIdComponent(dev);
  if (devid === undefined) return { kind: "ignore" };
  return { kind: "device", domid, devid, node: rest.join("/") };
}

export { DOMID_MAX };
