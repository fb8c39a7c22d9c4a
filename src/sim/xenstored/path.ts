// Path rules (docs/misc/xenstore.txt, xenstored canonicalize()): characters a-zA-Z0-9-/_@, no "//",
// no trailing "/" except the root, "@..." only where special watch paths are allowed, relative
// paths resolved under /local/domain/<domid>.
import { XENSTORE_ABS_PATH_MAX } from "../../xen/xs-wire.ts";
import { fail } from "./errors.ts";
import type { Caller } from "./perms.ts";

const VALID = /^[A-Za-z0-9\-/_@]*$/;
const LOCAL_PREFIX = /^\/local\/domain\/\d{1,5}\//;

export function domainPath(domid: number): string {
  return `/local/domain/${domid >>> 0}`;
}

export interface Canonical {
  /** Absolute path (or "@special"). */
  path: string;
  /** Length of the prefix to strip when reporting this path back (relative watch paths). */
  prefixLen: number;
}

export function canonicalize(
  caller: Caller,
  raw: string | undefined,
  allowSpecial: boolean,
  maxRelLen: number,
): Canonical {
  if (raw === undefined || !VALID.test(raw)) fail("EINVAL", "invalid path");
  if (raw.startsWith("@") && !allowSpecial) fail("EINVAL", "special path not allowed here");
  let path = raw;
  let prefixLen = 0;
  if (!raw.startsWith("/") && !raw.startsWith("@")) {
    const base = domainPath(caller.domid);
    path = `${base}/${raw}`;
    prefixLen = base.length + 1;
  }
  if ((path.endsWith("/") && path !== "/") || path.includes("//")) fail("EINVAL", "invalid path");
  if (path.length > XENSTORE_ABS_PATH_MAX) fail("EINVAL", "path too long");
  if (!caller.privileged) {
    const local = LOCAL_PREFIX.exec(path);
    if (path.length - (local ? local[0].length : 0) > maxRelLen) fail("EINVAL", "path too long");
  }
  return { path, prefixLen };
}

/** Parent of an absolute path; "/" for top-level nodes and for "@special" names. */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

