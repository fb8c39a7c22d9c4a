import { describe, expect, test } from "bun:test";
import { checkPath, encodeMessage, FrameDecoder, splitNul, writePayload, nulTerminated } from "../../src/xenstore/codec.ts";
import { XenstoreError } from "../../src/xenstore/errors.ts";
import { parsePerm, permsToString } from "../../src/xenstore/perms.ts";
import { XsOp } from "../../src/xen/xs-wire.ts";

describe("framing", () => {
  test("encodes the 16-byte little-endian header then the payload", () => {
    const b = encodeMessage({ type: XsOp.READ, reqId: 0x01020304, txId: 7, payload: nulTerminated("/a") });
    expect([...b]).toEqual([2, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 3, 0, 0, 0, 0x2f, 0x61, 0]);
  });

  test("reassembles messages split and coalesced at arbitrary byte boundaries", () => {
    const msgs = [
      { type: XsOp.WRITE, reqId: 1, txId: 0, payload: writePayload("/x", "hello") },
      { type: XsOp.WATCH_EVENT, reqId: 0, txId: 0, payload: nulTerminated("/x", "tok") },
      { type: XsOp.READ, reqId: 3, txId: 9, payload: new Uint8Array(0) },
    ];
    const stream = new Uint8Array(msgs.reduce((n, m) => n + 16 + m.payload.length, 0));
    let off = 0;
    for (const m of msgs) {
      const e = encodeMessage(m);
      stream.set(e, off);
      off += e.length;
    }
    for (const step of [1, 3, 16, 17, 1000]) {
      const dec = new FrameDecoder();
      const out = [];
      for (let i = 0; i < stream.length; i += step) out.push(...dec.push(stream.subarray(i, i + step)));
      expect(out).toEqual(msgs);
    }
  });

  test("refuses to send more than 4096 payload bytes, and accepts exactly 4096", () => {
    expect(() => encodeMessage({ type: XsOp.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(4097) })).toThrow(/4097 bytes exceeds/);
    try {
      encodeMessage({ type: XsOp.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(4097) });
    } catch (e) {
      expect((e as XenstoreError).code).toBe("E2BIG");
    }
    expect(encodeMessage({ type: XsOp.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(4096) }).length).toBe(4112);
  });

  test("a header announcing an oversized payload is a corrupt stream", () => {
    const h = new Uint8Array(16);
    new DataView(h.buffer).setUint32(12, 5000, true);
    expect(() => new FrameDecoder().push(h)).toThrow(/corrupt/);
  });

  test("splitNul handles trailing NULs and empty replies", () => {
    const enc = new TextEncoder();
    expect(splitNul(enc.encode("a\0b\0"))).toEqual(["a", "b"]);
    expect(splitNul(enc.encode("a\0b"))).toEqual(["a", "b"]);
    expect(splitNul(enc.encode(""))).toEqual([]);
    expect(splitNul(enc.encode("\0"))).toEqual([]);
  });
});

describe("paths and permissions", () => {
  test("valid paths pass, invalid ones fail locally with EINVAL", () => {
    for (const p of ["/", "/local/domain/0", "device/vif/0", "@introduceDomain", "/vm/0a1b-2c"]) expect(() => checkPath(p)).not.toThrow();
    for (const p of ["", "/a//b", "/a/", "/a b", "/a\0b", "@intro duce", `/${"x".repeat(3072)}`]) {
      expect(() => checkPath(p)).toThrow(XenstoreError);
    }
  });

  test("perms parse and print", () => {
    expect(parsePerm("n0")).toEqual({ access: "n", domid: 0 });
    expect(parsePerm("b12")).toEqual({ access: "b", domid: 12 });
    expect(() => parsePerm("x1")).toThrow(/malformed/);
    expect(permsToString([{ domid: 3, access: "n" }, { domid: 0, access: "r" }])).toBe("n3,r0");
  });
});
