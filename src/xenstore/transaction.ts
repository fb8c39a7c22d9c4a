// Transactions: run a function against a transaction handle and commit; when xenstored answers
// EAGAIN (another writer touched what we read), run the whole function again from scratch, as
// xs.c's callers and libxl do. Bounded, with a little jittered backoff between attempts.
import { XsOp } from "../xen/xs-wire.ts";
import { nulTerminated } from "./codec.ts";
import type { Connection } from "./connection.ts";
import { isXenstoreError, XenstoreTransactionConflictError } from "./errors.ts";
import { txIdFromReply, XsNodeOps, type XsTrace } from "./ops.ts";

/** A transaction in progress: the node operations, all inside the transaction. */
export class Transaction extends XsNodeOps {}

export interface TransactionOptions {
  /** Attempts before giving up with XenstoreTransactionConflictError (default 16). */
  maxAttempts?: number;
}

export async function runTransaction<T>(
  conn: Connection,
  fn: (tx: Transaction) => Promise<T>,
  opts: TransactionOptions = {},
  trace?: XsTrace,
): Promise<T> {
  const maxAttempts = opts.maxAttempts ?? 16;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    trace?.("TRANSACTION_START", 0, []);
    const txId = txIdFromReply(await conn.request(XsOp.TRANSACTION_START, nulTerminated("")));
    const tx = new Transaction(conn, txId, trace);
    let result: T;
    try {
      result = await fn(tx);
    } catch (e) {
      // Some xenstoreds report the conflict early, on the first operation after it happened.
      await end(conn, txId, false, trace).catch(() => {});
      if (isXenstoreError(e, "EAGAIN")) {
        await backoff(attempt);
        continue;
      }
      throw e;
    }
    try {
      await end(conn, txId, true, trace);
      return result;
    } catch (e) {
      if (!isXenstoreError(e, "EAGAIN")) throw e;
      await backoff(attempt);
    }
  }
  throw new XenstoreTransactionConflictError(maxAttempts);
}

function end(conn: Connection, txId: number, commit: boolean, trace?: XsTrace): Promise<Uint8Array> {
  trace?.("TRANSACTION_END", txId, [commit ? "T" : "F"]);
  return conn.request(XsOp.TRANSACTION_END, nulTerminated(commit ? "T" : "F"), txId);
}

function backoff(attempt: number): Promise<void> {
  return Bun.sleep(Math.min(2 ** attempt, 100) * Math.random());
}
