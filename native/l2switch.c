// qnicd's in-daemon learning switch between vifs that may live on different worker threads.
//
// One shared mapping, created by the main thread, used by every worker by address (workers are
// threads of one process): a header, a port table, a MAC table and one inbound ring per port.
//  - Inbound rings are bounded in bytes, many producers (any worker's send) and one consumer (the
//    port's own receive). Producers serialise on a per-port spinlock held for one frame's copy;
//    the consumer never takes it: it reads `prod` (acquire) and publishes `cons` (release).
//  - MAC table: buckets of 4 entries, one 64-bit word per entry (MAC << 16 | port + 1) so a lookup
//    never sees a MAC paired with another MAC's port; last-seen times beside it for ageing.
//  - Wake-ups: a port is `armed` while its consumer sleeps; the first batch that enqueues to it
//    disarms it and writes its eventfd once (deduplicated per fd per batch). Busy ports get none.
//  - Offloads: a frame keeps its meta word (src/net/peer.ts FRAME_META_*: TCP GSO, checksum partial)
//    in its ring record, so a guest's 64 KiB GSO packet crosses whole. Each port says what its
//    consumer takes (sw_port_accept, TUN_F_* bits as a TAP's TUNSETOFFLOAD): a frame asking more is
//    finished on the way out of the ring, in sw_recv: segmented to MSS-sized frames, its checksum
//    completed (segment.h), as the host kernel does for a TAP whose offloads are off.
// Every entry point returns an i32: a count or -errno. Port field offsets are mirrored in src/net/switch.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "flowhash.h"
#include "segment.h"

#define SW_MAGIC 0x51535731u /* "QSW1" */
#define SW_MAX_PORTS 256
#define SW_NAME_LEN 32
#define SW_HDR_BYTES 4096
#define SW_PORT_BYTES 256
#define SW_BUCKET_BYTES 64
#define SW_SLOTS 4
#define SW_WRAP 0xFFFFFFFFu
#define SW_MAX_FRAME 65535u
#define SW_REC_HDR 8u /* u32 length, u32 meta word */
// sw_port_accept bits (linux include/uapi/linux/if_tun.h TUN_F_*).
#define SW_ACCEPT_CSUM 0x01u
#define SW_ACCEPT_TSO4 0x02u
#define SW_ACCEPT_TSO6 0x04u

struct sw_hdr {
    uint32_t magic, nports, ring_bytes, buckets;
    uint32_t age_ms, lock;
    int64_t skew_ms;      // added to the clock: lets tests age entries without waiting
    uint64_t ports_off, mac_off, ring_off, total;
    uint64_t steer_off;   // struct sw_steer per port
};

struct sw_port {
    uint32_t state;       // 0 free, 1 open (changed under the header lock and this port's lock)
    int32_t wake_fd;
    uint32_t armed;       // 1: the consumer is (about to be) asleep and wants a wake-up
    uint32_t lock;        // producers' spinlock
    uint32_t own_fd;      // 1: receive() clears wake_fd itself (not shared with other ports)
    uint32_t accept;      // SW_ACCEPT_*: offloads the consumer takes (0 at open: finished frames only)
    uint32_t base_len;    // length of the vif's name: the port name without a ":q<N>" queue suffix
    uint32_t noflood;     // 1: a vif's queue 1.. (its queue 0's port takes the vif's floods)
    char name[SW_NAME_LEN];
    // producer side, written under `lock`
    uint64_t prod;
    uint64_t rx_frames;   // frames enqueued for this port
    uint64_t rx_dropped;  // frames for this port dropped: its ring was full
    uint64_t wakes;       // eventfd writes made for this port
    uint8_t pad1[32];
    // consumer side, written by the port's owner only
    uint64_t cons;
    uint64_t rx_oversize; // frames dropped at receive(): longer than the batch stride
    uint64_t tx_frames;   // frames this port sent that reached at least one port
    uint64_t tx_dropped;  // frames this port sent that reached none (malformed, no room, no port)
    uint64_t tx_flooded;  // frames this port sent to every other port (broadcast/unknown)
    uint64_t wakes_taken;   // own eventfd: wake-ups producers took (seen when re-arming)
    uint64_t wakes_cleared; // own eventfd: sum of the values read from it
    uint32_t seg_next;    // segments of the head frame already handed out (a GSO frame segmented over several calls)
    uint32_t queue_no;    // N of a "<vif>:q<N>" port, 0 otherwise
    uint8_t pad2[64];
};

_Static_assert(sizeof(struct sw_hdr) <= SW_HDR_BYTES, "header");
_Static_assert(sizeof(struct sw_port) == SW_PORT_BYTES, "port size");
_Static_assert(offsetof(struct sw_port, prod) == 64, "prod offset");
_Static_assert(offsetof(struct sw_port, cons) == 128, "cons offset");

struct sw_bucket {
    uint64_t ent[SW_SLOTS];
    uint32_t seen[SW_SLOTS];
    uint8_t pad[16];
};
_Static_assert(sizeof(struct sw_bucket) == SW_BUCKET_BYTES, "bucket size");

/*
 * Guest-rx queue steering (netback's xenvif_select_queue): once a multi-queue vif's frontend set a
 * Toeplitz hash over its control ring, each of the vif's queue workers writes it into its port's
 * record (sw_port_steer), and a frame for any of the vif's ports goes to the port of queue
 * mapping[hash % size] (hash % queues with no table; a frame without a hash counts as 0) instead.
 * The owner writes under a sequence count; senders read without a lock and fall back to the
 * unsteered port if the count moved. port_of[] caches where each queue's port was last seen: any
 * sender may fill it, and every use checks the port still is that vif's queue.
 */
#define SW_STEER_BYTES 512
#define SW_STEER_QUEUES 64
#define SW_STEER_MAPPING 128 /* XEN_NETBK_MAX_HASH_MAPPING_SIZE */
struct sw_steer {
    uint32_t seq;         // odd while the owner writes
    uint32_t on;
    uint32_t queues, flags, size;
    uint8_t key[FH_KEY_LEN];
    uint8_t mapping[SW_STEER_MAPPING];
    uint16_t port_of[SW_STEER_QUEUES]; // port index + 1, 0: not known
};
_Static_assert(sizeof(struct sw_steer) <= SW_STEER_BYTES, "steer size");

static inline struct sw_port *port_at(struct sw_hdr *h, uint32_t i) {
    return (struct sw_port *)((char *)h + h->ports_off) + i;
}
static inline struct sw_bucket *buckets(struct sw_hdr *h) {
    return (struct sw_bucket *)((char *)h + h->mac_off);
}
static inline struct sw_steer *steer_at(struct sw_hdr *h, uint32_t i) {
    return (struct sw_steer *)((char *)h + h->steer_off + (uint64_t)i * SW_STEER_BYTES);
}
static inline uint8_t *ring_at(struct sw_hdr *h, uint32_t i) {
    return (uint8_t *)h + h->ring_off + (uint64_t)i * h->ring_bytes;
}

static void spin_lock(uint32_t *l) {
    unsigned spins = 0;
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
            // A holder preempted on a 2-vCPU VM would make us spin a whole time slice: yield.
            if (++spins > 1000) { sched_yield(); spins = 0; }
            else __builtin_ia32_pause();
        }
    }
}
static void spin_unlock(uint32_t *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

static uint32_t now_ms(struct sw_hdr *h) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); // vDSO: no syscall
    return (uint32_t)((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + h->skew_ms);
}

/**
 * Creates a switch for up to `nports` ports with `ring_bytes` of inbound ring each and
 * `buckets` MAC buckets of 4 (power of two), ageing learned MACs after `age_ms`. Anonymous shared
 * memory, reserved lazily. A frame that cannot fit a ring (over about half of it near the wrap) is
 * dropped and counted like any frame that finds the ring full. Returns the address (0 on failure; err[0] = errno).
 */
void *sw_create(uint32_t nports, uint32_t ring_bytes, uint32_t nbuckets, uint32_t age_ms, int32_t *err) {
    err[0] = 0;
    if (nports < 1 || nports > SW_MAX_PORTS || ring_bytes < 16384 || ring_bytes > (1u << 30) ||
        (ring_bytes & 7) || nbuckets < 1 || (nbuckets & (nbuckets - 1)) || nbuckets > (1u << 20)) {
        err[0] = EINVAL;
        return NULL;
    }
    uint64_t ports_off = SW_HDR_BYTES;
    uint64_t mac_off = ports_off + (uint64_t)nports * SW_PORT_BYTES;
    uint64_t steer_off = mac_off + (uint64_t)nbuckets * SW_BUCKET_BYTES;
    uint64_t ring_off = (steer_off + (uint64_t)nports * SW_STEER_BYTES + 4095) & ~4095ull;
    uint64_t total = ring_off + (uint64_t)nports * ring_bytes;
    void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) { err[0] = errno; return NULL; }
    struct sw_hdr *h = m;
    h->nports = nports;
    h->ring_bytes = ring_bytes;
    h->buckets = nbuckets;
    h->age_ms = age_ms;
    h->ports_off = ports_off;
    h->mac_off = mac_off;
    h->ring_off = ring_off;
    h->steer_off = steer_off;
    h->total = total;
    for (uint32_t i = 0; i < nports; i++) port_at(h, i)->wake_fd = -1;
    __atomic_store_n(&h->magic, SW_MAGIC, __ATOMIC_RELEASE);
    return m;
}

/** Unmaps a switch. No port may be in use. */
int sw_destroy(struct sw_hdr *h) {
    if (h->magic != SW_MAGIC) return -EINVAL;
    h->magic = 0;
    return munmap(h, h->total) < 0 ? -errno : 0;
}

/** 0 when `h` is a switch this code understands. */
int sw_check(struct sw_hdr *h) {
    return __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) == SW_MAGIC ? 0 : -EINVAL;
}

/*
 * A multi-queue vif has a port per queue, named "<vif>" (queue 0) and "<vif>:q<N>" (':' is in no
 * interface name, so no single-queue vif's port looks like a queue's). Broadcast,
 * multicast and unknown-unicast frames go to one port per vif (queue 0's), never back to another
 * queue of the sending vif: the guest must see each flooded frame once and never its own. Unicast
 * goes to the port its destination MAC was learned on, whichever queue that is.
 */
static size_t queue_base_len(const char *name, size_t nl) {
    size_t i = nl;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') i--;
    if (i == nl || i < 3 || name[i - 1] != 'q' || name[i - 2] != ':') return nl;
    return i - 2;
}

static int same_vif(const struct sw_port *a, const struct sw_port *b) {
    return a->base_len == b->base_len && memcmp(a->name, b->name, a->base_len) == 0;
}

static uint32_t queue_number(const char *name, size_t base_len, size_t nl) {
    uint32_t n = 0;
    for (size_t i = base_len + 2; i < nl && n < 100000; i++) n = n * 10 + (uint32_t)(name[i] - '0');
    return base_len < nl ? n : 0;
}

static void steer_off(struct sw_steer *st) {
    __atomic_fetch_add(&st->seq, 1, __ATOMIC_ACQ_REL);
    st->on = 0;
    __atomic_fetch_add(&st->seq, 1, __ATOMIC_RELEASE);
}

/** Opens the port named `name` (a free slot); its wake-ups go to `wake_fd`. Index or -errno. */
int sw_port_open(struct sw_hdr *h, const char *name, int32_t wake_fd, int32_t own_fd) {
    size_t nl = strnlen(name, SW_NAME_LEN);
    if (nl == 0 || nl >= SW_NAME_LEN) return -ENAMETOOLONG;
    spin_lock(&h->lock);
    int free_slot = -1;
    for (uint32_t i = 0; i < h->nports; i++) {
        struct sw_port *p = port_at(h, i);
        if (p->state && strncmp(p->name, name, SW_NAME_LEN) == 0) { spin_unlock(&h->lock); return -EEXIST; }
        if (!p->state && free_slot < 0) free_slot = (int)i;
    }
    if (free_slot < 0) { spin_unlock(&h->lock); return -ENOSPC; }
    struct sw_port *p = port_at(h, (uint32_t)free_slot);
    spin_lock(&p->lock);
    memset(p, 0, SW_PORT_BYTES); // also releases p->lock; producers check state before using the ring
    memcpy(p->name, name, nl);
    p->base_len = (uint32_t)queue_base_len(name, nl);
    p->noflood = p->base_len < nl;
    p->queue_no = queue_number(name, p->base_len, nl);
    steer_off(steer_at(h, (uint32_t)free_slot));
    p->wake_fd = wake_fd;
    p->own_fd = own_fd ? 1 : 0;
    p->armed = 1; // a fresh consumer is idle: the first frame wakes it
    __atomic_store_n(&p->state, 1, __ATOMIC_RELEASE);
    spin_unlock(&h->lock);
    return free_slot;
}

/** What port `idx`'s consumer takes (SW_ACCEPT_* bits); frames asking more are finished in sw_recv. */
int sw_port_accept(struct sw_hdr *h, uint32_t idx, uint32_t flags) {
    if (idx >= h->nports) return -EINVAL;
    __atomic_store_n(&port_at(h, idx)->accept, flags & (SW_ACCEPT_CSUM | SW_ACCEPT_TSO4 | SW_ACCEPT_TSO6), __ATOMIC_RELAXED);
    return 0;
}

/**
 * Port `idx`'s guest-rx queue choice (its owner calls it when the vif's hash configuration changes):
 * on = 0 turns it off; else frames for the vif go to queue mapping[hash % size] (size 0: hash %
 * queues), `key` the 40-octet key, `mapping` `size` queue numbers, each below `queues`.
 */
int sw_port_steer(struct sw_hdr *h, uint32_t idx, uint32_t on, uint32_t queues, uint32_t flags, uint32_t size, const uint8_t *key, const uint8_t *mapping) {
    if (idx >= h->nports) return -EINVAL;
    struct sw_steer *st = steer_at(h, idx);
    if (!on) { steer_off(st); return 0; }
    if (queues < 1 || queues > SW_STEER_QUEUES || size > SW_STEER_MAPPING) return -EINVAL;
    for (uint32_t i = 0; i < size; i++) if (mapping[i] >= queues) return -EINVAL;
    __atomic_fetch_add(&st->seq, 1, __ATOMIC_ACQ_REL);
    st->queues = queues;
    st->flags = flags;
    st->size = size;
    memcpy(st->key, key, FH_KEY_LEN);
    memcpy(st->mapping, mapping, size);
    st->on = 1;
    __atomic_fetch_add(&st->seq, 1, __ATOMIC_RELEASE);
    return 0;
}

// The port a frame for port q goes to: q itself unless q's vif steers by hash and the queue the
// hash names has an open port.
static uint32_t steer(struct sw_hdr *h, uint32_t q, const uint8_t *f, uint32_t len) {
    struct sw_steer *st = steer_at(h, q);
    uint32_t seq = __atomic_load_n(&st->seq, __ATOMIC_ACQUIRE);
    if ((seq & 1) || !__atomic_load_n(&st->on, __ATOMIC_RELAXED)) return q;
    uint32_t hash = fh_frame_hash(st->key, st->flags, f, len);
    uint32_t size = st->size, queues = st->queues;
    uint32_t t = size ? st->mapping[hash % size] : (queues ? hash % queues : 0);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&st->seq, __ATOMIC_RELAXED) != seq || t >= SW_STEER_QUEUES) return q; // rewritten meanwhile
    struct sw_port *p = port_at(h, q);
    if (t == p->queue_no) return q;
    uint32_t c = __atomic_load_n(&st->port_of[t], __ATOMIC_RELAXED);
    if (c) {
        struct sw_port *o = port_at(h, c - 1);
        if (__atomic_load_n(&o->state, __ATOMIC_ACQUIRE) && o->queue_no == t && same_vif(o, p)) return c - 1;
    }
    for (uint32_t i = 0; i < h->nports; i++) {
        struct sw_port *o = port_at(h, i);
        if (__atomic_load_n(&o->state, __ATOMIC_ACQUIRE) && o->queue_no == t && same_vif(o, p)) {
            __atomic_store_n(&st->port_of[t], (uint16_t)(i + 1), __ATOMIC_RELAXED);
            return i;
        }
    }
    return q; // that queue's port is not open (yet): the frame still reaches the guest
}

/** Closes a port: no more frames reach it and MACs learned on it are forgotten. */
int sw_port_close(struct sw_hdr *h, uint32_t idx) {
    if (idx >= h->nports) return -EINVAL;
    struct sw_port *p = port_at(h, idx);
    steer_off(steer_at(h, idx));
    spin_lock(&h->lock);
    spin_lock(&p->lock);
    __atomic_store_n(&p->state, 0, __ATOMIC_RELEASE);
    p->wake_fd = -1;
    spin_unlock(&p->lock);
    spin_unlock(&h->lock);
    struct sw_bucket *b = buckets(h);
    for (uint32_t i = 0; i < h->buckets; i++)
        for (int s = 0; s < SW_SLOTS; s++) {
            uint64_t e = __atomic_load_n(&b[i].ent[s], __ATOMIC_RELAXED);
            if (e && (e & 0xffff) == idx + 1) __atomic_compare_exchange_n(&b[i].ent[s], &e, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
        }
    return 0;
}

static inline uint64_t mac48(const uint8_t *m) {
    return ((uint64_t)m[0] << 40) | ((uint64_t)m[1] << 32) | ((uint64_t)m[2] << 24) | ((uint64_t)m[3] << 16) | ((uint64_t)m[4] << 8) | m[5];
}
static inline uint32_t bucket_of(struct sw_hdr *h, uint64_t mac) {
    return (uint32_t)((mac * 0x9E3779B97F4A7C15ull) >> 40) & (h->buckets - 1);
}

static int lookup(struct sw_hdr *h, uint64_t mac, uint32_t now) {
    struct sw_bucket *b = &buckets(h)[bucket_of(h, mac)];
    for (int s = 0; s < SW_SLOTS; s++) {
        uint64_t e = __atomic_load_n(&b->ent[s], __ATOMIC_RELAXED);
        if (e && (e >> 16) == mac) {
            if (now - __atomic_load_n(&b->seen[s], __ATOMIC_RELAXED) > h->age_ms) return -1;
            return (int)(e & 0xffff) - 1;
        }
    }
    return -1;
}

static void learn(struct sw_hdr *h, uint64_t mac, uint32_t port, uint32_t now) {
    struct sw_bucket *b = &buckets(h)[bucket_of(h, mac)];
    uint64_t want = (mac << 16) | (port + 1);
    int victim = 0;
    uint32_t oldest = 0;
    for (int s = 0; s < SW_SLOTS; s++) {
        uint64_t e = __atomic_load_n(&b->ent[s], __ATOMIC_RELAXED);
        uint32_t age = now - __atomic_load_n(&b->seen[s], __ATOMIC_RELAXED);
        if (e && (e >> 16) == mac) {
            if (e != want) __atomic_store_n(&b->ent[s], want, __ATOMIC_RELAXED); // the MAC moved ports
            if (age) __atomic_store_n(&b->seen[s], now, __ATOMIC_RELAXED);       // once per ms, not per frame
            return;
        }
        uint32_t score = e == 0 ? UINT32_MAX : age; // empty beats expired beats oldest
        if (score > oldest || s == 0) { oldest = score; victim = s; }
    }
    uint64_t e = __atomic_load_n(&b->ent[victim], __ATOMIC_RELAXED);
    __atomic_store_n(&b->seen[victim], now, __ATOMIC_RELAXED);
    // Lost race with another learner: the next frame from this MAC learns it.
    __atomic_compare_exchange_n(&b->ent[victim], &e, want, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

// Copies one frame into port q's ring. 1 if enqueued, 0 if dropped (full or closed).
static int enqueue(struct sw_hdr *h, uint32_t q, const uint8_t *f, uint32_t len, uint32_t meta) {
    struct sw_port *p = port_at(h, q);
    uint32_t R = h->ring_bytes;
    uint32_t need = SW_REC_HDR + ((len + 7) & ~7u);
    spin_lock(&p->lock);
    if (!__atomic_load_n(&p->state, __ATOMIC_ACQUIRE)) { spin_unlock(&p->lock); return 0; }
    uint64_t prod = p->prod;
    uint64_t cons = __atomic_load_n(&p->cons, __ATOMIC_ACQUIRE);
    uint32_t pos = (uint32_t)(prod % R);
    uint32_t contiguous = R - pos;
    uint32_t total = need <= contiguous ? need : contiguous + need;
    if ((prod - cons) + total > R) {
        p->rx_dropped++;
        spin_unlock(&p->lock);
        return 0;
    }
    uint8_t *ring = ring_at(h, q);
    if (need > contiguous) {
        *(uint32_t *)(ring + pos) = SW_WRAP; // the rest of the ring is skipped
        prod += contiguous;
        pos = 0;
    }
    *(uint32_t *)(ring + pos) = len;
    *(uint32_t *)(ring + pos + 4) = meta;
    memcpy(ring + pos + SW_REC_HDR, f, len);
    __atomic_store_n(&p->prod, prod + need, __ATOMIC_RELEASE);
    p->rx_frames++;
    spin_unlock(&p->lock);
    return 1;
}

/**
 * Port `src` sends frames 0..count-1: each frame's source MAC is learned on `src`, then it goes to
 * the port its destination MAC was learned on, or to every other open port (broadcast, multicast,
 * unknown or aged-out unicast). Frames to `src`'s own MACs are dropped. After the batch, each
 * destination port that was asleep gets one eventfd write. `meta` (NULL: all 0) rides along with
 * each frame. Returns frames that reached >= 1 port.
 */
int sw_send(struct sw_hdr *h, uint32_t src, const uint8_t *base, uint32_t stride, const uint32_t *lens, uint32_t count, const uint32_t *meta) {
    if (src >= h->nports) return -EINVAL;
    struct sw_port *sp = port_at(h, src);
    uint32_t now = now_ms(h);
    uint64_t touched[SW_MAX_PORTS / 64] = { 0 };
    uint16_t open[SW_MAX_PORTS];
    uint32_t nopen = 0;
    for (uint32_t q = 0; q < h->nports; q++) {
        struct sw_port *p = port_at(h, q);
        if (q != src && __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) && !p->noflood && !same_vif(p, sp)) open[nopen++] = (uint16_t)q;
    }
    uint32_t sent = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *f = base + (size_t)i * stride;
        uint32_t len = lens[i], m = meta ? meta[i] : 0;
        if (len < 14 || len > stride || len > SW_MAX_FRAME) { sp->tx_dropped++; continue; }
        if (!(f[6] & 1)) learn(h, mac48(f + 6), src, now); // a multicast source is bogus: never learned
        int q = (f[0] & 1) ? -1 : lookup(h, mac48(f), now);
        int delivered = 0;
        if (q >= 0) {
            if ((uint32_t)q != src) {
                uint32_t d = steer(h, (uint32_t)q, f, len);
                if (enqueue(h, d, f, len, m)) {
                    delivered = 1;
                    touched[d >> 6] |= 1ull << (d & 63);
                }
            }
        } else {
            for (uint32_t k = 0; k < nopen; k++) {
                uint32_t d = steer(h, open[k], f, len);
                if (enqueue(h, d, f, len, m)) {
                    delivered = 1;
                    touched[d >> 6] |= 1ull << (d & 63);
                }
            }
            sp->tx_flooded++;
        }
        if (delivered) sent++;
        else sp->tx_dropped++;
    }
    sp->tx_frames += sent;
    // Take every sleeping port's wake-up first, write the eventfds after. Ports sharing one eventfd
    // (a worker's) get one write, which must come after ALL their arms were taken: a write made
    // between two takes can be consumed (drain + receive) before the second take, leaving that port
    // disarmed with nothing owed to wake it again (seen: a vif on the same worker stopped receiving).
    int32_t woken[SW_MAX_PORTS];
    uint32_t nwoken = 0;
    for (uint32_t w = 0; w < SW_MAX_PORTS / 64; w++)
        for (uint64_t bits = touched[w]; bits; bits &= bits - 1) {
            uint32_t q = w * 64 + (uint32_t)__builtin_ctzll(bits);
            struct sw_port *p = port_at(h, q);
            if (!__atomic_exchange_n(&p->armed, 0, __ATOMIC_SEQ_CST)) continue; // awake: it will look again
            int32_t fd = __atomic_load_n(&p->wake_fd, __ATOMIC_RELAXED);
            __atomic_fetch_add(&p->wakes, 1, __ATOMIC_RELAXED);
            int dup = 0;
            for (uint32_t k = 0; k < nwoken; k++) dup |= woken[k] == fd;
            if (dup || fd < 0) continue;
            woken[nwoken++] = fd;
        }
    for (uint32_t k = 0; k < nwoken; k++) {
        uint64_t one = 1;
        if (write(woken[k], &one, sizeof(one)) < 0) { /* EAGAIN: counter saturated, already readable */ }
    }
    return (int)sent;
}

/**
 * Port `dst` takes up to `capacity` frames from its ring into the batch. When the ring is empty it
 * arms its wake-up and looks once more, so a frame enqueued meanwhile is never left without one.
 *
 * Its own eventfd is cleared here, by accounting: every wake-up a producer takes (armed 1 -> 0) is
 * exactly one eventfd write of 1. The consumer sees a taken wake-up when re-arming finds armed == 0
 * and reads the eventfd while it has seen more wake-ups taken than it has read. A write still in
 * flight (EAGAIN now) stays owed and is read on the wake-up it causes, so the fd is never left
 * readable with nothing to do (a busy loop), and a read that also swallowed the write for the arm
 * just set makes it re-arm (else that arm is spent and the port would never be woken again).
 *
 * meta (NULL: not wanted) gets each frame's meta word. A frame asking what this port does not
 * accept (sw_port_accept) is finished here: a TCP GSO frame becomes its MSS-sized segments, one
 * batch slot each (those that do not fit this batch go out on the next call, the frame staying at
 * the head of the ring meanwhile; one that cannot be segmented is dropped as rx_oversize), a
 * checksum-partial frame gets its checksum; those carry meta 0.
 */
int sw_recv(struct sw_hdr *h, uint32_t dst, uint8_t *base, uint32_t stride, uint32_t *lens, uint32_t capacity, uint32_t *meta) {
    if (dst >= h->nports) return -EINVAL;
    struct sw_port *p = port_at(h, dst);
    uint8_t *ring = ring_at(h, dst);
    uint32_t R = h->ring_bytes;
    uint64_t cons = p->cons;
    uint32_t got = 0;
    int settled = 0, full = 0;
    for (int rounds = 0; rounds < 64 && !settled; rounds++) {
        uint64_t prod = __atomic_load_n(&p->prod, __ATOMIC_ACQUIRE);
        while (got < capacity && cons != prod) {
            uint32_t pos = (uint32_t)(cons % R);
            uint32_t len = *(uint32_t *)(ring + pos);
            if (len == SW_WRAP) { cons += R - pos; continue; }
            uint32_t m = *(uint32_t *)(ring + pos + 4);
            const uint8_t *rec = ring + pos + SW_REC_HDR;
            uint32_t gso = SEG_META_GSO_TYPE(m);
            if (gso && !(p->accept & (gso == 1 ? SW_ACCEPT_TSO4 : gso == 2 ? SW_ACCEPT_TSO6 : 0))) {
                uint32_t total = 0;
                int n = seg_tcp(rec, len, m, p->seg_next, base + (size_t)got * stride, stride, lens + got, capacity - got, &total);
                if (n < 0) p->rx_oversize++;
                else {
                    if (meta) memset(meta + got, 0, (size_t)n * sizeof(uint32_t));
                    got += (uint32_t)n;
                    if (p->seg_next + (uint32_t)n < total) {
                        p->seg_next += (uint32_t)n; // the rest of its segments go out on the next call
                        full = 1;
                        break;
                    }
                }
                p->seg_next = 0;
            } else if (len <= stride) {
                uint8_t *f = base + (size_t)got * stride;
                memcpy(f, rec, len);
                if ((m & SEG_META_CSUM) && !(p->accept & SW_ACCEPT_CSUM)) {
                    seg_csum_fill(f, len);
                    m = 0;
                } else if (gso == 0) m &= SEG_META_CSUM; // nothing else rides without GSO
                if (meta) meta[got] = m;
                lens[got++] = len;
            } else p->rx_oversize++;
            cons += SW_REC_HDR + ((len + 7) & ~7u);
        }
        __atomic_store_n(&p->cons, cons, __ATOMIC_RELEASE);
        if (got == capacity) { settled = 1; break; } // more may wait: the caller comes back before sleeping
        if (full) {
            // A GSO frame's segments wait for a fresh batch, and the caller (short of capacity) would
            // sleep: arm, then take our own wake-up and write it, as when producers keep racing below.
            if (!__atomic_exchange_n(&p->armed, 1, __ATOMIC_SEQ_CST)) p->wakes_taken++;
            uint64_t one = 1;
            if (__atomic_exchange_n(&p->armed, 0, __ATOMIC_SEQ_CST) && p->wake_fd >= 0 && write(p->wake_fd, &one, sizeof(one)) < 0) { /* saturated: readable anyway */ }
            settled = 1;
            break;
        }
        if (!__atomic_exchange_n(&p->armed, 1, __ATOMIC_SEQ_CST)) p->wakes_taken++;
        if (p->own_fd && p->wake_fd >= 0 && p->wakes_cleared < p->wakes_taken) {
            uint64_t v;
            if (read(p->wake_fd, &v, sizeof(v)) == sizeof(v)) p->wakes_cleared += v;
        }
        if (p->wakes_cleared > p->wakes_taken) continue; // swallowed this arm's write: drain, re-arm
        if (__atomic_load_n(&p->prod, __ATOMIC_ACQUIRE) == cons) settled = 1; // empty and armed: sleep
    }
    if (!settled && __atomic_exchange_n(&p->armed, 0, __ATOMIC_SEQ_CST)) {
        // Producers kept racing every round (or a flood of frames over our stride): take our own
        // wake-up so the worker comes back for the frames left, instead of sleeping past them.
        uint64_t one = 1;
        if (p->wake_fd >= 0 && write(p->wake_fd, &one, sizeof(one)) < 0) { /* saturated: readable anyway */ }
    }
    return (int)got;
}

/**
 * Index of the open port named `name`, or -ENOENT. For the main thread after a worker died: the
 * ports its vifs held are still open (nobody closed them) and must be closed by name before the
 * vifs reopen them on another worker.
 */
int sw_port_find(struct sw_hdr *h, const char *name) {
    for (uint32_t i = 0; i < h->nports; i++) {
        struct sw_port *p = port_at(h, i);
        if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) && strncmp(p->name, name, SW_NAME_LEN) == 0) return (int)i;
    }
    return -ENOENT;
}

/** Learned port of a MAC (6 bytes), -1 if unknown or aged out (tests, /vifs). */
int sw_lookup(struct sw_hdr *h, const uint8_t *mac) {
    return lookup(h, mac48(mac), now_ms(h));
}

/** A nonblocking eventfd for a port's (or a worker's) wake-ups, or -errno. */
int sw_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int sw_close_fd(int fd) {
    return close(fd) < 0 ? -errno : 0;
}
