// The node database. Nodes are immutable records, so a transaction can hold on to the version it
// read without copying, and every change gets a fresh generation number (xenstored's
// node->generation), which both DIRECTORY_PART and transaction conflict checks rely on.
import type { Perm } from "./perms.ts";

export interface NodeData {
  readonly value: Buffer;
  /** Child names in creation order (xenstored appends, DIRECTORY lists in that order). */
  readonly children: readonly string[];
  readonly perms: readonly Perm[];
}

export interface XsNode extends NodeData {
  readonly gen: number;
}

/** A change that may fire watches; the permission fields stand in for nodes that are gone. */
export interface ChangeEvent {
  path: string;
  /** Only watches on exactly this path fire (descendants removed with an ancestor). */
  exact: boolean;
  /** Permissions of the changed node when it no longer exists (deletion). */
  perms?: readonly Perm[];
  /** Permissions of its parent at the time of a deletion. */
  parentPerms?: readonly Perm[];
  /** Permissions before a SET_PERMS or before a transaction touched the node: a watcher that could
   *  read the node before the change hears about the change. */
  oldPerms?: readonly Perm[];
}

/** What tree operations read and write through: the global store or one transaction. */
export interface View {
  get(path: string): XsNode | undefined;
  put(path: string, data: NodeData): void;
  del(path: string): void;
  /** Nodes currently owned by `domid` as this view sees them. */
  owned(domid: number): number;
  emit(ev: ChangeEvent): void;
}

export const NO_NODE_PERMS: readonly Perm[] = Object.freeze([{ id: 0, mask: 0 }]);

export class Store implements View {
  private readonly nodes = new Map<string, XsNode>();
  private readonly ownedBy = new Map<number, number>();
  /** Last generation handed out (global, monotonically increasing). */
  generation = 0;
  /** Where committed changes go (the watch fan-out); set by the server. */
  onChange: (ev: ChangeEvent) => void = () => {};

  get(path: string): XsNode | undefined {
    return this.nodes.get(path);
  }

  nextGeneration(): number {
    return ++this.generation;
  }

  put(path: string, data: NodeData): void {
    this.putWithGeneration(path, data, this.nextGeneration());
  }

  putWithGeneration(path: string, data: NodeData, gen: number): void {
    const old = this.nodes.get(path);
    if (old) this.count(old.perms[0]!.id, -1);
    this.count(data.perms[0]!.id, +1);
    this.nodes.set(path, { value: data.value, children: data.children, perms: data.perms, gen });
  }

  del(path: string): void {
    const old = this.nodes.get(path);
    if (!old) return;
    this.count(old.perms[0]!.id, -1);
    this.nodes.delete(path);
  }

  owned(domid: number): number {
    return this.ownedBy.get(domid) ?? 0;
  }

  emit(ev: ChangeEvent): void {
    this.onChange(ev);
  }

  entries(): IterableIterator<[string, XsNode]> {
    return this.nodes.entries();
  }

  get size(): number {
    return this.nodes.size;
  }

  clear(): void {
    this.nodes.clear();
    this.ownedBy.clear();
  }

  private count(domid: number, delta: number): void {
    const n = (this.ownedBy.get(domid) ?? 0) + delta;
    if (n === 0) this.ownedBy.delete(domid);
    else this.ownedBy.set(domid, n);
  }
}

/** The tree a fresh xenstored starts with (cxenstored setup_structure), plus what xen-init-dom0
 *  writes at boot on every real host (/local/domain/0/{domid,name}), so clients find dom0's home. */
export function initialiseTree(store: Store): void {
  store.clear();
  const n0 = NO_NODE_PERMS;
  const empty = Buffer.alloc(0);
  const put = (path: string, children: string[], value = empty) => store.put(path, { value, children, perms: n0 });
  put("/", ["tool", "local"]);
  put("/tool", ["xenstored"]);
  put("/tool/xenstored", []);
  put("@releaseDomain", []);
  put("@introduceDomain", []);
  put("/local", ["domain"]);
  put("/local/domain", ["0"]);
  put("/local/domain/0", ["domid", "name"]);
  put("/local/domain/0/domid", [], Buffer.from("0"));
  put("/local/domain/0/name", [], Buffer.from("Domain-0"));
}
