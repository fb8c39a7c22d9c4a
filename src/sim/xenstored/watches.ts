// Watch matching and the permission rule for delivering an event (tools/xenstored/watch.c): a
// connection hears about a change only if it may read the node, or its parent, or (for a
// permission change or a transaction's node) could read the node before.
import { isChild, parentOf } from "./path.ts";
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
  readonly watches: readonly Watch[];
  sendEvent(path: string, token: string): void;
}

export function eventPermitted(store: Store, caller: Caller, ev: ChangeEvent): boolean {
  if (caller.privileged) return true;
  if (ev.oldPerms && canRead(caller, ev.oldPerms)) return true;
  if (canRead(caller, ev.perms ?? store.get(ev.path)?.perms)) return true;
  return canRead(caller, ev.parentPerms ?? store.get(parentOf(ev.path))?.perms);
}

export function watchMatches(w: Watch, ev: ChangeEvent): boolean {
  return ev.exact ? w.path === ev.path : isChild(ev.path, w.path);
}

export function deliver(store: Store, subscribers: Iterable<WatchSubscriber>, ev: ChangeEvent): void {
  for (const sub of subscribers) {
    if (sub.watches.length === 0) continue;
    let permitted: boolean | undefined;
    for (const w of sub.watches) {
      if (!watchMatches(w, ev)) continue;
      permitted ??= eventPermitted(store, sub.caller, ev);
      if (!permitted) break;
      sub.sendEvent(ev.path.slice(w.prefixLen), w.token);
    }
  }
}
