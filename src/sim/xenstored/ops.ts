// Tree operations (READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS, SET_PERMS) on a
// View, with xenstored's permission, creation and deletion rules (tools/xenstored/core.c):
// - a missing node answers ENOENT only if the nearest existing ancestor grants the access asked
//   for, else EACCES, so an unprivileged domain learns nothing about nodes it cannot see;
// - new nodes (and missing parents, created implicitly) inherit the parent's permissions, and an
//   unprivileged creator becomes their owner;
// - RM removes the subtree; each removed node fires watches set exactly on it, the removed root
//   also fires watches on its ancestors.
import { XENSTORE_PAYLOAD_MAX } from "../../xen/xs-wire.ts";
import { fail, XsError } from "./errors.ts";
import { baseName, childPath, parentOf } from "./path.ts";
import { PERM_OWNER, PERM_READ, PERM_WRITE, formatPerm, parsePerm, permFor, type Caller, type Perm } from "./perms.ts";
import type { Quotas } from "./quotas.ts";
import type { NodeData, View, XsNode } from "./store.ts";
import type { XsErrorName } from "../../xen/xs-wire.ts";

export interface OpContext {
  view: View;
  caller: Caller;
  quotas: Quotas;
}

export { PERM_OWNER, PERM_READ, PERM_WRITE };

/** Size xenstored accounts for a node (header, permissions, value, child names). */
export function nodeSize(data: NodeData): number {
  let size = 16 + 8 * data.perms.length + data.value.length;
  for (const c of data.children) size += c.length + 1;
  return size;
}

function checkSize(ctx: OpContext, data: NodeData): void {
  if (!ctx.caller.privileged && nodeSize(data) > ctx.quotas.nodeSize) fail("ENOSPC", "node too large");
}

/** xenstored errno_from_parents: hide the real error unless an ancestor grants `want`. */
function errorFromParents(ctx: OpContext, path: string, errno: XsErrorName, want: number): XsErrorName {
  let p = path;
  while (p !== "/") {
    p = parentOf(p);
    const n = ctx.view.get(p);
    if (n) return (permFor(ctx.caller, n.perms) & want) !== 0 ? errno : "EACCES";
  }
  return "EACCES";
}

/** The node at `path` if the caller has all of `want` on it; throws ENOENT/EACCES otherwise. */
export function lookup(ctx: OpContext, path: string, want: number): XsNode {
  const node = ctx.view.get(path);
  if (!node) fail(errorFromParents(ctx, path, "ENOENT", want));
  if ((permFor(ctx.caller, node.perms) & want) !== want) fail("EACCES");
  return node;
}

function lookupOrMissing(ctx: OpContext, path: string, want: number): XsNode | undefined {
  try {
    return lookup(ctx, path, want);
  } catch (e) {
    if (e instanceof XsError && e.errno === "ENOENT") return undefined;
    throw e;
  }
}

/** Create `path` and any missing parents (caller already proved write access to the ancestor). */
function create(ctx: OpContext, path: string, value: Buffer): void {
  const { view, caller } = ctx;
  const missing = [path];
  let ancestorPath = parentOf(path);
  let ancestor = view.get(ancestorPath);
  while (!ancestor) {
    if (ancestorPath === "/") fail("EIO", "root missing");
    missing.push(ancestorPath);
    ancestorPath = parentOf(ancestorPath);
    ancestor = view.get(ancestorPath);
  }
  if (!caller.privileged && view.owned(caller.domid) + missing.length > ctx.quotas.nodesPerDomain) {
    fail("ENOSPC", "node quota");
  }
  const perms: Perm[] = ancestor.perms.map((p) => ({ ...p }));
  if (!caller.privileged) perms[0] = { id: caller.domid, mask: perms[0]!.mask };
  missing.reverse(); // top-most first
  const updatedAncestor: NodeData = { ...ancestor, children: [...ancestor.children, baseName(missing[0]!)] };
  const created: [string, NodeData][] = missing.map((p, i) => [
    p,
    {
      value: i === missing.length - 1 ? value : Buffer.alloc(0),
      children: i === missing.length - 1 ? [] : [baseName(missing[i + 1]!)],
      perms,
    },
  ]);
  checkSize(ctx, updatedAncestor);
  for (const [, d] of created) checkSize(ctx, d);
  view.put(ancestorPath, updatedAncestor);
  for (const [p, d] of created) view.put(p, d);
}

export function read(ctx: OpContext, path: string): Buffer {
  return lookup(ctx, path, PERM_READ).value;
}

export function write(ctx: OpContext, path: string, value: Buffer): void {
  const node = lookupOrMissing(ctx, path, PERM_WRITE);
  if (node) {
    const data = { ...node, value };
    checkSize(ctx, data);
    ctx.view.put(path, data);
  } else {
    create(ctx, path, value);
  }
  ctx.view.emit({ path, exact: false });
}

export function mkdir(ctx: OpContext, path: string): void {
  if (lookupOrMissing(ctx, path, PERM_WRITE)) return;
  create(ctx, path, Buffer.alloc(0));
  ctx.view.emit({ path, exact: false });
}

export function rm(ctx: OpContext, path: string): void {
  const node = lookupOrMissing(ctx, path, PERM_WRITE);
  if (!node) {
    // Removing a missing node is fine if its parent exists.
    if (ctx.view.get(parentOf(path))) return;
    fail("ENOENT");
  }
  if (path === "/") fail("EINVAL", "cannot remove the root");
  removeSubtree(ctx.view, path, node);
}

/** Delete `path` and everything below it, firing watches; unlink it from its parent. */
export function removeSubtree(view: View, path: string, node: XsNode): void {
  const parentPath = parentOf(path);
  const parent = view.get(parentPath);
  const walk = (p: string, n: XsNode, parentPerms: readonly Perm[] | undefined) => {
    for (const c of n.children) {
      const cp = childPath(p, c);
      const child = view.get(cp);
      if (child) walk(cp, child, n.perms);
    }
    view.del(p);
    view.emit({ path: p, exact: p !== path, perms: n.perms, parentPerms });
  };
  walk(path, node, parent?.perms);
  if (parent) {
    const name = baseName(path);
    view.put(parentPath, { ...parent, children: parent.children.filter((c) => c !== name) });
  }
}

/** Remove every node owned by `domid` (xenstored deletes a released domain's orphans). */
export function removeOwnedBy(view: View, domid: number): number {
  let removed = 0;
  const visit = (p: string) => {
    const n = view.get(p);
    if (!n) return;
    if (p !== "/" && n.perms[0]!.id === domid) {
      removeSubtree(view, p, n);
      removed++;
      return;
    }
    for (const c of [...n.children]) visit(childPath(p, c));
  };
  visit("/");
  return removed;
}

export function directory(ctx: OpContext, path: string): readonly string[] {
  return lookup(ctx, path, PERM_READ).children;
}

/** DIRECTORY_PART reply: "<generation>\0" then child names from byte `offset` of the NUL-joined
 *  list, as many as fit; a final extra "\0" marks the end of the list. */
export function directoryPart(ctx: OpContext, path: string, offset: number): Buffer {
  const node = lookup(ctx, path, PERM_READ);
  const gen = Buffer.from(`${node.gen}\0`, "latin1");
  const all = Buffer.from(node.children.map((c) => c + "\0").join(""), "latin1");
  if (offset < 0 || offset >= all.length) return Buffer.concat([gen, Buffer.from([0])]);
  const maxLen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
  let len = 0;
  let pos = offset;
  for (;;) {
    const nul = all.indexOf(0, pos);
    const childLen = nul - pos;
    if (len + childLen >= maxLen) break;
    len += childLen + 1;
    pos = nul + 1;
    if (offset + len === all.length) break;
  }
  const end = offset + len === all.length;
  return Buffer.concat([gen, all.subarray(offset, offset + len), end ? Buffer.from([0]) : Buffer.alloc(0)]);
}

export function getPerms(ctx: OpContext, path: string): string[] {
  return lookup(ctx, path, PERM_READ).perms.map(formatPerm);
}

export function setPerms(ctx: OpContext, path: string, permStrings: string[]): void {
  if (!ctx.caller.privileged && permStrings.length > ctx.quotas.permsPerNode) fail("ENOSPC", "too many permissions");
  const perms = permStrings.map(parsePerm);
  const node = lookup(ctx, path, PERM_WRITE | PERM_OWNER);
  if (!ctx.caller.privileged && perms[0]!.id !== node.perms[0]!.id) fail("EPERM", "only dom0 may change the owner");
  const data = { ...node, perms };
  checkSize(ctx, data);
  ctx.view.put(path, data);
  ctx.view.emit({ path, exact: false, oldPerms: node.perms });
}
