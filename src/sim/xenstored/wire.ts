// Xenstore wire framing for the simulated xenstored: an incremental frame reader (requests may be
// split across socket reads, or many may arrive in one read) and reply encoding.
// Byte strings are converted with latin1 so arbitrary token bytes round-trip unchanged.
import { XS_HEADER_SIZE, XENSTORE_PAYLOAD_MAX } from "../../xen/xs-wire.ts";

export interface Frame {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

/** Thrown by FrameReader when a header announces more than XENSTORE_PAYLOAD_MAX bytes. */
export class OversizedFrameError extends Error {
  constructor(readonly len: number) {
    super(`payload length ${len} exceeds ${XENSTORE_PAYLOAD_MAX}`);
  }
}

/** Accumulates socket bytes and hands out complete frames one at a time. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  get buffered(): number {
    return this.buf.length;
  }

  /** Next complete frame, or undefined if more bytes are needed. Throws OversizedFrameError. */
  next(): Frame | undefined {
    if (this.buf.length < XS_HEADER_SIZE) return undefined;
    const len = this.buf.readUInt32LE(12);
    // Checked as soon as the header is complete, as xenstored does: never wait for 4 GiB.
    if (len > XENSTORE_PAYLOAD_MAX) throw new OversizedFrameError(len);
    if (this.buf.length < XS_HEADER_SIZE + len) return undefined;
    const frame: Frame = {
      type: this.buf.readUInt32LE(0),
      reqId: this.buf.readUInt32LE(4),
      txId: this.buf.readUInt32LE(8),
      // Copy: the payload outlives the accumulation buffer.
      payload: Buffer.from(this.buf.subarray(XS_HEADER_SIZE, XS_HEADER_SIZE + len)),
    };
    this.buf = this.buf.subarray(XS_HEADER_SIZE + len);
    return frame;
  }
}

export function encodeFrame(type: number, reqId: number, txId: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(XS_HEADER_SIZE + payload.length);
  out.writeUInt32LE(type >>> 0, 0);
  out.writeUInt32LE(reqId >>> 0, 4);
  out.writeUInt32LE(txId >>> 0, 8);
  out.writeUInt32LE(payload.length, 12);
  out.set(payload, XS_HEADER_SIZE);
  return out;
}

/** NUL-terminated strings in the payload; bytes after the last NUL are ignored (xenstored's get_strings). */
export function nulStrings(payload: Buffer): string[] {
  const out: string[] = [];
  let off = 0;
  for (;;) {
    const nul = payload.indexOf(0, off);
    if (nul < 0) return out;
    out.push(payload.toString("latin1", off, nul));
    off = nul + 1;
  }
}

/** The single argument of a one-argument request: exactly one NUL, at the end; else undefined. */
export function oneArg(payload: Buffer): string | undefined {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) return undefined;
  return payload.toString("latin1", 0, payload.length - 1);
}

/** Strings joined as `a\0b\0` (the reply shape of DIRECTORY, GET_PERMS, WATCH_EVENT, ...). */
export function joinNul(parts: string[]): Buffer {
  return Buffer.from(parts.map((p) => p + "\0").join(""), "latin1");
}

/** C atoi(): optional sign and leading decimal digits, anything else ignored; 0 if none. */
export function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  if (!m) return 0;
  const n = Number.parseInt(m[1]!, 10);
  return Number.isFinite(n) ? n : 0;
}
