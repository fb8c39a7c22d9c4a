// Node permissions: `w<dom>` / `r<dom>` / `b<dom>` / `n<dom>`. The first entry names the owner and
// the access every domain not listed later gets; dom0 and the owner (or a domain targeting the
// owner via SET_TARGET) get everything (xenstored perm_for_conn).
import { fail } from "./errors.ts";

export const PERM_READ = 1;
export const PERM_WRITE = 2;
export const PERM_OWNER = 8;

export interface Perm {
  id: number;
  /** PERM_READ | PERM_WRITE bits. */
  mask: number;
}

/** Who is asking: the connection's domain, whether it is privileged, and its SET_TARGET target. */
export interface Caller {
  domid: number;
  privileged: boolean;
  target?: number;
}

const LETTER_TO_MASK: Record<string, number> = { n: 0, r: PERM_READ, w: PERM_WRITE, b: PERM_READ | PERM_WRITE };
const MASK_TO_LETTER = ["n", "r", "w", "b"];

export function parsePerm(s: string): Perm {
  const m = /^([nrwb])(\d{1,5})$/.exec(s);
  if (!m) fail("EINVAL", `bad permission "${s}"`);
  const id = Number(m[2]);
  if (id > 0xffff) fail("EINVAL", `bad permission "${s}"`);
  return { id, mask: LETTER_TO_MASK[m[1]!]! };
}

export function formatPerm(p: Perm): string {
  return `${MASK_TO_LETTER[p.mask & 3]}${p.id}`;
}

export function permsOwner(perms: readonly Perm[]): number {
  return perms[0]!.id;
}

export function permFor(caller: Caller, perms: readonly Perm[]): number {
  const owner = perms[0]!.id;
  if (caller.privileged || owner === caller.domid || (caller.target !== undefined && owner === caller.target)) {
    return PERM_READ | PERM_WRITE | PERM_OWNER;
  }
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i]!;
    if (p.id === caller.domid || (caller.target !== undefined && p.id === caller.target)) return p.mask;
  }
  return perms[0]!.mask;
}

export function canRead(caller: Caller, perms: readonly Perm[] | undefined): boolean {
  return perms !== undefined && (permFor(caller, perms) & PERM_READ) !== 0;
}
