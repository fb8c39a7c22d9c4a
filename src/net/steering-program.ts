// The eBPF program a multi-queue TAP runs to pick each guest-bound frame's queue (TUNSETSTEERINGEBPF,
// linux drivers/net/tun.c tun_ebpf_select_queue: the program's return value modulo the queue count),
// so a frontend's hash configuration (control ring, workers/vif-hash.ts) decides the guest-rx queue
// as netback's xenvif_select_queue does: mapping[hash % size], or hash % queues with an empty table,
// a frame of no enabled type counting as hash 0. QEMU steers virtio-net RSS the same way (its
// ebpf/rss.bpf.c); this one is assembled here, needing no compiler, and reads one array map.
//
// The Toeplitz hash is linear in its input (XOR over the input's set bits of a 32-bit key window),
// so the map holds, for each input octet position and each octet value, that octet's contribution:
// the program XORs one table word per input octet, with no loops for the verifier to bound. The
// flow fields and the checks before them are FlowHasher's (src/net/toeplitz.ts), in the same order;
// test/net/tap-steering.test.ts holds the program to VifHash.selectQueue frame by frame.
import { XEN_NETBK_MAX_HASH_KEY_SIZE, XEN_NETBK_MAX_HASH_MAPPING_SIZE } from "../xen/netif.ts";
import {
  XEN_NETIF_CTRL_HASH_TYPE_IPV4,
  XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
  XEN_NETIF_CTRL_HASH_TYPE_IPV6,
  XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
} from "../xen/ctrl-netif.ts";

/** Longest hash input: IPv6 source and destination addresses, then the TCP ports. */
const MAX_INPUT = 36;
// The map value's layout (one element, key 0).
const CFG_QUEUES = 0;
const CFG_SIZE = 4;
const CFG_FLAGS = 8;
const CFG_MAPPING = 16;
const CFG_TABLE = 256;
/** Bytes of the map's one value: the header, the mapping table (one octet per entry), the per-octet table. */
export const STEERING_VALUE_BYTES = CFG_TABLE + MAX_INPUT * 256 * 4;

/** What the map says: the frontend's configuration (algorithm Toeplitz) and the vif's queue count. */
export interface SteeringConfig {
  queues: number;
  flags: number;
  key: ArrayLike<number>;
  /** Entries of `mapping` in use (0: hash % queues). */
  size: number;
  mapping: ArrayLike<number>;
}

/** The map value for `c`: bounded here, so a value the program reads never names a queue past `queues`. */
export function steeringValue(c: SteeringConfig): Uint8Array {
  const v = new Uint8Array(STEERING_VALUE_BYTES);
  const dv = new DataView(v.buffer);
  const size = Math.min(c.size >>> 0, XEN_NETBK_MAX_HASH_MAPPING_SIZE);
  dv.setUint32(CFG_QUEUES, c.queues >>> 0, true);
  dv.setUint32(CFG_SIZE, size, true);
  dv.setUint32(CFG_FLAGS, c.flags >>> 0, true);
  for (let i = 0; i < size; i++) {
    const q = c.mapping[i] ?? 0;
    v[CFG_MAPPING + i] = q < c.queues ? q : 0;
  }
  // window(n): key bits [n, n+32), key octets past the key as 0 (netif.h's xen_netif_toeplitz_hash).
  const keyLen = Math.min(c.key.length, XEN_NETBK_MAX_HASH_KEY_SIZE);
  const keyBit = (n: number) => ((n >> 3) < keyLen ? (c.key[n >> 3] >> (7 - (n & 7))) & 1 : 0);
  let window = 0;
  for (let n = 0; n < 32; n++) window = (window << 1) | keyBit(n);
  const bitWindow = new Uint32Array(MAX_INPUT * 8);
  for (let n = 0; n < MAX_INPUT * 8; n++) {
    bitWindow[n] = window >>> 0;
    window = (window << 1) | keyBit(n + 32);
  }
  for (let pos = 0; pos < MAX_INPUT; pos++) {
    for (let b = 0; b < 256; b++) {
      let w = 0;
      for (let bit = 0; bit < 8; bit++) if ((b >> (7 - bit)) & 1) w ^= bitWindow[pos * 8 + bit];
      dv.setUint32(CFG_TABLE + (pos * 256 + b) * 4, w >>> 0, true);
    }
  }
  return v;
}

// eBPF encoding (linux include/uapi/linux/bpf.h, bpf_common.h): 8 octets per instruction.
const LD = 0x00, LDX = 0x01, ST = 0x02, STX = 0x03, JMP = 0x05, ALU64 = 0x07;
const W = 0x00, H = 0x08, B = 0x10, DW = 0x18;
const IMM = 0x00, ABS = 0x20, IND = 0x40, MEM = 0x60;
const K = 0x00, X = 0x08;
const ADD = 0x00, AND = 0x50, LSH = 0x60, RSH = 0x70, MOD = 0x90, XOR = 0xa0, MOV = 0xb0;
const JA = 0x00, JEQ = 0x10, JGT = 0x20, JNE = 0x50, JLT = 0xa0, CALL = 0x80, EXIT = 0x90;
const BPF_PSEUDO_MAP_FD = 1;
const BPF_FUNC_map_lookup_elem = 1;
const R0 = 0, R1 = 1, R2 = 2, R6 = 6, R7 = 7, R8 = 8, R9 = 9, R10 = 10;

class Assembler {
  private readonly insns: { code: number; dst: number; src: number; off: number | string; imm: number }[] = [];
  private readonly labels = new Map<string, number>();

  op(code: number, dst: number, src: number, off: number | string, imm: number): void {
    this.insns.push({ code, dst, src, off, imm });
  }
  label(name: string): void {
    this.labels.set(name, this.insns.length);
  }
  alu(op: number, dst: number, imm: number): void {
    this.op(ALU64 | op | K, dst, 0, 0, imm);
  }
  aluReg(op: number, dst: number, src: number): void {
    this.op(ALU64 | op | X, dst, src, 0, 0);
  }
  jmp(op: number, dst: number, imm: number, to: string): void {
    this.op(JMP | op | K, dst, 0, to, imm);
  }
  goto(to: string): void {
    this.op(JMP | JA, 0, 0, to, 0);
  }
  /** r0 = the frame's octet (or big-endian half-word) at `k`; `ind`: at k + the register's value. */
  loadPacket(size: number, k: number, ind?: number): void {
    this.op(LD | (ind === undefined ? ABS : IND) | size, 0, ind ?? 0, 0, k);
  }
  exit(): void {
    this.op(JMP | EXIT, 0, 0, 0, 0);
  }

  encode(): Uint8Array {
    const out = new Uint8Array(this.insns.length * 8);
    const dv = new DataView(out.buffer);
    this.insns.forEach((i, at) => {
      let off = i.off;
      if (typeof off === "string") {
        const target = this.labels.get(off);
        if (target === undefined) throw new Error(`steering program: no label ${off}`);
        off = target - at - 1;
      }
      dv.setUint8(at * 8, i.code);
      dv.setUint8(at * 8 + 1, (i.src << 4) | i.dst);
      dv.setInt16(at * 8 + 2, off, true);
      dv.setInt32(at * 8 + 4, i.imm, true);
    });
    return out;
  }
}

/**
 * The program, reading the map `mapFd`. Registers: r6 the skb (LD_ABS/LD_IND need it there), r7 the
 * hash, r8 the map value, r9 the frame's length, later the IPv4 header length (or 1 for IPv6) when
 * the TCP ports count. LD_ABS/LD_IND clobber r0-r5 and end the program (queue 0) if the frame is
 * shorter than the load: every load below is checked against the length first, so none does.
 */
export function steeringProgram(mapFd: number): Uint8Array {
  const a = new Assembler();
  const ETH = 14;
  // Input octet `input` (0-35) is the frame's octet at k (+ r9 when ind): r7 ^= table[input][octet].
  const hashOctet = (input: number, k: number, ind?: number) => {
    a.loadPacket(B, k, ind);
    a.alu(AND, R0, 0xff);
    a.alu(LSH, R0, 2);
    a.aluReg(MOV, R1, R8);
    a.alu(ADD, R1, CFG_TABLE + input * 1024);
    a.aluReg(ADD, R1, R0);
    a.op(LDX | MEM | W, R0, R1, 0, 0);
    a.aluReg(XOR, R7, R0);
  };
  const loadFlags = (mask: number) => {
    a.op(LDX | MEM | W, R1, R8, CFG_FLAGS, 0);
    a.alu(AND, R1, mask);
  };
  // An address family's entry: one of its types enabled, its fixed header in the frame, its
  // version in the header (r0 keeps the header's first octet).
  const family = (name: string, types: number, headerLen: number, version: number) => {
    a.label(name);
    loadFlags(types);
    a.jmp(JEQ, R1, 0, "select");
    a.jmp(JLT, R9, ETH + headerLen, "select");
    a.loadPacket(B, ETH);
    a.aluReg(MOV, R1, R0);
    a.alu(RSH, R1, 4);
    a.jmp(JNE, R1, version, "select");
  };
  // No TCP ports for the hash: the addresses alone if that type is enabled (r9 = 0), else no hash.
  const addressesOnly = (name: string, type: number) => {
    a.label(`${name}-addresses`);
    loadFlags(type);
    a.jmp(JEQ, R1, 0, "select");
    a.alu(MOV, R9, 0);
    a.label(`${name}-hash`);
  };

  a.aluReg(MOV, R6, R1);
  a.op(ST | MEM | W, R10, 0, -4, 0);
  a.op(LD | IMM | DW, R1, BPF_PSEUDO_MAP_FD, 0, mapFd);
  a.op(0, 0, 0, 0, 0); // second half of the 64-bit immediate
  a.aluReg(MOV, R2, R10);
  a.alu(ADD, R2, -4);
  a.op(JMP | CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
  a.jmp(JEQ, R0, 0, "zero");
  a.aluReg(MOV, R8, R0);
  a.alu(MOV, R7, 0);
  a.op(LDX | MEM | W, R9, R6, 0, 0); // __sk_buff.len
  a.jmp(JLT, R9, ETH, "select");
  a.loadPacket(H, 12);
  a.jmp(JEQ, R0, 0x0800, "v4");
  a.jmp(JEQ, R0, 0x86dd, "v6");
  a.goto("select");

  // IPv4: the header whole, its length at least 20; TCP ports when enabled, the protocol is TCP,
  // the datagram is no fragment (MF or an offset) and the ports are in the frame.
  family("v4", XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP, 20, 4);
  a.alu(AND, R0, 0x0f);
  a.alu(LSH, R0, 2);
  a.jmp(JLT, R0, 20, "select");
  a.aluReg(MOV, R1, R0);
  a.alu(ADD, R1, ETH);
  a.op(JMP | JGT | X, R1, R9, "select", 0);
  a.op(STX | MEM | DW, R10, R0, -16, 0);
  loadFlags(XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
  a.jmp(JEQ, R1, 0, "v4-addresses");
  a.op(LDX | MEM | DW, R1, R10, -16, 0);
  a.alu(ADD, R1, ETH + 4);
  a.op(JMP | JGT | X, R1, R9, "v4-addresses", 0);
  a.loadPacket(B, ETH + 9);
  a.jmp(JNE, R0, 6, "v4-addresses");
  a.loadPacket(H, ETH + 6);
  a.alu(AND, R0, 0x3fff);
  a.jmp(JNE, R0, 0, "v4-addresses");
  a.op(LDX | MEM | DW, R9, R10, -16, 0);
  a.goto("v4-hash");
  addressesOnly("v4", XEN_NETIF_CTRL_HASH_TYPE_IPV4);
  for (let i = 0; i < 8; i++) hashOctet(i, ETH + 12 + i);
  a.jmp(JEQ, R9, 0, "select");
  for (let i = 0; i < 4; i++) hashOctet(8 + i, ETH + i, R9);
  a.goto("select");

  // IPv6: the fixed header whole; TCP ports when enabled, the next header is TCP (extension
  // headers are not walked) and the ports are in the frame.
  family("v6", XEN_NETIF_CTRL_HASH_TYPE_IPV6 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP, 40, 6);
  loadFlags(XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
  a.jmp(JEQ, R1, 0, "v6-addresses");
  a.jmp(JLT, R9, ETH + 44, "v6-addresses");
  a.loadPacket(B, ETH + 6);
  a.jmp(JNE, R0, 6, "v6-addresses");
  a.alu(MOV, R9, 1);
  a.goto("v6-hash");
  addressesOnly("v6", XEN_NETIF_CTRL_HASH_TYPE_IPV6);
  for (let i = 0; i < 32; i++) hashOctet(i, ETH + 8 + i);
  a.jmp(JEQ, R9, 0, "select");
  for (let i = 0; i < 4; i++) hashOctet(32 + i, ETH + 40 + i);
  a.goto("select");

  // The queue: mapping[hash % size], else hash % queues (tun takes it modulo its queue count too).
  a.label("select");
  a.op(LDX | MEM | W, R1, R8, CFG_SIZE, 0);
  a.jmp(JEQ, R1, 0, "modulo-queues");
  a.aluReg(MOD, R7, R1);
  a.alu(AND, R7, XEN_NETBK_MAX_HASH_MAPPING_SIZE - 1);
  a.aluReg(ADD, R8, R7);
  a.op(LDX | MEM | B, R0, R8, CFG_MAPPING, 0);
  a.exit();
  a.label("modulo-queues");
  a.op(LDX | MEM | W, R1, R8, CFG_QUEUES, 0);
  a.jmp(JEQ, R1, 0, "zero");
  a.aluReg(MOD, R7, R1);
  a.aluReg(MOV, R0, R7);
  a.exit();
  a.label("zero");
  a.alu(MOV, R0, 0);
  a.exit();
  return a.encode();
}
