// Errors raised by the xenstore client. `code` is the xenstore error name (xs_wire.h's xsd_errors:
// "ENOENT", "EACCES", "EAGAIN", ...) so callers can branch on it; two client-side codes exist for
// failures xenstored cannot report: ECONNRESET (the connection went away) and ETIMEDOUT.
import type { XsErrorName } from "../xen/xs-wire.ts";

export type XenstoreErrorCode = XsErrorName | "ECONNRESET" | "ETIMEDOUT";

export class XenstoreError extends Error {
  override name = "XenstoreError";
  constructor(
    readonly code: XenstoreErrorCode | string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The connection to xenstored was lost (or closed) before this request got its answer. */
export class XenstoreConnectionError extends XenstoreError {
  override name = "XenstoreConnectionError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("ECONNRESET", message, options);
  }
}

/** transaction() gave up: every attempt's commit answered EAGAIN. */
export class XenstoreTransactionConflictError extends XenstoreError {
  override name = "XenstoreTransactionConflictError";
  constructor(readonly attempts: number) {
    super(
      "EAGAIN",
      `xenstore transaction gave up after ${attempts} attempts: every commit conflicted with another writer (EAGAIN)`,
    );
  }
}

export function isXenstoreError(e: unknown, code?: string): e is XenstoreError {
  return e instanceof XenstoreError && (code === undefined || e.code === code);
}
