// pcapng blocks (IETF draft-ietf-opsawg-pcapng; what tcpdump -r and tshark -r read), little-endian:
// a Section Header, one Interface Description (Ethernet), an Enhanced Packet per frame with its
// direction in epb_flags, and an Interface Statistics block at the end with the capture's drops.
// pcapng rather than classic pcap because classic pcap cannot say which way a frame went.
//
// Every block: type, total length, body, options (code, length, value padded to 4), total length again.

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const ISB = 0x00000005;
const LINKTYPE_ETHERNET = 1;
const OPT_END = 0;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFDROP = 5;

/** epb_flags bits 0-1: 1 inbound, 2 outbound. */
export const EPB_INBOUND = 1;
export const EPB_OUTBOUND = 2;

type Option = { code: number; value: Uint8Array };

const utf8 = new TextEncoder();
const pad4 = (n: number) => (n + 3) & ~3;

function optionsBytes(opts: Option[]): number {
  if (opts.length === 0) return 0;
  return opts.reduce((sum, o) => sum + 4 + pad4(o.value.length), 0) + 4;
}

function block(type: number, fixed: Uint8Array, opts: Option[]): Uint8Array {
  const len = 12 + fixed.length + optionsBytes(opts);
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(4, len, true);
  out.set(fixed, 8);
  let at = 8 + fixed.length;
  if (opts.length > 0) {
    for (const o of opts) {
      dv.setUint16(at, o.code, true);
      dv.setUint16(at + 2, o.value.length, true);
      out.set(o.value, at + 4);
      at += 4 + pad4(o.value.length);
    }
    dv.setUint32(at, OPT_END, true); // opt_endofopt, length 0
    at += 4;
  }
  dv.setUint32(at, len, true);
  return out;
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, v >>> 0, true);
  dv.setUint32(4, Math.floor(v / 0x1_0000_0000), true);
  return b;
}

/** Timestamps in microseconds as pcapng's (high, low) pair, the default if_tsresol (10^-6). */
function ts(micros: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, Math.floor(micros / 0x1_0000_0000), true);
  dv.setUint32(4, micros >>> 0, true);
  return b;
}

export function sectionHeader(userAppl: string): Uint8Array {
  const fixed = new Uint8Array(16);
  const dv = new DataView(fixed.buffer);
  dv.setUint32(0, 0x1a2b3c4d, true); // byte-order magic
  dv.setUint16(4, 1, true);
  dv.setUint16(6, 0, true);
  dv.setInt32(8, -1, true); // section length unknown (-1 as a 64-bit value)
  dv.setInt32(12, -1, true);
  return block(SHB, fixed, [{ code: SHB_USERAPPL, value: utf8.encode(userAppl) }]);
}

export function interfaceDescription(name: string, description: string, snaplen: number): Uint8Array {
  const fixed = new Uint8Array(8);
  const dv = new DataView(fixed.buffer);
  dv.setUint16(0, LINKTYPE_ETHERNET, true);
  dv.setUint32(4, snaplen, true);
  return block(IDB, fixed, [
    { code: IF_NAME, value: utf8.encode(name) },
    { code: IF_DESCRIPTION, value: utf8.encode(description) },
    { code: IF_TSRESOL, value: Uint8Array.of(6) },
  ]);
}

export function enhancedPacket(tsMicros: number, bytes: Uint8Array, origLen: number, direction: number): Uint8Array {
  const fixed = new Uint8Array(20 + pad4(bytes.length));
  const dv = new DataView(fixed.buffer);
  dv.setUint32(0, 0, true); // interface 0
  fixed.set(ts(tsMicros), 4);
  dv.setUint32(12, bytes.length, true);
  dv.setUint32(16, origLen, true);
  fixed.set(bytes, 20);
  return block(EPB, fixed, [{ code: EPB_FLAGS, value: u32(direction) }]);
}

export function interfaceStatistics(startMicros: number, endMicros: number, dropped: number, comment: string): Uint8Array {
  const fixed = new Uint8Array(12);
  new DataView(fixed.buffer).setUint32(0, 0, true);
  fixed.set(ts(endMicros), 4);
  return block(ISB, fixed, [
    { code: OPT_COMMENT, value: utf8.encode(comment) },
    { code: ISB_STARTTIME, value: ts(startMicros) },
    { code: ISB_ENDTIME, value: ts(endMicros) },
    { code: ISB_IFDROP, value: u64(dropped) },
  ]);
}
