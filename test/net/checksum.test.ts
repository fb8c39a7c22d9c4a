// Checksum fill against an independent, straightforward TypeScript implementation (big-endian
// 16-bit words, byte by byte), on hostile input, and against the kernel's own checksum checks on a TAP.
import { afterEach, describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { CsumStatus, fillChecksum, fillChecksums } from "../../src/net/checksum.ts";
import { createFrameBatch, freeFrameBatch } from "../../src/net/frame-batch.ts";
import { TapPeer } from "../../src/net/tap.ts";
import { canUseTap, createTestTap, ifMac, ip, uniqueIfName, until } from "./tap-helper.ts";

// --- the independent reference ---------------------------------------------------------------

function refSum(words: number[]): number {
  let s = 0;
  for (const w of words) {
    s += w;
    s = (s & 0xffff) + (s >>> 16);
  }
  return s;
}
function beWords(b: Uint8Array, start: number, end: number): number[] {
  const w: number[] = [];
  for (let i = start; i < end; i += 2) w.push((b[i] << 8) | (i + 1 < end ? b[i + 1] : 0));
  return w;
}
interface Parsed { l4: number; l4len: number; proto: number; pseudo: number[]; field: number }
/** Where the L4 segment is, by explicit header walking (only the layouts this test builds). */
function refParse(f: Uint8Array): Parsed {
  let off = 12;
  while (((f[off] << 8) | f[off + 1]) === 0x8100 || ((f[off] << 8) | f[off + 1]) === 0x88a8) off += 4;
  const type = (f[off] << 8) | f[off + 1];
  off += 2;
  let proto: number, l4: number, l4len: number, pseudo: number[];
  if (type === 0x0800) {
    const ihl = (f[off] & 15) * 4;
    const tot = (f[off + 2] << 8) | f[off + 3];
    proto = f[off + 9];
    l4 = off + ihl;
    l4len = tot - ihl;
    pseudo = [...beWords(f, off + 12, off + 20), proto, l4len];
  } else {
    const plen = (f[off + 4] << 8) | f[off + 5];
    let nh = f[off + 6], p = off + 40;
    while ([0, 43, 60, 44, 51].includes(nh)) {
      const len = nh === 44 ? 8 : nh === 51 ? (f[p + 1] + 2) * 4 : (f[p + 1] + 1) * 8;
      nh = f[p];
      p += len;
    }
    proto = nh;
    l4 = p;
    l4len = off + 40 + plen - p;
    pseudo = [...beWords(f, off + 8, off + 40), l4len >>> 16, l4len & 0xffff, 0, proto];
  }
  return { l4, l4len, proto, pseudo, field: l4 + (proto === 6 ? 16 : 6) };
}
function refChecksum(f: Uint8Array): number {
  const p = refParse(f);
  const g = f.slice();
  g[p.field] = g[p.field + 1] = 0;
  const c = ~refSum([...p.pseudo, ...beWords(g, p.l4, p.l4 + p.l4len)]) & 0xffff;
  return p.proto === 17 && c === 0 ? 0xffff : c;
}
const fieldOf = (f: Uint8Array) => {
  const p = refParse(f);
  return (f[p.field] << 8) | f[p.field + 1];
};

// --- frames ----------------------------------------------------------------------------------

let seed = 12345;
const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
const rndBytes = (n: number) => Uint8Array.from({ length: n }, () => rnd(256));

interface Shape { v6: boolean; tcp: boolean; vlans: number; payload: number; ipOptions?: number; ext?: number[]; pad?: number }
function build(s: Shape): Uint8Array {
  const parts: number[] = [...rndBytes(12)];
  parts[0] &= 0xfe;
  for (let i = 0; i < s.vlans; i++) parts.push(i === 0 && s.vlans === 2 ? 0x88 : 0x81, i === 0 && s.vlans === 2 ? 0xa8 : 0x00, rnd(16), rnd(256));
  const l4hdr = s.tcp ? 20 : 8;
  const seg = [...rndBytes(l4hdr + s.payload)];
  if (s.tcp) seg[12] = 0x50;
  else {
    seg[4] = (l4hdr + s.payload) >> 8;
    seg[5] = (l4hdr + s.payload) & 0xff;
  }
  const proto = s.tcp ? 6 : 17;
  if (!s.v6) {
    const opt = (s.ipOptions ?? 0) * 4;
    const tot = 20 + opt + seg.length;
    parts.push(0x08, 0x00, 0x45 + (opt >> 2), 0, tot >> 8, tot & 255, rnd(256), rnd(256), 0x40, 0, 64, proto, 0, 0, ...rndBytes(8), ...Array(opt).fill(1));
  } else {
    const exts: number[] = [];
    const chain = s.ext ?? [];
    for (let i = 0; i < chain.length; i++) {
      const next = i + 1 < chain.length ? chain[i + 1] : proto;
      const t = chain[i];
      if (t === 44) exts.push(next, 0, 0, 0, ...rndBytes(4)); // atomic fragment (offset 0, M=0)
      else if (t === 51) exts.push(next, 2, 0, 0, ...rndBytes(12)); // AH, 16 bytes
      else if (t === 43) exts.push(next, 0, 2, 0, ...rndBytes(4)); // routing, segments left 0
      else exts.push(next, 1, ...rndBytes(14)); // hop-by-hop / dest opts, 16 bytes
    }
    const plen = exts.length + seg.length;
    parts.push(0x86, 0xdd, 0x60, 0, 0, 0, plen >> 8, plen & 255, chain.length ? chain[0] : proto, 64, ...rndBytes(32), ...exts);
  }
  parts.push(...seg, ...Array(s.pad ?? 0).fill(0xee));
  return Uint8Array.from(parts);
}
function shapes(): Shape[] {
  const out: Shape[] = [];
  for (const v6 of [false, true])
    for (const tcp of [false, true])
      for (const vlans of [0, 1, 2])
        for (const payload of [0, 1, 2, 3, 17, 64, 333, 1400, 1459, 8999])
          out.push({ v6, tcp, vlans, payload, ipOptions: v6 ? 0 : payload % 3 === 0 ? 2 : 0, ext: v6 ? [[], [0], [0, 60], [44], [0, 43, 44, 51, 60]][payload % 5] : undefined, pad: payload < 10 ? 6 : 0 });
  return out;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

describe("checksum fill", () => {
  test("matches an independent implementation for IPv4/IPv6, TCP/UDP, VLAN tags, options, extension headers, odd lengths", () => {
    let n = 0;
    for (const s of shapes()) {
      const f = build(s);
      const want = refChecksum(f);
      const before = f.slice();
      expect(fillChecksum(f)).toBe(CsumStatus.Filled);
      expect(fieldOf(f)).toBe(want);
      // Only the two checksum bytes may change.
      const p = refParse(f);
      before[p.field] = f[p.field];
      before[p.field + 1] = f[p.field + 1];
      expect(Buffer.from(f).equals(Buffer.from(before))).toBe(true);
      n++;
    }
    expect(n).toBe(120);
  });

  test("a batch fills only the frames flagged, and reports each frame's status", () => {
    const b = createFrameBatch(8, 10240);
    cleanups.push(() => freeFrameBatch(b));
    const frames = [build({ v6: false, tcp: true, vlans: 0, payload: 100 }), build({ v6: true, tcp: false, vlans: 1, payload: 7 }),
      build({ v6: false, tcp: false, vlans: 0, payload: 9 }), Uint8Array.from([...rndBytes(12), 0x08, 0x06, ...rndBytes(28)])];
    frames.forEach((f, i) => {
      b.bytes.set(f, i * b.stride);
      b.lens[i] = f.length;
    });
    b.count = 4;
    const untouched = frames[2].slice();
    const status = new Uint8Array(8);
    status.set([1, 1, 0, 1]);
    expect(fillChecksums(b, status)).toBe(2);
    expect([...status.subarray(0, 4)]).toEqual([CsumStatus.Filled, CsumStatus.Filled, CsumStatus.None, CsumStatus.NotL4]);
    expect(fieldOf(b.bytes.subarray(0, b.lens[0]))).toBe(refChecksum(frames[0]));
    expect(fieldOf(b.bytes.subarray(b.stride, b.stride + b.lens[1]))).toBe(refChecksum(frames[1]));
    expect(Buffer.from(b.bytes.subarray(2 * b.stride, 2 * b.stride + b.lens[2])).equals(Buffer.from(untouched))).toBe(true);
  });

  test("truncated frames are left as they are and reported truncated, at every cut", () => {
    for (const s of [{ v6: false, tcp: true, vlans: 1, payload: 40 }, { v6: true, tcp: false, vlans: 0, payload: 40, ext: [0, 44] }] as Shape[]) {
      const whole = build(s);
      for (let cut = 0; cut < whole.length; cut++) {
        const f = whole.slice(0, cut);
        const copy = f.slice();
        expect(fillChecksum(f)).toBe(CsumStatus.Truncated);
        expect(Buffer.from(f).equals(Buffer.from(copy))).toBe(true);
      }
    }
  });

  test("fragments, jumbograms, IPv6 routing in use, bad versions and UDP length mismatches are refused", () => {
    const frag = build({ v6: false, tcp: false, vlans: 0, payload: 20 });
    frag[20] = 0x20; // more fragments
    expect(fillChecksum(frag)).toBe(CsumStatus.Fragment);
    const frag6 = build({ v6: true, tcp: true, vlans: 0, payload: 20, ext: [44] });
    frag6[54 + 3] = 0x08; // offset 1
    expect(fillChecksum(frag6)).toBe(CsumStatus.Fragment);
    const jumbo = build({ v6: true, tcp: false, vlans: 0, payload: 20 });
    jumbo[18] = jumbo[19] = 0;
    expect(fillChecksum(jumbo)).toBe(CsumStatus.Malformed);
    const routed = build({ v6: true, tcp: false, vlans: 0, payload: 20, ext: [43] });
    routed[54 + 3] = 1; // segments left
    expect(fillChecksum(routed)).toBe(CsumStatus.Malformed);
    const v5 = build({ v6: false, tcp: true, vlans: 0, payload: 20 });
    v5[14] = 0x55;
    expect(fillChecksum(v5)).toBe(CsumStatus.Malformed);
    const udp = build({ v6: false, tcp: false, vlans: 0, payload: 20 });
    udp[14 + 20 + 5] += 1;
    expect(fillChecksum(udp)).toBe(CsumStatus.Malformed);
    const ihl = build({ v6: false, tcp: false, vlans: 0, payload: 20 });
    ihl[14] = 0x44;
    expect(fillChecksum(ihl)).toBe(CsumStatus.Malformed);
    const icmp = build({ v6: false, tcp: false, vlans: 0, payload: 20 });
    icmp[23] = 1;
    expect(fillChecksum(icmp)).toBe(CsumStatus.NotL4);
  });

  test("random mutations of valid frames never make it write outside the checksum field", () => {
    const b = createFrameBatch(256, 2048);
    cleanups.push(() => freeFrameBatch(b));
    const status = new Uint8Array(256);
    for (let round = 0; round < 40; round++) {
      const originals: Uint8Array[] = [];
      for (let i = 0; i < 256; i++) {
        const f = build({ v6: rnd(2) === 1, tcp: rnd(2) === 1, vlans: rnd(3), payload: rnd(200), ext: [[], [0], [44, 60]][rnd(3)] });
        for (let k = rnd(6); k > 0; k--) f[rnd(Math.min(f.length, 80))] = rnd(256); // hit the headers
        const len = rnd(4) === 0 ? rnd(f.length + 1) : f.length;
        b.bytes.set(f.subarray(0, len), i * b.stride);
        b.lens[i] = len;
        originals.push(f.slice(0, len));
      }
      b.lens[0] = 5000; // longer than the stride
      b.count = 256;
      status.fill(1);
      fillChecksums(b, status);
      expect(status[0]).toBe(CsumStatus.Truncated);
      for (let i = 1; i < 256; i++) {
        const got = b.bytes.subarray(i * b.stride, i * b.stride + b.lens[i]);
        const diff: number[] = [];
        for (let k = 0; k < got.length; k++) if (got[k] !== originals[i][k]) diff.push(k);
        if (status[i] !== CsumStatus.Filled) expect(diff).toEqual([]);
        else {
          expect(diff.length).toBeLessThanOrEqual(2);
          if (diff.length === 2) expect(diff[1]).toBe(diff[0] + 1);
        }
      }
    }
  });
});

describe.skipIf(!canUseTap())("checksum fill, checked by the kernel on a TAP", () => {
  // A /24 per process (from its pid), so parallel runs never route each other's replies.
  const hi = 100 + ((process.pid >> 8) % 100), net = process.pid & 255;
  function setup() {
    const t = createTestTap(uniqueIfName("k"));
    cleanups.push(() => t.close());
    ip("addr", "add", `10.${hi}.${net}.1/24`, "dev", t.name);
    ip("neigh", "replace", `10.${hi}.${net}.2`, "lladdr", "02:00:5e:77:00:02", "dev", t.name, "nud", "permanent");
    const peer = new TapPeer(t.name, t.fd);
    cleanups.push(() => peer.close());
    const b = createFrameBatch(16, 2048);
    cleanups.push(() => freeFrameBatch(b));
    return { t, peer, b, tapMac: ifMac(t.name) };
  }
  function frameTo(tapMac: Uint8Array, proto: number, dport: number, payload: Uint8Array, tcpFlags = 0x02): Uint8Array {
    const l4len = (proto === 6 ? 20 : 8) + payload.length;
    const f = new Uint8Array(14 + 20 + l4len);
    f.set(tapMac, 0);
    f.set([0x02, 0x00, 0x5e, 0x77, 0x00, 0x02, 0x08, 0x00], 6);
    const dv = new DataView(f.buffer);
    f[14] = 0x45;
    dv.setUint16(16, 20 + l4len);
    f[22] = 64;
    f[23] = proto;
    f.set([10, hi, net, 2, 10, hi, net, 1], 26);
    dv.setUint16(24, ~refSum(beWords(f, 14, 34)) & 0xffff);
    dv.setUint16(34, 40000 + (process.pid % 1000));
    dv.setUint16(36, dport);
    if (proto === 17) dv.setUint16(38, l4len);
    else {
      dv.setUint32(38, 1000); // seq
      f[46] = 0x50;
      f[47] = tcpFlags;
      dv.setUint16(48, 64240); // window
    }
    f.set(payload, 14 + 20 + (proto === 6 ? 20 : 8));
    return f;
  }
  function sendOne(peer: TapPeer, b: ReturnType<typeof createFrameBatch>, f: Uint8Array) {
    b.bytes.set(f, 0);
    b.lens[0] = f.length;
    b.count = 1;
    expect(peer.send(b)).toBe(1);
  }

  test("a UDP datagram whose checksum we filled is delivered; the same one corrupted is not", async () => {
    const { peer, b, tapMac } = setup();
    const sock = createSocket("udp4");
    const got: string[] = [];
    sock.on("message", (m) => got.push(m.toString()));
    await new Promise<void>((r) => sock.bind(0, `10.${hi}.${net}.1`, () => r()));
    cleanups.push(() => sock.close());
    const port = sock.address().port;
    const bad = frameTo(tapMac, 17, port, new TextEncoder().encode("bad-checksum!"));
    expect(fillChecksum(bad)).toBe(CsumStatus.Filled);
    bad[bad.length - 1] ^= 0x40; // corrupt after filling: the kernel must refuse it
    sendOne(peer, b, bad);
    const good = frameTo(tapMac, 17, port, new TextEncoder().encode("good-checksum"));
    good[40] = 0x12; // garbage in the field: a guest's csum_blank frame may hold anything there
    expect(fillChecksum(good)).toBe(CsumStatus.Filled);
    sendOne(peer, b, good);
    await until("the good datagram", () => got.includes("good-checksum"));
    expect(got).toEqual(["good-checksum"]);
  });

  test("an IPv6 UDP datagram behind a destination-options header, checksum filled by us, is delivered", async () => {
    const t = createTestTap(uniqueIfName("6"), { ipv6: true });
    cleanups.push(() => t.close());
    const prefix = `fd00:213:${(process.pid & 0xffff).toString(16)}:${(process.pid >> 16).toString(16)}`;
    ip("-6", "addr", "add", `${prefix}::1/64`, "dev", t.name, "nodad");
    ip("-6", "neigh", "replace", `${prefix}::2`, "lladdr", "02:00:5e:77:00:02", "dev", t.name, "nud", "permanent");
    const peer = new TapPeer(t.name, t.fd);
    cleanups.push(() => peer.close());
    const b = createFrameBatch(4, 2048);
    cleanups.push(() => freeFrameBatch(b));
    const sock = createSocket("udp6");
    const got: string[] = [];
    sock.on("message", (m) => got.push(m.toString()));
    await new Promise<void>((r) => sock.bind(0, `${prefix}::1`, () => r()));
    cleanups.push(() => sock.close());
    const addr = (last: number) => {
      const groups = prefix.split(":").map((g) => parseInt(g, 16));
      const a = new Uint8Array(16);
      groups.forEach((g, i) => a.set([g >> 8, g & 255], i * 2));
      a[15] = last;
      return a;
    };
    const payload = new TextEncoder().encode("v6-good");
    const udpLen = 8 + payload.length;
    const f = new Uint8Array(14 + 40 + 8 + udpLen);
    const dv = new DataView(f.buffer);
    f.set(ifMac(t.name), 0);
    f.set([0x02, 0x00, 0x5e, 0x77, 0x00, 0x02, 0x86, 0xdd, 0x60], 6);
    dv.setUint16(18, 8 + udpLen);
    f[20] = 60; // destination options next
    f[21] = 64;
    f.set(addr(2), 22);
    f.set(addr(1), 38);
    f.set([17, 0, 1, 4, 0, 0, 0, 0], 54); // next UDP, 8 bytes, PadN(4)
    dv.setUint16(62, 40001);
    dv.setUint16(64, sock.address().port);
    dv.setUint16(66, udpLen);
    dv.setUint16(68, 0xbeef); // garbage
    f.set(payload, 70);
    expect(fillChecksum(f)).toBe(CsumStatus.Filled);
    b.bytes.set(f, 0);
    b.lens[0] = f.length;
    b.count = 1;
    expect(peer.send(b)).toBe(1);
    await until("the IPv6 datagram", () => got.length > 0);
    expect(got).toEqual(["v6-good"]);
  });

  test("a TCP SYN whose checksum we filled is answered with a SYN-ACK (whose checksum our reference agrees with)", async () => {
    const { peer, b, tapMac } = setup();
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(0, `10.${hi}.${net}.1`, () => r()));
    cleanups.push(() => server.close());
    const port = (server.address() as { port: number }).port;
    const syn = frameTo(tapMac, 6, port, new Uint8Array(0));
    syn[50] = 0xde; // garbage checksum
    expect(fillChecksum(syn)).toBe(CsumStatus.Filled);
    sendOne(peer, b, syn);
    let synack: Uint8Array | undefined;
    await until("a SYN-ACK on the TAP", () => {
      const n = peer.receive(b);
      for (let i = 0; i < n; i++) {
        const f = b.bytes.slice(i * b.stride, i * b.stride + b.lens[i]);
        if (f[12] === 8 && f[13] === 0 && f[23] === 6 && f[47] === 0x12) synack = f;
      }
      return synack !== undefined;
    });
    expect(fieldOf(synack!)).toBe(refChecksum(synack!));
    // Answer with RST so the kernel forgets the half-open connection at once.
    const rst = frameTo(tapMac, 6, port, new Uint8Array(0), 0x04);
    new DataView(rst.buffer).setUint32(38, 1001);
    fillChecksum(rst);
    sendOne(peer, b, rst);
  });
});
