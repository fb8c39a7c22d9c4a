// The node operations, shared by the client (tx 0) and a transaction handle (its tx id).
import { XsOp } from "../xen/xs-wire.ts";
import { checkPath, nulTerminated, replyString, splitNul, utf8, writePayload } from "./codec.ts";
import type { Connection } from "./connection.ts";
import { isXenstoreError } from "./errors.ts";
import { formatPerm, parsePerm, type XsPerm } from "./perms.ts";

/** Called before each request is sent: op name, tx id, arguments. For tests and debugging. */
export type XsTrace = (op: string, txId: number, args: readonly string[]) => void;

export class XsNodeOps {
  constructor(
    protected readonly conn: Connection,
    /** 0 outside a transaction. */
    readonly txId: number,
    protected readonly trace?: XsTrace,
  ) {}

  protected call(op: keyof typeof XsOp, args: string[], payload: Uint8Array, retryable = false): Promise<Uint8Array> {
    this.trace?.(op, this.txId, args);
    return this.conn.request(XsOp[op], payload, this.txId, retryable);
  }

  /** The node's value; throws XenstoreError ENOENT if it does not exist. */
  async read(path: string): Promise<string> {
    checkPath(path);
    return utf8.decode(await this.call("READ", [path], nulTerminated(path), true));
  }

  /** The node's value, or undefined if it does not exist (other errors still throw). */
  async tryRead(path: string): Promise<string | undefined> {
    try {
      return await this.read(path);
    } catch (e) {
      if (isXenstoreError(e, "ENOENT")) return undefined;
      throw e;
    }
  }

  async write(path: string, value: string): Promise<void> {
    checkPath(path);
    await this.call("WRITE", [path, value], writePayload(path, value));
  }

  async mkdir(path: string): Promise<void> {
    checkPath(path);
    await this.call("MKDIR", [path], nulTerminated(path));
  }

  /** Removes the node and everything below it. Throws ENOENT if it does not exist. */
  async rm(path: string): Promise<void> {
    checkPath(path);
    await this.call("RM", [path], nulTerminated(path));
  }

  /** Child names (not paths). */
  async directory(path: string): Promise<string[]> {
    checkPath(path);
    return splitNul(await this.call("DIRECTORY", [path], nulTerminated(path), true));
  }

  async getPerms(path: string): Promise<XsPerm[]> {
    checkPath(path);
    return splitNul(await this.call("GET_PERMS", [path], nulTerminated(path), true)).map(parsePerm);
  }

  /** perms[0] is the owner and the default for unlisted domains. */
  async setPerms(path: string, perms: readonly XsPerm[]): Promise<void> {
    checkPath(path);
    const strs = perms.map(formatPerm);
    await this.call("SET_PERMS", [path, ...strs], nulTerminated(path, ...strs));
  }
}

export function txIdFromReply(payload: Uint8Array): number {
  const s = replyString(payload);
  const id = Number(s);
  if (!/^\d+$/.test(s) || id === 0 || id > 0xffffffff) throw new Error(`xenstored returned an invalid transaction id "${s}"`);
  return id;
}
