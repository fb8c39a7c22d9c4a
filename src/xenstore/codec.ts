// Xenstore message framing (xs_wire.h): a 16-byte little-endian header {type, req_id, tx_id, len}
// followed by `len` payload bytes. Pure functions and one incremental decoder; no I/O here.
import { XS_HEADER_SIZE, XsHeader, XENSTORE_PAYLOAD_MAX, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX } from "../xen/xs-wire.ts";
import { XenstoreError } from "./errors.ts";

export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes one message. Throws XenstoreError E2BIG before anything is sent if the payload is too big. */
export function encodeMessage(msg: XsMessage): Uint8Array {
  if (msg.payload.length > XENSTORE_PAYLOAD_MAX) {
    throw new XenstoreError("E2BIG", `payload of ${msg.payload.length} bytes exceeds the xenstore limit of ${XENSTORE_PAYLOAD_MAX}`);
  }
  const out = new Uint8Array(XS_HEADER_SIZE + msg.payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(XsHeader.type, msg.type, true);
  dv.setUint32(XsHeader.reqId, msg.reqId >>> 0, true);
  dv.setUint32(XsHeader.txId, msg.txId >>> 0, true);
  dv.setUint32(XsHeader.len, msg.payload.length, true);
  out.set(msg.payload, XS_HEADER_SIZE);
  return out;
}

/**
 * Reassembles messages from a byte stream. A header announcing more than the protocol maximum is
 * a broken peer: push() throws XenstoreError EIO and the connection must be dropped.
 */
export class FrameDecoder {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): XsMessage[] {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const out: XsMessage[] = [];
    let off = 0;
    while (joined.length - off >= XS_HEADER_SIZE) {
      const dv = new DataView(joined.buffer, joined.byteOffset + off, XS_HEADER_SIZE);
      const len = dv.getUint32(XsHeader.len, true);
      if (len > XENSTORE_PAYLOAD_MAX) {
        throw new XenstoreError("EIO", `xenstored sent a ${len}-byte payload (limit ${XENSTORE_PAYLOAD_MAX}): stream is corrupt`);
      }
      if (joined.length - off < XS_HEADER_SIZE + len) break;
      out.push({
        type: dv.getUint32(XsHeader.type, true),
        reqId: dv.getUint32(XsHeader.reqId, true),
        txId: dv.getUint32(XsHeader.txId, true),
        // slice(): the message must not alias the reassembly buffer.
        payload: joined.slice(off + XS_HEADER_SIZE, off + XS_HEADER_SIZE + len),
      });
      off += XS_HEADER_SIZE + len;
    }
    this.buf = joined.slice(off);
    return out;
  }

  reset(): void {
    this.buf = new Uint8Array(0);
  }
}

/** "a\0b\0" for ["a", "b"]: the form of most request payloads. */
export function nulTerminated(...parts: string[]): Uint8Array {
  return encoder.encode(parts.map((p) => `${p}\0`).join(""));
}

/** WRITE's payload: `path\0value`, the value not NUL-terminated. */
export function writePayload(path: string, value: string | Uint8Array): Uint8Array {
  const p = encoder.encode(`${path}\0`);
  const v = typeof value === "string" ? encoder.encode(value) : value;
  const out = new Uint8Array(p.length + v.length);
  out.set(p, 0);
  out.set(v, p.length);
  return out;
}

/** Splits a NUL-separated reply ("a\0b\0" or "a\0b") into strings; empty payload or "\0" -> []. */
export function splitNul(payload: Uint8Array): string[] {
  let s = decoder.decode(payload);
  if (s.endsWith("\0")) s = s.slice(0, -1);
  return s === "" ? [] : s.split("\0");
}

/** A reply carrying one string (READ value, domain path, transaction id): trailing NUL dropped. */
export function replyString(payload: Uint8Array): string {
  const s = decoder.decode(payload);
  return s.endsWith("\0") ? s.slice(0, -1) : s;
}

/**
 * Checks a path the way xenstored will, so a bad path fails locally with a clear message instead of
 * an EINVAL from the daemon. "@introduceDomain"-style special watch paths are allowed.
 */
export function checkPath(path: string): void {
  if (path.startsWith("@")) {
    if (!/^@[A-Za-z]+$/.test(path)) throw new XenstoreError("EINVAL", `invalid special path "${path}"`);
    return;
  }
  const abs = path.startsWith("/");
  const max = abs ? XENSTORE_ABS_PATH_MAX : XENSTORE_REL_PATH_MAX;
  const bytes = encoder.encode(path).length;
  if (path === "" || bytes > max) {
    throw new XenstoreError("EINVAL", `invalid path (${bytes} bytes, ${abs ? "absolute" : "relative"} limit ${max}): "${path.slice(0, 80)}"`);
  }
  if (path.includes("\0") || path.includes("//") || (path.length > 1 && path.endsWith("/"))) {
    throw new XenstoreError("EINVAL", `invalid path "${path.slice(0, 80)}": empty component or NUL`);
  }
  // C xenstored's is_valid_nodename() accepts exactly these characters.
  if (!/^[A-Za-z0-9/_@\-]+$/.test(path)) {
    throw new XenstoreError("EINVAL", `invalid path "${path.slice(0, 80)}": only A-Z a-z 0-9 - / _ @ are allowed`);
  }
}

export const utf8 = { encode: (s: string) => encoder.encode(s), decode: (b: Uint8Array) => decoder.decode(b) };
