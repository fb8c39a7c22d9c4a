// Frames for switch tests: self-describing (sequence number, length, payload derived from both), so
// a torn, shifted or misdelivered frame is detected by looking at the frame alone.
export const ETHERTYPE_TEST = 0x88b5; // IEEE local experimental

export function mac(port: number, host = 1): Uint8Array {
  return Uint8Array.from([0x02, 0x51, 0x00, 0x00, port, host]);
}

export function lengthFor(seq: number): number {
  return 60 + ((seq * 131) % 1400);
}

/** Writes frame `seq` from `src` to `dst` into `out` at `off`; returns its length. */
export function writeFrame(out: Uint8Array, off: number, dst: Uint8Array, src: Uint8Array, seq: number, len = lengthFor(seq)): number {
  out.set(dst, off);
  out.set(src, off + 6);
  out[off + 12] = ETHERTYPE_TEST >> 8;
  out[off + 13] = ETHERTYPE_TEST & 0xff;
  new DataView(out.buffer, out.byteOffset).setUint32(off + 14, seq);
  for (let i = 18; i < len; i++) out[off + i] = (seq * 7 + i) & 0xff;
  return len;
}

/** The sequence number of an intact test frame (of lengthFor(seq) bytes unless anyLength), or -1. */
export function checkFrame(f: Uint8Array, len: number, anyLength = false): number {
  if (len < 18) return -1;
  const seq = new DataView(f.buffer, f.byteOffset).getUint32(14);
  if (!anyLength && len !== lengthFor(seq)) return -1;
  for (let i = 18; i < len; i++) if (f[i] !== ((seq * 7 + i) & 0xff)) return -1;
  return seq;
}
