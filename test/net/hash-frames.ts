// Frames and the key of the Toeplitz test vectors (FEATURES-FACTS section 5: DPDK's
// app/test/test_thash.c, the Microsoft RSS verification suite's first flow), shared by the hash's
// own tests and the control ring's.
export const RSS_KEY = Uint8Array.from(Buffer.from("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa", "hex"));
export const V4_SRC = [66, 9, 149, 187];
export const V4_DST = [161, 142, 100, 80];
export const V6_SRC = [0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 7];
export const V6_DST = [0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 1];
export const SPORT = 2794;
export const DPORT = 1766;
/** The vectors' values: IPV4, IPV4_TCP, IPV6, IPV6_TCP. */
export const VECTORS = { ipv4: 0x323e8fc2, ipv4Tcp: 0x51ccc178, ipv6: 0x2cc18cd5, ipv6Tcp: 0x40207d3d } as const;

/** An Ethernet frame (no MACs) carrying IPv4 or IPv6 with `proto` and (for TCP) a header with the ports. */
export function ipFrame(o: { v6: boolean; proto?: number; fragment?: boolean; sport?: number; dport?: number; src?: number[]; dst?: number[] }): Uint8Array {
  const ipLen = o.v6 ? 40 : 20;
  const f = new Uint8Array(14 + ipLen + 20 + 16);
  const dv = new DataView(f.buffer);
  dv.setUint16(12, o.v6 ? 0x86dd : 0x0800);
  const ip = 14;
  const proto = o.proto ?? 6;
  if (o.v6) {
    f[ip] = 0x60;
    dv.setUint16(ip + 4, 20 + 16);
    f[ip + 6] = o.fragment ? 44 : proto;
    f[ip + 7] = 64;
    f.set(o.src ?? V6_SRC, ip + 8);
    f.set(o.dst ?? V6_DST, ip + 24);
  } else {
    f[ip] = 0x45;
    dv.setUint16(ip + 2, 20 + 20 + 16);
    if (o.fragment) dv.setUint16(ip + 6, 0x2000); // MF: the first fragment
    f[ip + 8] = 64;
    f[ip + 9] = proto;
    f.set(o.src ?? V4_SRC, ip + 12);
    f.set(o.dst ?? V4_DST, ip + 16);
  }
  dv.setUint16(ip + ipLen, o.sport ?? SPORT);
  dv.setUint16(ip + ipLen + 2, o.dport ?? DPORT);
  return f;
}

