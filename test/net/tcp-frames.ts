// TCP/IPv4 frames for the GSO tests: build a (super-)packet the way a guest's stack hands it to
// netfront (IP header complete, TCP checksum left partial or as garbage), and check the segments
// the kernel made of it (each one's TCP checksum complete and right, payloads in sequence).
import { onesSum } from "../../src/net/frames.ts";

export interface TcpSpec {
  srcMac: Uint8Array;
  dstMac: Uint8Array;
  srcIp: [number, number, number, number];
  dstIp: [number, number, number, number];
  srcPort: number;
  dstPort: number;
  seq: number;
  payload: Uint8Array;
}

/** Ethernet + IPv4 (checksummed) + TCP (20 bytes, ACK|PSH, checksum field 0xdead: the host side must fill it). */
export function tcpFrame(s: TcpSpec): Uint8Array {
  const f = new Uint8Array(54 + s.payload.length);
  const dv = new DataView(f.buffer);
  f.set(s.dstMac, 0);
  f.set(s.srcMac, 6);
  dv.setUint16(12, 0x0800);
  f[14] = 0x45;
  dv.setUint16(16, 40 + s.payload.length);
  dv.setUint16(18, 0x1234);
  dv.setUint16(20, 0x4000); // DF
  f[22] = 64;
  f[23] = 6;
  f.set(s.srcIp, 26);
  f.set(s.dstIp, 30);
  dv.setUint16(24, ~onesSum(f, 14, 34) & 0xffff);
  writeTcp(f, 34, s);
  return f;
}

/** The 20-byte TCP header at `at` (ACK|PSH, checksum 0xdead: the host side must fill it), then the payload. */
function writeTcp(f: Uint8Array, at: number, s: Pick<TcpSpec, "srcPort" | "dstPort" | "seq" | "payload">): void {
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  dv.setUint16(at, s.srcPort);
  dv.setUint16(at + 2, s.dstPort);
  dv.setUint32(at + 4, s.seq);
  dv.setUint32(at + 8, 1);
  f[at + 12] = 5 << 4;
  f[at + 13] = 0x18; // ACK | PSH
  dv.setUint16(at + 14, 65535);
  dv.setUint16(at + 16, 0xdead);
  f.set(s.payload, at + 20);
}

/** Payload byte i of a test stream: visible if torn, shifted or reordered. */
export function streamBytes(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + (i >> 8) + seed) & 0xff;
  return b;
}

/** A received TCP/IPv4 segment between the given ports: its sequence number, payload and whether both checksums verify. */
export function parseTcpSegment(f: Uint8Array, srcPort: number, dstPort: number): { seq: number; payload: Uint8Array; checksumsOk: boolean; ipLen: number } | null {
  if (f.length < 54) return null;
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (dv.getUint16(12) !== 0x0800 || f[23] !== 6) return null;
  const ihl = (f[14] & 0x0f) * 4;
  const ipLen = dv.getUint16(16);
  const l4 = 14 + ihl;
  if (dv.getUint16(l4) !== srcPort || dv.getUint16(l4 + 2) !== dstPort) return null;
  const l4len = ipLen - ihl;
  const doff = (f[l4 + 12] >> 4) * 4;
  const ipOk = onesSum(f, 14, l4) === 0xffff;
  let sum = onesSum(f, 26, 34);
  sum += 6 + l4len;
  const tcpOk = onesSum(f, l4, l4 + l4len, sum) === 0xffff;
  return { seq: dv.getUint32(l4 + 4), payload: f.slice(l4 + doff, l4 + l4len), checksumsOk: ipOk && tcpOk, ipLen };
}

export interface Tcp6Spec extends Omit<TcpSpec, "srcIp" | "dstIp"> {
  /** 16 bytes each. */
  srcIp: Uint8Array;
  dstIp: Uint8Array;
}

/** Ethernet + IPv6 + TCP (20 bytes, ACK|PSH, checksum field 0xdead: the host side must fill it). */
export function tcp6Frame(s: Tcp6Spec): Uint8Array {
  const f = new Uint8Array(74 + s.payload.length);
  const dv = new DataView(f.buffer);
  f.set(s.dstMac, 0);
  f.set(s.srcMac, 6);
  dv.setUint16(12, 0x86dd);
  f[14] = 0x60;
  dv.setUint16(18, 20 + s.payload.length);
  f[20] = 6;
  f[21] = 64;
  f.set(s.srcIp, 22);
  f.set(s.dstIp, 38);
  writeTcp(f, 54, s);
  return f;
}

/** A received TCP/IPv6 segment (no extension headers) between the given ports: sequence number, payload, checksum verdict. */
export function parseTcp6Segment(f: Uint8Array, srcPort: number, dstPort: number): { seq: number; payload: Uint8Array; checksumsOk: boolean; plen: number } | null {
  if (f.length < 74) return null;
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (dv.getUint16(12) !== 0x86dd || f[20] !== 6) return null;
  if (dv.getUint16(54) !== srcPort || dv.getUint16(56) !== dstPort) return null;
  const plen = dv.getUint16(18);
  const doff = (f[66] >> 4) * 4;
  let sum = onesSum(f, 22, 54);
  sum += 6 + plen;
  const ok = onesSum(f, 54, 54 + plen, sum) === 0xffff;
  return { seq: dv.getUint32(58), payload: f.slice(54 + doff, 54 + plen), checksumsOk: ok, plen };
}
