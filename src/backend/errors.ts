// A failure that disables one vif: it becomes "error/<backend>/error" = "<errno> <message>" (what
// Linux's xenbus_dev_fatal writes) and moves that vif to Closing. Every other vif carries on.

/** Linux errno values used in error nodes. */
export const Errno = {
  ENOENT: 2,
  EIO: 5,
  ENODEV: 19,
  EINVAL: 22,
  ERANGE: 34,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  ESTALE: 116,
} as const;

export class VifFatalError extends Error {
  override name = "VifFatalError";
  constructor(
    /** Positive errno, as the error node shows it. */
    readonly errno: number,
    /** One line: what failed, naming the xenstore key when there is one ("reading tx-ring-ref: ..."). */
    message: string,
    /** One line for the operator: what to do about it. */
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(oneLine(message), options);
  }
}

export const GUEST_HINT = "the guest's netfront wrote something qnicd cannot use: fix or restart the guest's network driver";

/** Guest-written text in messages stays on one line and bounded (a node value can be 4 KiB). */
export function quoteGuest(s: string, max = 64): string {
  const cut = s.length > max ? `${s.slice(0, max)}...` : s;
  return JSON.stringify(cut);
}

export function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ");
}
