// The netif control ring's flow hash in C (the switch's guest-rx queue choice, native/l2switch.c):
// the same function as src/net/toeplitz.ts, which test/net/switch-steering.test.ts holds it to.
//  - Toeplitz as xen/include/public/io/netif.h defines it (xen_netif_toeplitz_hash): for each set
//    input bit n, XOR in the key's bits [n, n+32); key octets past its length count as 0.
//  - The input as Linux netback's xenvif_set_skb_hash (drivers/net/xen-netback/hash.c) picks it:
//    IPv4 / IPv6 by the Ethernet type, source then destination address, then the TCP ports when the
//    TCP type is enabled and the segment is no fragment (IPv6: the next header is TCP; extension
//    headers are not walked), else the addresses alone when that type is enabled, else no hash.
#ifndef QNICD_FLOWHASH_H
#define QNICD_FLOWHASH_H
#include <stdint.h>

#define FH_KEY_LEN 40 /* XEN_NETBK_MAX_HASH_KEY_SIZE */
#define FH_IPV4 0x1u      /* XEN_NETIF_CTRL_HASH_TYPE_IPV4 */
#define FH_IPV4_TCP 0x2u  /* XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP */
#define FH_IPV6 0x4u      /* XEN_NETIF_CTRL_HASH_TYPE_IPV6 */
#define FH_IPV6_TCP 0x8u  /* XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP */

static inline uint32_t fh_toeplitz(const uint8_t key[FH_KEY_LEN], const uint8_t *in, uint32_t len) {
    uint32_t window = ((uint32_t)key[0] << 24) | ((uint32_t)key[1] << 16) | ((uint32_t)key[2] << 8) | key[3];
    uint32_t hash = 0;
    for (uint32_t i = 0; i < len; i++) {
        uint8_t next = i + 4 < FH_KEY_LEN ? key[i + 4] : 0;
        for (int bit = 7; bit >= 0; bit--) {
            if ((in[i] >> bit) & 1) hash ^= window;
            window = (window << 1) | ((next >> bit) & 1u);
        }
    }
    return hash;
}

// The hash of Ethernet frame f[0..len) under `flags`, or 0 when it has none (Linux clears the
// skb's hash then, and netback's queue choice reads 0).
static inline uint32_t fh_frame_hash(const uint8_t key[FH_KEY_LEN], uint32_t flags, const uint8_t *f, uint32_t len) {
    uint8_t in[36];
    if (len < 14) return 0;
    uint32_t type = ((uint32_t)f[12] << 8) | f[13];
    const uint8_t *ip = f + 14;
    uint32_t iplen = len - 14;
    if (type == 0x0800) {
        if (!(flags & (FH_IPV4 | FH_IPV4_TCP)) || iplen < 20 || (ip[0] >> 4) != 4) return 0;
        uint32_t ihl = (ip[0] & 0x0fu) * 4;
        if (ihl < 20 || ihl > iplen) return 0;
        int fragment = ((ip[6] & 0x3f) | ip[7]) != 0;
        int tcp = ip[9] == 6 && !fragment && ihl + 4 <= iplen;
        for (int i = 0; i < 8; i++) in[i] = ip[12 + i];
        if (tcp && (flags & FH_IPV4_TCP)) {
            for (int i = 0; i < 4; i++) in[8 + i] = ip[ihl + i];
            return fh_toeplitz(key, in, 12);
        }
        return (flags & FH_IPV4) ? fh_toeplitz(key, in, 8) : 0;
    }
    if (type == 0x86dd) {
        if (!(flags & (FH_IPV6 | FH_IPV6_TCP)) || iplen < 40 || (ip[0] >> 4) != 6) return 0;
        int tcp = ip[6] == 6 && iplen >= 44;
        for (int i = 0; i < 32; i++) in[i] = ip[8 + i];
        if (tcp && (flags & FH_IPV6_TCP)) {
            for (int i = 0; i < 4; i++) in[32 + i] = ip[40 + i];
            return fh_toeplitz(key, in, 36);
        }
        return (flags & FH_IPV6) ? fh_toeplitz(key, in, 32) : 0;
    }
    return 0;
}
#endif
