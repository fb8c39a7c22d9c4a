// Just enough Ethernet, ARP, IPv4 and ICMP to answer "who has" and ping, and to build the same
// frames in tests. Byte layouts from RFC 826 / 791 / 792; checksums are the Internet checksum.
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
const IPPROTO_ICMP = 1;

export function parseMac(s: string): Uint8Array | undefined {
  const m = /^([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})$/.exec(s.trim());
  if (!m) return undefined;
  return Uint8Array.from(m.slice(1, 7).map((h) => Number.parseInt(h, 16)));
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}

export function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.trim().split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return Uint8Array.from(parts.map(Number));
}

export function formatIPv4(b: Uint8Array): string {
  return Array.from(b.subarray(0, 4)).join(".");
}

/** RFC 1071 one's-complement sum of 16-bit words, folded and inverted. */
export function inetChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

function ethHeader(out: Uint8Array, dst: Uint8Array, src: Uint8Array, type: number): void {
  out.set(dst, 0);
  out.set(src, 6);
  out[12] = type >> 8;
  out[13] = type & 0xff;
}

/** An ARP packet (request op 1, reply op 2) in an Ethernet frame. */
export function buildArp(op: 1 | 2, srcMac: Uint8Array, srcIp: Uint8Array, dstMac: Uint8Array, dstIp: Uint8Array): Uint8Array {
  const f = new Uint8Array(42);
  ethHeader(f, op === 1 ? new Uint8Array(6).fill(0xff) : dstMac, srcMac, ETHERTYPE_ARP);
  const a = new DataView(f.buffer, 14);
  a.setUint16(0, 1); // htype Ethernet
  a.setUint16(2, ETHERTYPE_IPV4);
  a.setUint8(4, 6);
  a.setUint8(5, 4);
  a.setUint16(6, op);
  f.set(srcMac, 22);
  f.set(srcIp, 28);
  f.set(op === 1 ? new Uint8Array(6) : dstMac, 32);
  f.set(dstIp, 38);
  return f;
}

/** An ICMP echo (request type 8, reply type 0) in IPv4 in Ethernet, checksums filled. */
export function buildIcmpEcho(
  type: 0 | 8,
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  srcIp: Uint8Array,
  dstIp: Uint8Array,
  ident: number,
  seq: number,
  payload: Uint8Array,
  ttl = 64,
): Uint8Array {
  const icmpLen = 8 + payload.length;
  const f = new Uint8Array(14 + 20 + icmpLen);
  ethHeader(f, dstMac, srcMac, ETHERTYPE_IPV4);
  const ip = f.subarray(14, 34);
  const v = new DataView(f.buffer, 14);
  v.setUint8(0, 0x45);
  v.setUint16(2, 20 + icmpLen);
  v.setUint16(6, 0x4000); // DF
  v.setUint8(8, ttl);
  v.setUint8(9, IPPROTO_ICMP);
  ip.set(srcIp, 12);
  ip.set(dstIp, 16);
  v.setUint16(10, inetChecksum(ip));
  const icmp = f.subarray(34);
  const iv = new DataView(f.buffer, 34);
  iv.setUint8(0, type);
  iv.setUint16(4, ident);
  iv.setUint16(6, seq);
  icmp.set(payload, 8);
  iv.setUint16(2, inetChecksum(icmp));
  return f;
}

export interface Responder {
  /** The reply to send for `frame`, if it is an ARP request for our IP or a ping to it. */
  answer(frame: Uint8Array): { kind: "arp" | "echo"; reply: Uint8Array } | undefined;
}

/** What a Linux guest with `ip` configured answers without any user process: ARP and ping. */
export function createResponder(mac: Uint8Array, ip: Uint8Array): Responder {
  return {
    answer(frame) {
      if (frame.length < 14) return undefined;
      const type = (frame[12]! << 8) | frame[13]!;
      const toUs = eq(frame.subarray(0, 6), mac) || frame.subarray(0, 6).every((b) => b === 0xff);
      if (type === ETHERTYPE_ARP && frame.length >= 42) {
        const op = (frame[20]! << 8) | frame[21]!;
        if (op !== 1 || !eq(frame.subarray(38, 42), ip)) return undefined;
        return { kind: "arp", reply: buildArp(2, mac, ip, frame.slice(22, 28), frame.slice(28, 32)) };
      }
      if (type === ETHERTYPE_IPV4 && toUs && frame.length >= 34 + 8) {
        const ihl = (frame[14]! & 0x0f) * 4;
        if ((frame[14]! >> 4) !== 4 || ihl < 20 || frame[14 + 9] !== IPPROTO_ICMP) return undefined;
        if (!eq(frame.subarray(30, 34), ip)) return undefined;
        const totalLen = (frame[16]! << 8) | frame[17]!;
        const icmp = frame.subarray(14 + ihl, Math.min(frame.length, 14 + totalLen));
        if (icmp.length < 8 || icmp[0] !== 8) return undefined;
        const ident = (icmp[4]! << 8) | icmp[5]!;
        const seq = (icmp[6]! << 8) | icmp[7]!;
        return { kind: "echo", reply: buildIcmpEcho(0, mac, frame.slice(6, 12), ip, frame.slice(26, 30), ident, seq, icmp.slice(8)) };
      }
      return undefined;
    },
  };
}
