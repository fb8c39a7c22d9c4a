// Which tx queue a frame leaves on, after xennet_select_queue (drivers/net/xen-netfront.c): one
// queue takes everything; with more, skb_get_hash(skb) % num_queues. The skb hash is the flow
// dissector's: IPv4/IPv6 addresses, the IP protocol and, for TCP, UDP, UDP-Lite, SCTP and DCCP in an
// unfragmented packet, the two ports, put in one order whichever way the packet goes
// (__flow_hash_consistentify) so both directions of a connection hash alike. A frame the dissector
// finds no flow in (ARP, anything not IP) hashes to 0 here, so it goes to queue 0.
//
// Linux hashes with siphash keyed by a random boot-time seed; the sim uses a 32-bit murmur3-style
// mix with a seed that defaults to a constant, so a run is reproducible. What matters to a backend
// is the property both share: one flow always uses one queue, and flows spread over the queues.
//
// Reads the frame's bytes in place: no allocation per frame.

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
/** Protocols whose first four bytes are source and destination ports (skb_flow_get_ports' users). */
const PORT_PROTOCOLS = new Set([6 /* TCP */, 17 /* UDP */, 33 /* DCCP */, 132 /* SCTP */, 136 /* UDP-Lite */]);

/** The sim's default seed (Linux: net_get_random_once at boot). */
export const DEFAULT_FLOW_HASH_SEED = 0x5eed_f10e;

function be32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, len: number): number {
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  // __flow_hash_from_keys: a flow's hash is never 0 (0 means "no hash").
  return h >>> 0 || 1;
}

/**
 * Compares the `words` 32-bit words at `a` and `b` in `f`: negative when the address at a sorts
 * first. Used to put a flow's two ends in one order.
 */
function cmpAddr(f: Uint8Array, a: number, b: number, words: number): number {
  for (let i = 0; i < words; i++) {
    const d = be32(f, a + 4 * i) - be32(f, b + 4 * i);
    if (d !== 0) return d;
  }
  return 0;
}

/** The flow hash of an Ethernet frame, or 0 when it carries no IPv4/IPv6 flow. */
export function flowHash(f: Uint8Array, seed = DEFAULT_FLOW_HASH_SEED): number {
  if (f.length < ETH_HLEN) return 0;
  let off = 12;
  let type = (f[off]! << 8) | f[off + 1]!;
  // Up to two VLAN tags (802.1ad outer, 802.1Q inner), as the dissector skips them.
  for (let tags = 0; tags < 2 && (type === ETH_P_8021Q || type === ETH_P_8021AD) && f.length >= off + 6; tags++) {
    off += 4;
    type = (f[off]! << 8) | f[off + 1]!;
  }
  const l3 = off + 2;
  let words: number;
  let src: number;
  let dst: number;
  let proto: number;
  let l4: number;
  if (type === ETH_P_IP) {
    if (f.length < l3 + 20 || f[l3]! >> 4 !== 4) return 0;
    const ihl = (f[l3]! & 0x0f) * 4;
    if (ihl < 20 || f.length < l3 + ihl) return 0;
    proto = f[l3 + 9]!;
    src = l3 + 12;
    dst = l3 + 16;
    words = 1;
    const frag = ((f[l3 + 6]! << 8) | f[l3 + 7]!) & 0x3fff; // MF flag + fragment offset
    l4 = frag === 0 ? l3 + ihl : -1;
  } else if (type === ETH_P_IPV6) {
    if (f.length < l3 + 40 || f[l3]! >> 4 !== 6) return 0;
    proto = f[l3 + 6]!;
    src = l3 + 8;
    dst = l3 + 24;
    words = 4;
    l4 = l3 + 40;
  } else return 0;
  let sport = 0;
  let dport = 0;
  if (l4 >= 0 && PORT_PROTOCOLS.has(proto) && f.length >= l4 + 4) {
    sport = (f[l4]! << 8) | f[l4 + 1]!;
    dport = (f[l4 + 2]! << 8) | f[l4 + 3]!;
  }
  // __flow_hash_consistentify: the lower address (then the lower port) first.
  const c = cmpAddr(f, src, dst, words);
  if (c > 0 || (c === 0 && dport < sport)) {
    const t = src;
    src = dst;
    dst = t;
    const p = sport;
    sport = dport;
    dport = p;
  }
  let h = seed | 0;
  for (let i = 0; i < words; i++) h = mix(h, be32(f, src + 4 * i));
  for (let i = 0; i < words; i++) h = mix(h, be32(f, dst + 4 * i));
  h = mix(h, ((sport << 16) | dport) >>> 0);
  h = mix(h, proto);
  return finish(h, words * 8 + 8);
}

/** xennet_select_queue: queue 0 when there is one, else the flow hash modulo the queue count. */
export function selectQueue(f: Uint8Array, numQueues: number, seed = DEFAULT_FLOW_HASH_SEED): number {
  if (numQueues <= 1) return 0;
  return flowHash(f, seed) % numQueues;
}
