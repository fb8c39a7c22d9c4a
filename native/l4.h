// Locating the L4 header of a guest frame, shared by the software checksum fill (csum.c) and the
// TAP's virtio_net_hdr (peerio.c: csum_start/csum_offset/hdr_len for checksum offload and GSO), so
// both read a hostile frame by the same bounds-checked rules.
#ifndef QNICD_L4_H
#define QNICD_L4_H
#include <stdint.h>
#include <string.h>

enum {
    CS_NONE = 0,      // not asked
    CS_FILLED = 1,    // checksum written
    CS_NOT_L4 = 2,    // not TCP/UDP over IPv4/IPv6 (ARP, ICMP, ...): nothing to fill
    CS_FRAGMENT = 3,  // an IP fragment: the checksum covers the whole datagram, so it cannot be filled here
    CS_TRUNCATED = 4, // a header or the L4 segment reaches past the frame
    CS_MALFORMED = 5, // inconsistent header fields (version, IHL, UDP length, jumbogram, routing header in use)
};

#define MAX_VLAN_TAGS 2
#define MAX_V6_EXT 8

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

// Ones'-complement sum of raw bytes loaded little-endian (RFC 1071: byte-order independent, so the
// result is stored back in memory order without swapping). Returns an unfolded 64-bit sum.
static inline uint64_t raw_sum(const uint8_t *p, uint32_t n, uint64_t sum) {
    while (n >= 32) {
        uint64_t a, b, c, d;
        memcpy(&a, p, 8); memcpy(&b, p + 8, 8); memcpy(&c, p + 16, 8); memcpy(&d, p + 24, 8);
        // Sum 32-bit halves so carries stay inside 64 bits for any frame length.
        sum += (a & 0xffffffff) + (a >> 32) + (b & 0xffffffff) + (b >> 32) + (c & 0xffffffff) + (c >> 32) + (d & 0xffffffff) + (d >> 32);
        p += 32;
        n -= 32;
    }
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        sum += w;
        p += 2;
        n -= 2;
    }
    if (n) sum += p[0]; // the odd byte is the high half of a big-endian word: low half of a LE load
    return sum;
}

static inline uint16_t fold(uint64_t s) {
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

// A big-endian 16-bit value as raw_sum would have loaded it from memory.
static inline uint64_t net16(uint32_t v) { return (uint64_t)(((v & 0xff) << 8) | ((v >> 8) & 0xff)); }

struct l4_info {
    uint32_t l4;     // offset of the TCP/UDP header in the frame
    uint32_t l4len;  // L4 header + payload, from the IP lengths (Ethernet padding excluded)
    uint8_t proto;   // 6 TCP, 17 UDP
    uint8_t ipv6;
    uint64_t pseudo; // unfolded raw_sum of the pseudo-header (addresses, protocol, L4 length)
};

/**
 * Finds the TCP/UDP header of a frame of `len` bytes (after up to two VLAN tags, IPv4 or IPv6 with
 * extension headers). CS_FILLED when found (nothing is written), else why not (a CS_* status).
 */
static inline int l4_locate(const uint8_t *f, uint32_t len, struct l4_info *out) {
    if (len < 14) return CS_TRUNCATED;
    uint32_t off = 12;
    uint16_t type = be16(f + off);
    for (int tags = 0; (type == 0x8100 || type == 0x88a8) && tags < MAX_VLAN_TAGS; tags++) {
        off += 4;
        if (off + 2 > len) return CS_TRUNCATED;
        type = be16(f + off);
    }
    off += 2;
    uint32_t l4, l4len;
    uint8_t proto;
    uint64_t sum;
    if (type == 0x0800) {
        if (off + 20 > len) return CS_TRUNCATED;
        const uint8_t *ip = f + off;
        uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
        if ((ip[0] >> 4) != 4 || ihl < 20) return CS_MALFORMED;
        uint32_t tot = be16(ip + 2);
        if (tot < ihl) return CS_MALFORMED;
        if (off + tot > len) return CS_TRUNCATED; // past tot is Ethernet padding: ignored
        if (be16(ip + 6) & 0x3fff) return CS_FRAGMENT;
        proto = ip[9];
        l4 = off + ihl;
        l4len = tot - ihl;
        sum = raw_sum(ip + 12, 8, 0); // source and destination addresses
    } else if (type == 0x86dd) {
        if (off + 40 > len) return CS_TRUNCATED;
        const uint8_t *ip = f + off;
        if ((ip[0] >> 4) != 6) return CS_MALFORMED;
        uint32_t plen = be16(ip + 4);
        if (plen == 0) return CS_MALFORMED; // a jumbogram's length is in a hop-by-hop option: not supported
        uint32_t end = off + 40 + plen;
        if (end > len) return CS_TRUNCATED;
        uint8_t nh = ip[6];
        uint32_t p = off + 40;
        int ext = 0;
        for (;; ext++) {
            if (ext > MAX_V6_EXT) return CS_MALFORMED;
            if (nh == 0 || nh == 43 || nh == 60) { // hop-by-hop, routing, destination options
                if (p + 8 > end) return CS_TRUNCATED;
                // A routing header with segments left means the pseudo-header's destination is
                // not ip6->daddr; the guest's stack would not offload that, so refuse it.
                if (nh == 43 && f[p + 3] != 0) return CS_MALFORMED;
                uint32_t hlen = ((uint32_t)f[p + 1] + 1) * 8;
                if (p + hlen > end) return CS_TRUNCATED;
                nh = f[p];
                p += hlen;
            } else if (nh == 44) { // fragment
                if (p + 8 > end) return CS_TRUNCATED;
                if (be16(f + p + 2) & 0xfff9) return CS_FRAGMENT; // offset or more-fragments set
                nh = f[p];
                p += 8;
            } else if (nh == 51) { // authentication header: length in 4-byte units, minus 2
                if (p + 8 > end) return CS_TRUNCATED;
                uint32_t hlen = ((uint32_t)f[p + 1] + 2) * 4;
                if (p + hlen > end) return CS_TRUNCATED;
                nh = f[p];
                p += hlen;
            } else break;
        }
        proto = nh;
        l4 = p;
        l4len = end - p;
        sum = raw_sum(ip + 8, 32, 0);
    } else {
        return CS_NOT_L4;
    }
    if (proto == 6) {
        if (l4len < 20) return CS_TRUNCATED;
    } else if (proto == 17) {
        if (l4len < 8) return CS_TRUNCATED;
        if (be16(f + l4 + 4) != l4len) return CS_MALFORMED; // UDP length must match the IP payload
    } else {
        return CS_NOT_L4;
    }
    out->l4 = l4;
    out->l4len = l4len;
    out->proto = proto;
    out->ipv6 = type == 0x86dd;
    // Pseudo-header: addresses, then protocol and L4 length as big-endian words.
    out->pseudo = sum + net16(proto) + net16(l4len & 0xffff) + net16(l4len >> 16);
    return CS_FILLED;
}

#endif
