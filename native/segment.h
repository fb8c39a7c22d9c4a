// Software TCP segmentation and checksum completion, for a receiver that cannot take what a frame
// asks of it: the in-daemon switch (l2switch.c) hands a port whose guest did not negotiate GSO (or
// checksum offload) finished, at most MSS-sized frames, as the host kernel does for a TAP whose
// offloads are off (Linux's skb_segment / tcp_gso_segment: each segment gets the headers, its slice
// of the payload, IPv4 total length and id + k, IPv6 payload length, sequence number + k * MSS, FIN
// and PSH only on the last, CWR only on the first, and complete checksums).
//
// The frame comes from another guest's tx: hostile. Every header is found through l4_locate's
// bounds-checked rules; anything that does not parse as TCP over the IP version the GSO type names
// is refused (-1), and no segment is written past its slot.
#ifndef QNICD_SEGMENT_H
#define QNICD_SEGMENT_H
#include <stdint.h>
#include <string.h>

#include "l4.h"

// Meta word of a frame (src/net/peer.ts FRAME_META_*).
#define SEG_META_GSO_SIZE(m) ((m) & 0xffffu)
#define SEG_META_GSO_TYPE(m) (((m) >> 16) & 0xfu)
#define SEG_META_CSUM (1u << 24)

// Offset of the IP header: after the Ethernet header and up to two VLAN tags (as l4_locate walks them).
static inline uint32_t seg_l3_offset(const uint8_t *f, uint32_t len) {
    uint32_t off = 12;
    uint16_t type = be16(f + off);
    for (int tags = 0; (type == 0x8100 || type == 0x88a8) && tags < MAX_VLAN_TAGS && off + 6 <= len; tags++) {
        off += 4;
        type = be16(f + off);
    }
    return off + 2;
}

// Completes the TCP/UDP checksum of a frame in place (pseudo-header + whole segment); a frame that
// does not parse is left as it is (the same rule as the guest-tx software fill, csum.c).
static inline void seg_csum_fill(uint8_t *f, uint32_t len) {
    struct l4_info l;
    if (l4_locate(f, len, &l) != CS_FILLED) return;
    uint32_t field = l.l4 + (l.proto == 6 ? 16 : 6);
    f[field] = 0;
    f[field + 1] = 0;
    uint16_t c = (uint16_t)~fold(raw_sum(f + l.l4, l.l4len, l.pseudo));
    if (l.proto == 17 && c == 0) c = 0xffff;
    memcpy(f + field, &c, 2);
}

/**
 * Cuts the TCP GSO frame `f` (`len` bytes, meta word `meta`) into segments of at most MSS payload
 * bytes, and writes segments first, first + 1, ... at out + k * stride (lens[k] each), at most `room`
 * of them (a caller short of room continues later from where it stopped). *total gets how many the
 * frame makes. Returns how many were written, or -1 when the frame cannot be segmented (dropped).
 */
static inline int seg_tcp(const uint8_t *f, uint32_t len, uint32_t meta, uint32_t first, uint8_t *out, uint32_t stride, uint32_t *lens, uint32_t room, uint32_t *total) {
    struct l4_info l;
    if (l4_locate(f, len, &l) != CS_FILLED || l.proto != 6) return -1;
    uint32_t type = SEG_META_GSO_TYPE(meta), mss = SEG_META_GSO_SIZE(meta);
    if (mss == 0 || (type != 1 && type != 2) || (type == 2) != (l.ipv6 != 0)) return -1;
    uint32_t doff = (uint32_t)(f[l.l4 + 12] >> 4) * 4;
    if (doff < 20 || doff > l.l4len) return -1;
    uint32_t hdr = l.l4 + doff, payload = l.l4len - doff;
    uint32_t nseg = payload == 0 ? 1 : (payload + mss - 1) / mss;
    if (hdr + (payload < mss ? payload : mss) > stride) return -1;
    *total = nseg;
    if (first >= nseg) return 0;
    uint32_t last = nseg - first > room ? first + room : nseg;
    uint32_t ip = seg_l3_offset(f, len);
    uint32_t seq0 = (uint32_t)be16(f + l.l4 + 4) << 16 | be16(f + l.l4 + 6);
    uint16_t id0 = l.ipv6 ? 0 : be16(f + ip + 4);
    uint32_t ihl = l.ipv6 ? 0 : (uint32_t)(f[ip] & 0x0f) * 4;
    // The pseudo-header without the original L4 length: each segment adds its own.
    uint64_t pseudo = l.pseudo - net16(l.l4len & 0xffff) - net16(l.l4len >> 16);
    for (uint32_t k = first; k < last; k++) {
        uint32_t from = k * mss;
        uint32_t chunk = payload - from < mss ? payload - from : mss;
        uint8_t *o = out + (size_t)(k - first) * stride;
        uint32_t seglen = hdr + chunk;
        memcpy(o, f, hdr);
        memcpy(o + hdr, f + hdr + from, chunk);
        lens[k - first] = seglen;
        uint32_t l4len = seglen - l.l4;
        if (l.ipv6) {
            uint32_t plen = seglen - ip - 40;
            o[ip + 4] = (uint8_t)(plen >> 8);
            o[ip + 5] = (uint8_t)plen;
        } else {
            uint32_t tot = seglen - ip;
            uint16_t id = (uint16_t)(id0 + k);
            o[ip + 2] = (uint8_t)(tot >> 8);
            o[ip + 3] = (uint8_t)tot;
            o[ip + 4] = (uint8_t)(id >> 8);
            o[ip + 5] = (uint8_t)id;
            o[ip + 10] = 0;
            o[ip + 11] = 0;
            uint16_t c = (uint16_t)~fold(raw_sum(o + ip, ihl, 0));
            memcpy(o + ip + 10, &c, 2);
        }
        uint32_t seq = seq0 + from;
        o[l.l4 + 4] = (uint8_t)(seq >> 24);
        o[l.l4 + 5] = (uint8_t)(seq >> 16);
        o[l.l4 + 6] = (uint8_t)(seq >> 8);
        o[l.l4 + 7] = (uint8_t)seq;
        if (k + 1 < nseg) o[l.l4 + 13] &= (uint8_t)~0x09; // FIN, PSH: the last segment's
        if (k > 0) o[l.l4 + 13] &= (uint8_t)~0x80;        // CWR: the first segment's
        o[l.l4 + 16] = 0;
        o[l.l4 + 17] = 0;
        uint16_t c = (uint16_t)~fold(raw_sum(o + l.l4, l4len, pseudo + net16(l4len & 0xffff) + net16(l4len >> 16)));
        memcpy(o + l.l4 + 16, &c, 2);
    }
    return (int)(last - first);
}

#endif
