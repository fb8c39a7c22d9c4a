// libxl's small xenstore helpers (libxl_xshelp.c) and its device-state wait (libxl_event.c's
// libxl__ev_devstate_wait), on top of our client.
import type { XenstoreClient, Transaction, XsPerm } from "../../xenstore/index.ts";
import { isXenstoreError } from "../../xenstore/index.ts";

type Ops = XenstoreClient | Transaction;

/** libxl__xs_mknod: write "" then set the permissions. */
export async function mknod(t: Ops, path: string, perms: readonly XsPerm[]): Promise<void> {
  await t.write(path, "");
  await t.setPerms(path, perms);
}

/** libxl__xs_writev_perms: each key written (in order), then its permissions if given. */
export async function writev(t: Ops, dir: string, kvs: readonly (readonly [string, string])[], perms?: readonly XsPerm[]): Promise<void> {
  for (const [k, v] of kvs) {
    await t.write(`${dir}/${k}`, v);
    if (perms) await t.setPerms(`${dir}/${k}`, perms);
  }
}

/** xs_rm whose ENOENT is fine (libxl ignores it: libxl__xs_rm_checked, bare xs_rm). */
export async function rmIfExists(t: Ops, path: string): Promise<void> {
  try {
    await t.rm(path);
  } catch (e) {
    if (!isXenstoreError(e, "ENOENT")) throw e;
  }
}

/**
 * libxl__xs_path_cleanup: remove `path`, then each parent that has an empty value and no other
 * children, stopping at the first that does not qualify.
 */
export async function pathCleanup(t: Ops, path: string): Promise<void> {
  try {
    await t.rm(path);
  } catch (e) {
    if (isXenstoreError(e, "ENOENT")) return;
    throw e;
  }
  let p = path;
  for (let slash = p.lastIndexOf("/"); slash > 0; slash = p.lastIndexOf("/")) {
    p = p.slice(0, slash);
    const val = await t.tryRead(p);
    if (val === undefined || val.length !== 0) break;
    if ((await t.directory(p)).length !== 0) break;
    await rmIfExists(t, p);
  }
}

export type DevstateResult = "ok" | "timeout" | "removed";

/**
 * Waits until the node at `statePath` reads `wanted`, using a watch (which fires once on
 * registration, so a node already in that state answers at once). Resolves "removed" if the node
 * disappears, "timeout" after `timeoutMs`. Other states keep waiting, as libxl does.
 */
export function waitForState(xs: XenstoreClient, statePath: string, wanted: number, timeoutMs: number): Promise<DevstateResult> {
  return new Promise<DevstateResult>((resolve, reject) => {
    let done = false;
    let unwatch: (() => Promise<void>) | undefined;
    const finish = (r: DevstateResult | Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unwatch?.().catch(() => {});
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    const check = async () => {
      if (done) return;
      try {
        const v = await xs.tryRead(statePath);
        if (v === undefined) finish("removed");
        else if (Number.parseInt(v, 10) === wanted) finish("ok");
      } catch (e) {
        finish(e as Error);
      }
    };
    xs.watch(statePath, () => void check()).then(
      (w) => {
        unwatch = w.unwatch;
        if (done) w.unwatch().catch(() => {});
      },
      (e) => finish(e as Error),
    );
  });
}
