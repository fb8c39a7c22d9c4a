// The few xenbus_client.c / xenbus_probe.c operations a Linux frontend driver leans on, over our
// xenstore client: reading an unsigned with a default (xenbus_read_unsigned), reading the other
// end's state (xenbus_read_driver_state), switching our own state (xenbus_switch_state), reporting
// a fatal error (xenbus_dev_fatal) and waiting for a node to take one of some values.
import { XenbusState } from "../../xen/xenbus-state.ts";
import { isXenstoreError, type XenstoreClient } from "../../xenstore/index.ts";

/**
 * xenbus_read_unsigned: the node parsed as an unsigned decimal, or `dflt` if it cannot be read
 * (absent, or EACCES once the toolstack removed the backend's directory) or is not a number.
 */
export async function readUnsigned(xs: XenstoreClient, path: string, dflt: number): Promise<number> {
  let v: string | undefined;
  try {
    v = await xs.read(path);
  } catch (e) {
    if (isXenstoreError(e) && e.code !== "ECONNRESET") return dflt;
    throw e;
  }
  if (v === undefined || !/^\d+$/.test(v.trim())) return dflt;
  return Number.parseInt(v, 10);
}

/** xenbus_read_driver_state: a missing or unparsable state node reads as Unknown (0). */
export async function readState(xs: XenstoreClient, dir: string): Promise<number> {
  return readUnsigned(xs, `${dir}/state`, XenbusState.Unknown);
}

/**
 * xenbus_switch_state's xenstore part: inside one transaction, read our state node and write the
 * new value; if the node is gone (the toolstack removed the device) write nothing, as Linux aborts
 * the transaction rather than recreate a node it does not own. Returns whether it wrote.
 */
export async function writeOwnState(xs: XenstoreClient, dir: string, state: number): Promise<boolean> {
  return xs.transaction(async (t) => {
    if ((await t.tryRead(`${dir}/state`)) === undefined) return false;
    await t.write(`${dir}/state`, String(state));
    return true;
  });
}

/**
 * xenbus_dev_fatal: "<errno> <message>" into error/<nodename>/error under the domain's home
 * (/local/domain/<domid>/error/device/vif/<devid>/error), then the caller switches to Closing.
 */
export async function writeDevError(xs: XenstoreClient, domid: number, nodename: string, errno: number, message: string): Promise<void> {
  try {
    await xs.write(`/local/domain/${domid}/error/${nodename}/error`, `${errno} ${message}`);
  } catch (e) {
    // Linux only logs "failed to write error node"; the device still switches to Closing.
    if (!isXenstoreError(e)) throw e;
  }
}

/**
 * Waits until `pred(state of dir)` holds, using a watch on dir/state (which fires once at
 * registration, so a state already reached counts). Resolves true, or false after `timeoutMs`.
 */
export async function waitForState(xs: XenstoreClient, dir: string, pred: (s: number) => boolean, timeoutMs: number): Promise<boolean> {
  let done = false;
  let finish!: (ok: boolean) => void;
  const result = new Promise<boolean>((r) => (finish = r));
  const check = async () => {
    if (done) return;
    const s = await readState(xs, dir).catch(() => XenbusState.Unknown);
    if (!done && pred(s)) {
      done = true;
      finish(true);
    }
  };
  const timer = setTimeout(() => {
    done = true;
    finish(false);
  }, timeoutMs);
  const w = await xs.watch(`${dir}/state`, () => void check());
  try {
    return await result;
  } finally {
    clearTimeout(timer);
    await w.unwatch().catch(() => {});
  }
}
