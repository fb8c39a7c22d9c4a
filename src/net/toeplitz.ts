// The Toeplitz hash as the netif control ring defines it (xen_netif_toeplitz_hash in
// xen/include/public/io/netif.h), and the flow fields it runs over, as Linux netback picks them
// (xenvif_set_skb_hash in drivers/net/xen-netback/hash.c): a frontend that configured hashing
// (Windows PV drivers do, for RSS) gets the value it would compute itself for the same packet.
//
// netif.h's definition slides a 64-bit window over the key one input bit at a time and keeps the
// top 32 bits; only those ever reach the result, so a 32-bit window refilled bit by bit from the
// key is the same function (test/net/toeplitz.test.ts checks it against the header's own C code).
import {
  _XEN_NETIF_CTRL_HASH_TYPE_IPV4,
  _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
  _XEN_NETIF_CTRL_HASH_TYPE_IPV6,
  _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
  XEN_NETIF_CTRL_HASH_TYPE_IPV4,
  XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP,
  XEN_NETIF_CTRL_HASH_TYPE_IPV6,
  XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP,
} from "../xen/ctrl-netif.ts";

/** xen_netif_toeplitz_hash(key, keyLen, data[off..off+len)): key bytes past keyLen count as 0. */
export function toeplitzHash(key: Uint8Array, keyLen: number, data: Uint8Array, off: number, len: number): number {
  // window = key bits [n, n+32) while input bit n is looked at.
  let window = ((keyByte(key, keyLen, 0) << 24) | (keyByte(key, keyLen, 1) << 16) | (keyByte(key, keyLen, 2) << 8) | keyByte(key, keyLen, 3)) | 0;
  let hash = 0;
  for (let i = 0; i < len; i++) {
    const b = data[off + i];
    const next = keyByte(key, keyLen, i + 4);
    for (let bit = 7; bit >= 0; bit--) {
      if ((b >> bit) & 1) hash ^= window;
      window = (window << 1) | ((next >> bit) & 1);
    }
  }
  return hash >>> 0;
}

function keyByte(key: Uint8Array, keyLen: number, i: number): number {
  return i < keyLen ? key[i] : 0;
}

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const IPPROTO_TCP = 6;

/**
 * The hash of one frame under a vif's configuration, allocation-free: hash() fills `value` and
 * `type` (the _XEN_NETIF_CTRL_HASH_TYPE_* bit number a hash extra carries) and says whether the
 * frame has a hash at all.
 *
 * As xenvif_set_skb_hash: only IPv4 and IPv6 frames (by the Ethernet type: a VLAN-tagged frame has
 * none); the TCP types need a TCP header that is not in a fragment, else the frame falls back to the
 * address-only type of its family if that one is enabled; the input is source address, destination
 * address, then source and destination port, in network order. One simplification against Linux's
 * flow dissector: IPv6 extension headers are not walked (a TCP segment behind one hashes as IPv6 only).
 */
export class FlowHasher {
  value = 0;
  type = -1;
  private readonly input = new Uint8Array(36);

  hash(frame: Uint8Array, off: number, len: number, flags: number, key: Uint8Array, keyLen: number): boolean {
    this.type = -1;
    this.value = 0;
    if (len < ETH_HLEN) return false;
    const proto = (frame[off + 12] << 8) | frame[off + 13];
    const ip = off + ETH_HLEN;
    const end = off + len;
    const inp = this.input;
    if (proto === ETH_P_IP) {
      if ((flags & (XEN_NETIF_CTRL_HASH_TYPE_IPV4 | XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP)) === 0) return false;
      if (ip + 20 > end || frame[ip] >> 4 !== 4) return false;
      const ihl = (frame[ip] & 0x0f) * 4;
      if (ihl < 20 || ip + ihl > end) return false;
      // MF set or a fragment offset: a fragment (first or not) has no ports for the hash.
      const fragment = ((frame[ip + 6] & 0x3f) | frame[ip + 7]) !== 0;
      const tcp = frame[ip + 9] === IPPROTO_TCP && !fragment && ip + ihl + 4 <= end;
      for (let i = 0; i < 8; i++) inp[i] = frame[ip + 12 + i];
      if (tcp && flags & XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP) {
        for (let i = 0; i < 4; i++) inp[8 + i] = frame[ip + ihl + i];
        return this.done(toeplitzHash(key, keyLen, inp, 0, 12), _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
      }
      if (flags & XEN_NETIF_CTRL_HASH_TYPE_IPV4) return this.done(toeplitzHash(key, keyLen, inp, 0, 8), _XEN_NETIF_CTRL_HASH_TYPE_IPV4);
      return false;
    }
    if (proto === ETH_P_IPV6) {
      if ((flags & (XEN_NETIF_CTRL_HASH_TYPE_IPV6 | XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP)) === 0) return false;
      if (ip + 40 > end || frame[ip] >> 4 !== 6) return false;
      // A fragment header (or any other extension header) in front: not walked, so no ports.
      const tcp = frame[ip + 6] === IPPROTO_TCP && ip + 44 <= end;
      for (let i = 0; i < 32; i++) inp[i] = frame[ip + 8 + i];
      if (tcp && flags & XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP) {
        for (let i = 0; i < 4; i++) inp[32 + i] = frame[ip + 40 + i];
        return this.done(toeplitzHash(key, keyLen, inp, 0, 36), _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
      }
      if (flags & XEN_NETIF_CTRL_HASH_TYPE_IPV6) return this.done(toeplitzHash(key, keyLen, inp, 0, 32), _XEN_NETIF_CTRL_HASH_TYPE_IPV6);
      return false;
    }
    return false;
  }

  private done(value: number, type: number): boolean {
    this.value = value;
    this.type = type;
    return true;
  }
}
