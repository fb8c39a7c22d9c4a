// A worker's failure crosses the mailbox with an errno, found along the error and its causes.
import { describe, expect, test } from "bun:test";
import { PlatformError } from "../../src/platform/index.ts";
import { EIO, EPROTO, ErrnoError, errnoOf } from "../../workers/failure-errno.ts";

describe("failure errno", () => {
  test("a grant that would not map is ENOENT whatever its GNTST status; a device call's errno is its own", () => {
    expect(new PlatformError("map", "GNTST_bad_gntref", -4).errno).toBe(2);
    expect(new PlatformError("map", "GNTST_general_error", -1).errno).toBe(2);
    expect(new PlatformError("bind", "EINVAL", -22).errno).toBe(22);
    expect(new PlatformError("odd", "EWHAT", 0).errno).toBe(EIO);
  });

  test("the first errno along the causes wins; none at all is EIO", () => {
    const platform = new PlatformError("bind", "ESRCH", -3);
    expect(errnoOf(new Error("vif1.0: failed to bind", { cause: platform }))).toBe(3);
    expect(errnoOf(new Error("outer", { cause: new Error("middle", { cause: new ErrnoError("inner", EPROTO) }) }))).toBe(EPROTO);
    expect(errnoOf(new ErrnoError("vif1.0: tx req_prod ahead", EPROTO, { cause: platform }))).toBe(EPROTO);
    expect(errnoOf(new Error("no cause"))).toBe(EIO);
    expect(errnoOf("a string")).toBe(EIO);
  });
});
