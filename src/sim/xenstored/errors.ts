// The one failure type of request handling: carries the xsd_errors name sent back as ERROR.
import type { XsErrorName } from "../../xen/xs-wire.ts";

export class XsError extends Error {
  constructor(readonly errno: XsErrorName, detail?: string) {
    super(detail ? `${errno}: ${detail}` : errno);
  }
}

export function fail(errno: XsErrorName, detail?: string): never {
  throw new XsError(errno, detail);
}
