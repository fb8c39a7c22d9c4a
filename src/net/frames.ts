// Building well-formed frames outside the data path: the source peer's template and tests.
// Ethernet + IPv4 + UDP with a correct IPv4 header checksum and UDP checksum.

export interface UdpFrameSpec {
  srcMac: Uint8Array;
  dstMac: Uint8Array;
  srcIp: [number, number, number, number];
  dstIp: [number, number, number, number];
  srcPort: number;
  dstPort: number;
  /** Whole frame length in bytes (no FCS), at least 42. */
  size: number;
  /** Payload byte i is (fill + i) & 0xff, so a torn or shifted frame is visible. */
  fill?: number;
}

export const ETH_HLEN = 14;
const IP_HLEN = 20;
const UDP_HLEN = 8;
export const MIN_UDP_FRAME = ETH_HLEN + IP_HLEN + UDP_HLEN;

/** Ones'-complement sum of bytes [start, end) folded into 16 bits, added to `sum`. */
export function onesSum(b: Uint8Array, start: number, end: number, sum = 0): number {
  for (let i = start; i + 1 < end; i += 2) sum += (b[i] << 8) | b[i + 1];
  if ((end - start) & 1) sum += b[end - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function parseMac(s: string): Uint8Array {
  const parts = s.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`bad MAC "${s}": expected xx:xx:xx:xx:xx:xx`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function buildUdpFrame(spec: UdpFrameSpec): Uint8Array {
  const { size } = spec;
  if (size < MIN_UDP_FRAME || size > 65535) throw new RangeError(`UDP frame size must be ${MIN_UDP_FRAME}..65535, got ${size}`);
  const f = new Uint8Array(size);
  const dv = new DataView(f.buffer);
  f.set(spec.dstMac, 0);
  f.set(spec.srcMac, 6);
  dv.setUint16(12, 0x0800);
  const ip = ETH_HLEN;
  const ipLen = size - ETH_HLEN;
  f[ip] = 0x45;
  dv.setUint16(ip + 2, ipLen);
  dv.setUint16(ip + 6, 0x4000); // DF
  f[ip + 8] = 64;
  f[ip + 9] = 17;
  f.set(spec.srcIp, ip + 12);
  f.set(spec.dstIp, ip + 16);
  dv.setUint16(ip + 10, ~onesSum(f, ip, ip + IP_HLEN) & 0xffff);
  const udp = ip + IP_HLEN;
  const udpLen = ipLen - IP_HLEN;
  dv.setUint16(udp, spec.srcPort);
  dv.setUint16(udp + 2, spec.dstPort);
  dv.setUint16(udp + 4, udpLen);
  const fill = spec.fill ?? 0;
  for (let i = udp + UDP_HLEN; i < size; i++) f[i] = (fill + i - udp - UDP_HLEN) & 0xff;
  // Pseudo-header: src, dst, zero+proto, UDP length.
  let sum = onesSum(f, ip + 12, ip + 20);
  sum += 17 + udpLen;
  sum = onesSum(f, udp, size, sum);
  const c = ~sum & 0xffff;
  dv.setUint16(udp + 6, c === 0 ? 0xffff : c);
  return f;
}
