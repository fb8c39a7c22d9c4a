// Transactions the way C xenstored does them (tools/xenstored/transaction.c): the first access to a
// node inside a transaction records the node's generation (or its absence) and later accesses see
// the transaction's own version. TRANSACTION_END "T" fails with EAGAIN if any node the transaction
// touched - read, written, created or looked up and found missing - has a different generation in
// the global store by then; otherwise the modified nodes are written back and the watch events the
// transaction queued fire. Nothing is visible to others before a successful commit.
import { fail } from "./errors.ts";
import type { Perm, Caller } from "./perms.ts";
import type { Quotas } from "./quotas.ts";
import type { ChangeEvent, NodeData, Store, View, XsNode } from "./store.ts";

const ABSENT = -1;

interface Access {
  /** Global generation at first access, ABSENT if the node did not exist. */
  baseGen: number;
  /** The transaction's version: undefined once deleted in (or missing for) the transaction. */
  node: XsNode | undefined;
  /** Permissions at first access, for watch permission checks after commit. */
  origPerms: readonly Perm[] | undefined;
  modified: boolean;
  /** Queued watch event: undefined = none, true = exact only, false = path and ancestors. */
  eventExact?: boolean;
}

export class Transaction implements View {
  private readonly accessed = new Map<string, Access>();
  private readonly ownedDelta = new Map<number, number>();
  /** Set when the transaction hit a limit mid-way; committing it then answers ENOMEM like xenstored. */
  private failed = false;

  constructor(
    readonly id: number,
    private readonly store: Store,
    private readonly caller: Caller,
    private readonly quotas: Quotas,
  ) {}

  get(path: string): XsNode | undefined {
    return this.access(path).node;
  }

  put(path: string, data: NodeData): void {
    const a = this.access(path);
    if (a.node) this.adjustOwned(a.node.perms[0]!.id, -1);
    this.adjustOwned(data.perms[0]!.id, +1);
    a.node = { value: data.value, children: data.children, perms: data.perms, gen: this.store.nextGeneration() };
    a.modified = true;
  }

  del(path: string): void {
    const a = this.access(path);
    if (a.node) this.adjustOwned(a.node.perms[0]!.id, -1);
    a.node = undefined;
    a.modified = true;
  }

  owned(domid: number): number {
    return this.store.owned(domid) + (this.ownedDelta.get(domid) ?? 0);
  }

  emit(ev: ChangeEvent): void {
    const a = this.access(ev.path);
    // A non-exact event replaces an exact one, never the other way round.
    a.eventExact = a.eventExact === undefined ? ev.exact : a.eventExact && ev.exact;
  }

  get touched(): number {
    return this.accessed.size;
  }

  /** Commit: throws EAGAIN on conflict (the transaction is gone either way). */
  commit(): void {
    if (this.failed) fail("ENOMEM", "transaction failed earlier");
    for (const [path, a] of this.accessed) {
      const cur = this.store.get(path);
      if ((cur ? cur.gen : ABSENT) !== a.baseGen) fail("EAGAIN", `conflict on ${path}`);
    }
    if (!this.caller.privileged && (this.ownedDelta.get(this.caller.domid) ?? 0) > 0) {
      if (this.owned(this.caller.domid) > this.quotas.nodesPerDomain) fail("ENOSPC", "node quota");
    }
    for (const [path, a] of this.accessed) {
      if (!a.modified) continue;
      if (a.node) this.store.put(path, a.node);
      else this.store.del(path);
    }
    for (const [path, a] of this.accessed) {
      if (a.eventExact === undefined) continue;
      this.store.emit({ path, exact: a.eventExact, oldPerms: a.origPerms, perms: a.node ? undefined : a.origPerms });
    }
  }

  private access(path: string): Access {
    let a = this.accessed.get(path);
    if (!a) {
      if (!this.caller.privileged && this.accessed.size >= this.quotas.nodesPerTransaction) {
        this.failed = true;
        fail("ENOSPC", "too many nodes in transaction");
      }
      const node = this.store.get(path);
      a = { baseGen: node ? node.gen : ABSENT, node, origPerms: node?.perms, modified: false };
      this.accessed.set(path, a);
    }
    return a;
  }

  private adjustOwned(domid: number, delta: number): void {
    this.ownedDelta.set(domid, (this.ownedDelta.get(domid) ?? 0) + delta);
  }
}
