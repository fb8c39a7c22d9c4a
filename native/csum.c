// L4 checksum fill for guest tx frames flagged NETTXF_csum_blank (the guest offloaded its TCP/UDP
// checksum, as Linux's CHECKSUM_PARTIAL). The field may hold the guest's pseudo-header sum or
// anything else, so it is recomputed from scratch: pseudo-header + whole L4 segment.
//
// Guest frames are hostile: every header read is bounds-checked against the frame length and the
// IP lengths; anything that does not parse (truncated, inconsistent lengths, fragments, jumbograms,
// too many IPv6 extension headers) is left untouched and reported with a status code.
#include <stdint.h>
#include <string.h>

#include "l4.h"

/** Fills the TCP/UDP checksum of one frame of `len` bytes. Returns a CS_* status. */
int csum_fill(uint8_t *f, uint32_t len) {
    struct l4_info l;
    int st = l4_locate(f, len, &l);
    if (st != CS_FILLED) return st;
    uint32_t field = l.l4 + (l.proto == 6 ? 16 : 6);
    f[field] = 0;
    f[field + 1] = 0;
    uint16_t c = (uint16_t)~fold(raw_sum(f + l.l4, l.l4len, l.pseudo));
    if (l.proto == 17 && c == 0) c = 0xffff; // UDP: 0 means "no checksum"
    memcpy(f + field, &c, 2);
    return CS_FILLED;
}

/**
 * Fills checksums of the frames of a batch whose status[i] is nonzero on entry; status[i] gets the
 * CS_* result (frames not asked stay 0). A length over the stride counts as truncated.
 * Returns how many were filled.
 */
int csum_fill_batch(uint8_t *base, uint32_t stride, const uint32_t *lens, uint32_t count, uint8_t *status) {
    int filled = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (!status[i]) continue;
        uint32_t len = lens[i];
        status[i] = len > stride ? CS_TRUNCATED : (uint8_t)csum_fill(base + (size_t)i * stride, len);
        filled += status[i] == CS_FILLED;
    }
    return filled;
}
