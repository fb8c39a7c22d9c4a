// The errno a worker's failure crosses the mailbox with ("failed", "fatal"), so the error node the
// backend writes names its cause (ENOENT: a ring that would not map; EINVAL: a port not offered to
// us; EPROTO: a frontend that broke the protocol) rather than EIO for everything.

export const EIO = 5;
export const EEXIST = 17;
/** What netback writes for a frontend that broke the ring protocol. */
export const EPROTO = 71;

/** An Error that says which errno it is reported with. */
export class ErrnoError extends Error {
  constructor(
    message: string,
    readonly errno: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The first positive errno along `e` and its causes (PlatformError.errno, ErrnoError), else EIO. */
export function errnoOf(e: unknown): number {
  let c: unknown = e;
  for (let depth = 0; depth < 8 && typeof c === "object" && c !== null; depth++) {
    const n = (c as { errno?: unknown }).errno;
    if (typeof n === "number" && Number.isInteger(n) && n !== 0) return Math.abs(n);
    c = (c as { cause?: unknown }).cause;
  }
  return EIO;
}
