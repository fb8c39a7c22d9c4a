// Watch matching and the permission rule for delivering an event (tools/xenstored/watch.c): a
// connection hears about a change only if it may read the node, or its parent, or (for a
// permission change or a transaction's node) could read the node before.
import { parentOf } from "./path.ts";
import { canRead, type Caller } from "./perms.ts";
import type { ChangeEvent, Store } from "./store.ts";

export interface Watch {
  /** Absolute path or "@special". */
  path: string;
  token: string;
  /** Characters to strip from event paths (relative watches get relative event paths). */
  prefixLen: number;
}

export interface WatchSubscriber {
  readonly caller: Caller;
  readonly watches: WatchList;
  sendEvent(path: string, token: string): void;
}

/**
 * One connection's watches, in registration order, indexed by path. A change is matched against the
 * watches on its path and that path's ancestors (a handful of map lookups), not against every watch:
 * with a backend holding a few watches per vif, matching each write against all of them made
 * 1000 vifs cost O(N^2) comparisons here, a third of this xenstored's time in bench/vif-cost.ts.
 * (oxenstored keeps its watches in a trie for the same reason.)
 */
export class WatchList {
  private readonly byPath = new Map<string, Map<string, { watch: Watch; seq: number }>>();
  private count = 0;
  private seq = 0;

  get length(): number {
    return this.count;
  }

  has(path: string, token: string): boolean {
    return this.byPath.get(path)?.has(token) ?? false;
  }

  add(watch: Watch): void {
    let tokens = this.byPath.get(watch.path);
    if (!tokens) this.byPath.set(watch.path, (tokens = new Map()));
    if (!tokens.has(watch.token)) this.count++;
    tokens.set(watch.token, { watch, seq: this.seq++ });
  }

  /** False if there was no such watch. */
  remove(path: string, token: string): boolean {
    const tokens = this.byPath.get(path);
    if (!tokens?.delete(token)) return false;
    if (tokens.size === 0) this.byPath.delete(path);
    this.count--;
    return true;
  }

  clear(): void {
    this.byPath.clear();
    this.count = 0;
  }

  /** The watches set on any of `paths`, in the order they were registered. */
  on(paths: readonly string[]): Watch[] {
    const hits: { watch: Watch; seq: number }[] = [];
    for (const p of paths) {
      const tokens = this.byPath.get(p);
      if (tokens) for (const e of tokens.values()) hits.push(e);
    }
    if (hits.length > 1) hits.sort((a, b) => a.seq - b.seq);
    return hits.map((e) => e.watch);
  }
}

/** The watch paths a change fires: its own, and for a non-exact change every ancestor up to "/" (which sees everything, "@" names included). */
export function firedPaths(ev: ChangeEvent): string[] {
  if (ev.exact) return [ev.path];
  const out = [ev.path];
  for (let p = ev.path; p !== "/"; ) {
    p = parentOf(p);
    out.push(p);
  }
  return out;
}

export function eventPermitted(store: Store, caller: Caller, ev: ChangeEvent): boolean {
  if (caller.privileged) return true;
  if (ev.oldPerms && canRead(caller, ev.oldPerms)) return true;
  if (canRead(caller, ev.perms ?? store.get(ev.path)?.perms)) return true;
  return canRead(caller, ev.parentPerms ?? store.get(parentOf(ev.path))?.perms);
}

export function deliver(store: Store, subscribers: Iterable<WatchSubscriber>, ev: ChangeEvent): void {
  let paths: string[] | undefined;
  for (const sub of subscribers) {
    if (sub.watches.length === 0) continue;
    const hits = sub.watches.on((paths ??= firedPaths(ev)));
    if (hits.length === 0 || !eventPermitted(store, sub.caller, ev)) continue;
    for (const w of hits) sub.sendEvent(ev.path.slice(w.prefixLen), w.token);
  }
}
