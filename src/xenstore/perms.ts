// Xenstore node permissions: "<letter><domid>" with n = none, r = read, w = write, b = both.
// The first entry names the owner (who may always read, write and set permissions) and doubles as
// the access granted to every domain not listed after it.
import { XenstoreError } from "./errors.ts";

export type XsAccess = "n" | "r" | "w" | "b";
export interface XsPerm {
  domid: number;
  access: XsAccess;
}

export function parsePerm(s: string): XsPerm {
  const m = /^([nrwb])(\d+)$/.exec(s);
  if (!m) throw new XenstoreError("EINVAL", `malformed permission "${s}" (expected n|r|w|b followed by a domid)`);
  return { access: m[1] as XsAccess, domid: Number(m[2]) };
}

export function formatPerm(p: XsPerm): string {
  if (!Number.isInteger(p.domid) || p.domid < 0 || p.domid > 0xffff) {
    throw new XenstoreError("EINVAL", `invalid domid ${p.domid} in a permission`);
  }
  return `${p.access}${p.domid}`;
}

/** Compact form for tests and logs: [{n,0},{r,5}] -> "n0,r5". */
export function permsToString(perms: readonly XsPerm[]): string {
  return perms.map(formatPerm).join(",");
}
