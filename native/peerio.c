// Frame I/O on a TAP fd for qnicd's peers: a whole batch of frames per call, through io_uring (one
// io_uring_enter per batch: N writes or N reads submitted, N completions waited for) or, where
// io_uring is unavailable (io_uring_disabled sysctl, seccomp, ENOSYS), plain read()/write() loops.
// Where io_uring works but the TAP driver refuses RWF_NOWAIT (Debian 12's 6.1 kernel), writes still
// go through the ring (without the flag: see pio_send) and only reads fall back to the plain loop.
// BUN-FACTS: a syscall costs 150-330 ns here, so the batch, not the frame, must pay for it.
//
// Raw io_uring: io_uring_setup + mmap of the SQ/CQ rings and SQE array, io_uring_enter; no liburing.
// A batch is `count` frames at base + i*stride with lengths in lens[i] (the peer.ts FrameBatch).
// Every entry point returns an i32: a count (>= 0) or -errno.
//
// A TAP opened with IFF_VNET_HDR (the backend's, native/tap.c) carries a virtio_net_hdr before
// every frame in both directions. The header never shares memory with the frame: each in-flight
// frame has its own header buffer and a two-entry iovec in this context (allocated once at open),
// and frames move with READV/WRITEV, so the frame batch's layout is the same for every peer. On
// writes the header is built from the batch's per-frame meta word (peer.ts FRAME_META_*): checksum
// offload (NEEDS_CSUM) and TCP GSO; on reads it becomes the frame's meta word: a TAP whose offloads
// were turned on for a frontend that takes GSO (pio_offload) hands over checksum-partial frames and
// TCP frames of up to 64 KiB, and the rx path passes both to the guest as netback does.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/io_uring.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "l4.h"

// The per-frame meta word of a frame batch (src/net/peer.ts says the same): 0 = a plain frame.
#define META_GSO_SIZE(m) ((m) & 0xffffu)
#define META_GSO_TYPE(m) (((m) >> 16) & 0xfu) // XEN_NETIF_GSO_TYPE_TCPV4 1, _TCPV6 2
#define META_CSUM (1u << 24)                  // checksum partial (NETTXF_csum_blank)
#define META_DATA_VALID (1u << 25)            // checksum verified by the host (NETRXF_data_validated)
#define META_GSO_BAD 0xfu                     // a GSO type the guest path cannot carry (UDP, ECN): dropped
// Largest header accepted from TUNGETVNETHDRSZ (10: virtio_net_hdr, 12: with num_buffers).
#define VNET_MAX 16

// Counters JS reads through toArrayBuffer of the context (so it never caches them: pitfall 1).
enum {
    ST_SYSCALLS,     // io_uring_enter / read / write calls made
    ST_SEND_FAILS,   // frames the kernel refused (short or failed write)
    ST_RECV_FAILS,   // reads that failed with something other than EAGAIN
    ST_LAST_ERRNO,   // errno of the last failure, for a one-line error
    ST_URING,        // 1: io_uring for reads and writes, 2: for writes only (RWF_NOWAIT refused), 0: none
    ST_RECV_HINT,    // reads the next receive() posts first (adapts to the arrival rate)
    ST_VNET,         // virtio_net_hdr bytes per frame on this fd (0: plain frames)
    ST_COUNT = 8,
};

struct pio {
    uint32_t st[ST_COUNT];
    int fd;
    int ring_fd;     // -1: plain read()/write()
    int ring_reads;  // reads go through the ring too (the fd takes RWF_NOWAIT); 0: writes only
    int fixed;       // fd registered with the ring: SQEs name it by index 0
    unsigned sq_entries;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
    int32_t *res;    // per-frame result of the last receive(), for compaction
    unsigned res_cap;
    unsigned vnet;   // virtio_net_hdr bytes before every frame on this fd, 0 without IFF_VNET_HDR
    uint8_t *hdrs;   // vnet: one header buffer per frame in flight (VNET_MAX bytes each)
    struct iovec *iov; // vnet: two iovecs (header, frame) per frame in flight
    unsigned slots;  // frames in flight at most: SQ entries, or 1 for plain I/O
};

static int uring_setup(unsigned entries, struct io_uring_params *p) {
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int uring_enter(int fd, unsigned submit, unsigned wait, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

static void unmap_ring(struct pio *c) {
    if (c->sqes) munmap(c->sqes, c->sqes_len);
    if (c->cq_map && c->cq_map != c->sq_map) munmap(c->cq_map, c->cq_map_len);
    if (c->sq_map) munmap(c->sq_map, c->sq_map_len);
    if (c->ring_fd >= 0) close(c->ring_fd);
    c->sqes = NULL;
    c->sq_map = c->cq_map = NULL;
    c->ring_fd = -1;
}

static int submit_and_wait(struct pio *c, unsigned tail, unsigned n, void (*fn)(struct pio *, uint64_t, int32_t, void *), void *ctx);
static struct io_uring_sqe *next_sqe(struct pio *c, unsigned *tail);
static void on_probe(struct pio *c, uint64_t user, int32_t res, void *ctx) { (void)c; (void)user; *(int32_t *)ctx = res; }

// Every read and write here carries RWF_NOWAIT, which a driver must support (FMODE_NOWAIT): the
// TAP driver of Debian 12's 6.1 kernel does not, and there each such op fails with EOPNOTSUPP, so
// every frame would be dropped while poll() keeps reporting the TAP readable. A zero-length read
// asks the question without consuming a frame: 0 when supported, an error otherwise.
static int probe_nowait(struct pio *c) {
    static char none;
    int32_t res = -EIO;
    unsigned tail = *c->sq_tail;
    struct io_uring_sqe *sqe = next_sqe(c, &tail);
    sqe->opcode = IORING_OP_READ;
    sqe->fd = c->fixed ? 0 : c->fd;
    sqe->flags = c->fixed ? IOSQE_FIXED_FILE : 0;
    sqe->addr = (uint64_t)(uintptr_t)&none;
    sqe->len = 0;
    sqe->off = (uint64_t)-1;
    sqe->rw_flags = RWF_NOWAIT;
    int rc = submit_and_wait(c, tail, 1, on_probe, &res);
    if (rc < 0) return rc;
    return res == 0 ? 0 : (res < 0 ? res : -EIO);
}

// Sets up the ring; 0 or -errno (the caller falls back to plain I/O if asked to).
static int ring_init(struct pio *c, unsigned entries) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    // SUBMIT_ALL: one refused SQE must not leave the rest of the batch unsubmitted.
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    int rfd = uring_setup(entries, &p);
    if (rfd < 0 && errno == EINVAL) {
        memset(&p, 0, sizeof(p));
        rfd = uring_setup(entries, &p);
    }
    if (rfd < 0) return -errno;
    c->ring_fd = rfd;
    c->sq_entries = p.sq_entries;
    c->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    c->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) {
        if (c->cq_map_len > c->sq_map_len) c->sq_map_len = c->cq_map_len;
        c->cq_map_len = c->sq_map_len;
    }
    void *sq = mmap(NULL, c->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) { int e = errno; unmap_ring(c); return -e; }
    c->sq_map = sq;
    void *cq = sq;
    if (!single) {
        cq = mmap(NULL, c->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED) { int e = errno; unmap_ring(c); return -e; }
    }
    c->cq_map = cq;
    c->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    void *sqes = mmap(NULL, c->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) { int e = errno; c->sqes = NULL; unmap_ring(c); return -e; }
    c->sqes = sqes;
    char *s = sq, *q = cq;
    c->sq_head = (unsigned *)(s + p.sq_off.head);
    c->sq_tail = (unsigned *)(s + p.sq_off.tail);
    c->sq_mask = (unsigned *)(s + p.sq_off.ring_mask);
    c->sq_array = (unsigned *)(s + p.sq_off.array);
    c->cq_head = (unsigned *)(q + p.cq_off.head);
    c->cq_tail = (unsigned *)(q + p.cq_off.tail);
    c->cq_mask = (unsigned *)(q + p.cq_off.ring_mask);
    c->cqes = (struct io_uring_cqe *)(q + p.cq_off.cqes);
    // A registered fd saves the kernel an fget/fput per SQE; optional.
    int fds[1] = { c->fd };
    c->fixed = syscall(__NR_io_uring_register, rfd, IORING_REGISTER_FILES, fds, 1) == 0;
    int rc = probe_nowait(c);
    c->ring_reads = rc == 0;
    // EOPNOTSUPP: the driver lacks FMODE_NOWAIT. Reads must then stay out of the ring (without the
    // flag a read on an empty TAP would park and the enter wait for a frame); writes need no flag:
    // see pio_send. The ring is kept for them and the caller is told reads are not in it.
    if (rc < 0 && rc != -EOPNOTSUPP) { unmap_ring(c); return rc; }
    return rc;
}

void pio_close(struct pio *c);

// Whether the fd carries virtio_net_hdrs (TUNGETIFF fails on a non-TAP fd: no header then) and
// buffers for them; 0 or -1 with errno set.
static int vnet_setup(struct pio *c) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(c->fd, TUNGETIFF, &ifr) < 0 || !(ifr.ifr_flags & IFF_VNET_HDR)) return 0;
    int sz = 0;
    if (ioctl(c->fd, TUNGETVNETHDRSZ, &sz) < 0) return -1;
    if (sz < (int)sizeof(struct virtio_net_hdr) || sz > VNET_MAX) { errno = EINVAL; return -1; }
    c->vnet = (unsigned)sz;
    c->slots = c->ring_fd >= 0 ? c->sq_entries : 1;
    c->hdrs = calloc(c->slots, VNET_MAX);
    c->iov = calloc((size_t)c->slots * 2, sizeof(struct iovec));
    if (!c->hdrs || !c->iov) { errno = ENOMEM; return -1; }
    return 0;
}

/**
 * Wraps `fd` (an open, nonblocking TAP: IFF_TAP|IFF_NO_PI). mode 0: io_uring, falling back to
 * plain I/O if io_uring cannot be set up, and to plain reads only if the fd refuses RWF_NOWAIT;
 * 1: plain I/O; 2: io_uring for both or fail; 3: io_uring for writes, plain reads (what mode 0
 * gives on a TAP that refuses RWF_NOWAIT, for a TAP that does not). err[0] gets the errno of
 * what io_uring could not do (0 otherwise). Returns the context or NULL (err[0] = errno).
 */
struct pio *pio_open(int fd, unsigned entries, int mode, int32_t *err) {
    err[0] = 0;
    struct pio *c = calloc(1, sizeof(*c));
    if (!c) { err[0] = ENOMEM; return NULL; }
    c->fd = fd;
    c->ring_fd = -1;
    // A blocking TAP fd would stall the worker's whole loop in read() (plain path): make sure.
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) { err[0] = errno; free(c); return NULL; }
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) { err[0] = errno; free(c); return NULL; }
    if (entries < 8) entries = 8;
    if (entries > 4096) entries = 4096;
    if (mode != 1) {
        int rc = ring_init(c, entries);
        if (rc < 0) {
            err[0] = -rc;
            if (mode == 2) { unmap_ring(c); free(c); return NULL; }
        }
        if (mode == 3) c->ring_reads = 0;
    }
    if (vnet_setup(c) < 0) {
        err[0] = errno;
        pio_close(c);
        return NULL;
    }
    c->st[ST_SYSCALLS] = 0; // the probe is setup, not traffic
    c->st[ST_URING] = c->ring_fd < 0 ? 0 : c->ring_reads ? 1 : 2;
    c->st[ST_VNET] = c->vnet;
    c->st[ST_RECV_HINT] = 8;
    return c;
}

void pio_close(struct pio *c) {
    if (!c) return;
    unmap_ring(c);
    free(c->res);
    free(c->hdrs);
    free(c->iov);
    free(c);
}

static struct io_uring_sqe *next_sqe(struct pio *c, unsigned *tail) {
    unsigned idx = *tail & *c->sq_mask;
    struct io_uring_sqe *sqe = &c->sqes[idx];
    c->sq_array[idx] = idx;
    (*tail)++;
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

// Submits the n SQEs already placed (tail not yet published) and waits for n completions, calling
// on_cqe for each. Loops on EINTR and on partial submission. 0 or -errno.
typedef void (*cqe_fn)(struct pio *c, uint64_t user, int32_t res, void *ctx);
static int submit_and_wait(struct pio *c, unsigned tail, unsigned n, cqe_fn fn, void *ctx) {
    __atomic_store_n(c->sq_tail, tail, __ATOMIC_RELEASE);
    unsigned to_submit = n, done = 0;
    while (done < n) {
        int rc = uring_enter(c->ring_fd, to_submit, n - done, IORING_ENTER_GETEVENTS);
        c->st[ST_SYSCALLS]++;
        if (rc < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EBUSY) {
                // EAGAIN/EBUSY: completions must be reaped before more can be submitted.
            } else {
                c->st[ST_LAST_ERRNO] = errno;
                return -errno;
            }
        } else {
            to_submit -= (unsigned)rc <= to_submit ? (unsigned)rc : to_submit;
        }
        unsigned head = *c->cq_head;
        unsigned ctail = __atomic_load_n(c->cq_tail, __ATOMIC_ACQUIRE);
        while (head != ctail) {
            struct io_uring_cqe *cqe = &c->cqes[head & *c->cq_mask];
            fn(c, cqe->user_data, cqe->res, ctx);
            head++;
            done++;
        }
        __atomic_store_n(c->cq_head, head, __ATOMIC_RELEASE);
    }
    return 0;
}

/**
 * The virtio_net_hdr for one outgoing frame (`hdr`, c->vnet bytes, zeroed first) from its meta word.
 * Checksum partial: NEEDS_CSUM with csum_start/csum_offset at the TCP/UDP checksum, whose field gets
 * the pseudo-header sum CHECKSUM_PARTIAL expects (a guest may have left anything there); a frame
 * whose L4 header cannot be found goes as it is, as the software fill leaves it. GSO: TCP over the
 * IP version the type names, with hdr_len covering the TCP header, else -EINVAL (the frame is a
 * drop: the kernel would refuse it too). Netfront's GSO packets are always checksum partial.
 */
static int vnet_header(uint8_t *f, uint32_t len, uint32_t meta, uint8_t *hdr, unsigned vnet) {
    memset(hdr, 0, vnet);
    unsigned gso = META_GSO_TYPE(meta);
    if (!(meta & META_CSUM) && !gso) return 0;
    struct l4_info l;
    if (l4_locate(f, len, &l) != CS_FILLED) return gso ? -EINVAL : 0;
    struct virtio_net_hdr h;
    memset(&h, 0, sizeof(h));
    uint32_t field = l.l4 + (l.proto == 6 ? 16 : 6);
    uint16_t ps = fold(l.pseudo);
    memcpy(f + field, &ps, 2);
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = (uint16_t)l.l4;
    h.csum_offset = (uint16_t)(field - l.l4);
    if (gso) {
        if (l.proto != 6 || (gso == 1) == (l.ipv6 != 0) || gso > 2 || META_GSO_SIZE(meta) == 0) return -EINVAL;
        uint32_t doff = (uint32_t)(f[l.l4 + 12] >> 4) * 4;
        if (doff < 20 || doff > l.l4len) return -EINVAL;
        h.gso_type = gso == 1 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
        h.gso_size = (uint16_t)META_GSO_SIZE(meta);
        h.hdr_len = (uint16_t)(l.l4 + doff);
    }
    memcpy(hdr, &h, sizeof(h)); // little-endian fields: TAP's default on a little-endian host
    return 0;
}

// Frame k of the current chunk as an iovec pair (header buffer k, frame); -errno if its header cannot be built.
static int vnet_iov(struct pio *c, unsigned k, uint8_t *frame, uint32_t len, uint32_t meta) {
    uint8_t *h = c->hdrs + (size_t)k * VNET_MAX;
    int rc = vnet_header(frame, len, meta, h, c->vnet);
    c->iov[2 * k] = (struct iovec){ h, c->vnet };
    c->iov[2 * k + 1] = (struct iovec){ frame, len };
    return rc;
}

struct send_ctx { const uint32_t *lens; unsigned ok; unsigned extra; };

static void on_write(struct pio *c, uint64_t user, int32_t res, void *ctx) {
    struct send_ctx *s = ctx;
    if (res >= 0 && (uint32_t)res == s->lens[user] + s->extra) s->ok++;
    else {
        c->st[ST_SEND_FAILS]++;
        c->st[ST_LAST_ERRNO] = res < 0 ? (uint32_t)-res : EIO;
    }
}

static void send_refused(struct pio *c, int rc) {
    c->st[ST_SEND_FAILS]++;
    c->st[ST_LAST_ERRNO] = (uint32_t)-rc;
}

/**
 * Writes frames 0..count-1, one frame per write (with its virtio_net_hdr on a vnet TAP, built from
 * meta[i]; meta may be NULL: plain frames). Returns frames the kernel took (failures are drops) or -errno.
 */
int pio_send(struct pio *c, uint8_t *base, uint32_t stride, const uint32_t *lens, uint32_t count, const uint32_t *meta) {
    if (c->ring_fd < 0) {
        unsigned ok = 0;
        for (uint32_t i = 0; i < count; i++) {
            uint8_t *f = base + (size_t)i * stride;
            uint32_t len = lens[i] <= stride ? lens[i] : stride;
            ssize_t w, want = len;
            if (c->vnet) {
                int rc = vnet_iov(c, 0, f, len, meta ? meta[i] : 0);
                if (rc < 0) { send_refused(c, rc); continue; }
                w = writev(c->fd, c->iov, 2);
                want += c->vnet;
            } else {
                w = write(c->fd, f, len);
            }
            c->st[ST_SYSCALLS]++;
            if (w == want) ok++;
            else {
                c->st[ST_SEND_FAILS]++;
                c->st[ST_LAST_ERRNO] = w < 0 ? (uint32_t)errno : EIO;
            }
        }
        return (int)ok;
    }
    struct send_ctx s = { lens, 0, c->vnet };
    for (uint32_t start = 0; start < count;) {
        unsigned n = count - start < c->sq_entries ? count - start : c->sq_entries;
        unsigned tail = *c->sq_tail, queued = 0;
        for (unsigned k = 0; k < n; k++) {
            uint32_t i = start + k;
            uint8_t *f = base + (size_t)i * stride;
            uint32_t len = lens[i] <= stride ? lens[i] : stride;
            if (c->vnet) {
                int rc = vnet_iov(c, k, f, len, meta ? meta[i] : 0);
                if (rc < 0) { send_refused(c, rc); continue; }
            }
            struct io_uring_sqe *sqe = next_sqe(c, &tail);
            if (c->vnet) {
                sqe->opcode = IORING_OP_WRITEV;
                sqe->addr = (uint64_t)(uintptr_t)&c->iov[2 * k];
                sqe->len = 2;
            } else {
                sqe->opcode = IORING_OP_WRITE;
                sqe->addr = (uint64_t)(uintptr_t)f;
                sqe->len = len;
            }
            sqe->fd = c->fixed ? 0 : c->fd;
            sqe->flags = c->fixed ? IOSQE_FIXED_FILE : 0;
            sqe->off = (uint64_t)-1; // a TAP has no file position: "current position"
            // Never park the batch: a write that would block is a drop. With RWF_NOWAIT where the
            // driver takes it. Where it does not (ring_reads 0), io_uring still tries the write at
            // once (the fd is O_NONBLOCK, which io_uring takes as able not to wait), and a TAP write
            // does not wait for room: tun_get_user allocates from a socket whose sndbuf is INT_MAX
            // unless TUNSETSNDBUF. Measured on Debian 12's dom0 (docs/performance.md): one
            // io_uring_enter per tx batch where a write() per frame was; those plain writes moved
            // 0.61 and 0.41 of this path's MB/s in two boots.
            sqe->rw_flags = c->ring_reads ? RWF_NOWAIT : 0;
            sqe->user_data = i;
            queued++;
        }
        if (queued) {
            int rc = submit_and_wait(c, tail, queued, on_write, &s);
            if (rc < 0) return rc;
        }
        start += n;
    }
    return (int)s.ok;
}

static void on_read(struct pio *c, uint64_t user, int32_t res, void *ctx) {
    (void)ctx;
    // A vnet read returns header + frame: keep the frame's length (a bare header is no frame).
    if (res > 0 && c->vnet) res = (uint32_t)res > c->vnet ? res - (int32_t)c->vnet : 0;
    c->res[user] = res;
    if (res < 0 && res != -EAGAIN) {
        c->st[ST_RECV_FAILS]++;
        c->st[ST_LAST_ERRNO] = (uint32_t)-res;
    }
}

// The meta word (peer.ts FRAME_META_*) of a frame read with virtio_net_hdr `h`: the kernel's own
// header, so it is trusted as far as naming what the frame is; the rx path still bounds the frame.
static uint32_t vnet_meta(const uint8_t *hdr) {
    struct virtio_net_hdr h;
    memcpy(&h, hdr, sizeof(h));
    uint32_t m = 0;
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) m |= META_CSUM;
    else if (h.flags & VIRTIO_NET_HDR_F_DATA_VALID) m |= META_DATA_VALID;
    if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
        unsigned t = h.gso_type == VIRTIO_NET_HDR_GSO_TCPV4 ? 1 : h.gso_type == VIRTIO_NET_HDR_GSO_TCPV6 ? 2 : META_GSO_BAD;
        m |= (t << 16) | h.gso_size;
    }
    return m;
}

/**
 * Reads up to `capacity` frames (one per read) into the batch; lens[i] gets each length, and on a
 * vnet TAP meta[i] (when meta is not NULL) what its virtio_net_hdr said. Stops at EAGAIN. Through
 * io_uring: posts as many reads as the recent arrival rate suggests (doubling while every read
 * returns a frame), all in one io_uring_enter; reads that found nothing complete at once with
 * EAGAIN because the fd is nonblocking. Returns the frame count or -errno.
 */
int pio_recv(struct pio *c, uint8_t *base, uint32_t stride, uint32_t *lens, uint32_t capacity, uint32_t *meta) {
    if (!c->vnet) meta = NULL;
    uint32_t got = 0;
    if (c->ring_fd < 0 || !c->ring_reads) {
        while (got < capacity) {
            uint8_t *f = base + (size_t)got * stride;
            ssize_t r;
            if (c->vnet) {
                c->iov[0] = (struct iovec){ c->hdrs, c->vnet };
                c->iov[1] = (struct iovec){ f, stride };
                r = readv(c->fd, c->iov, 2);
            } else {
                r = read(c->fd, f, stride);
            }
            c->st[ST_SYSCALLS]++;
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN) { c->st[ST_RECV_FAILS]++; c->st[ST_LAST_ERRNO] = errno; }
                break;
            }
            if (c->vnet) {
                if ((size_t)r <= c->vnet) continue; // a header and no frame: nothing to deliver
                r -= c->vnet;
                if (meta) meta[got] = vnet_meta(c->hdrs);
            }
            lens[got++] = (uint32_t)r;
        }
        return (int)got;
    }
    if (c->res_cap < capacity) {
        int32_t *r = realloc(c->res, capacity * sizeof(int32_t)); // once per larger batch size, not per call
        if (!r) return -ENOMEM;
        c->res = r;
        c->res_cap = capacity;
    }
    unsigned hint = c->st[ST_RECV_HINT];
    for (;;) {
        uint32_t room = capacity - got;
        unsigned n = hint < room ? hint : room;
        if (n > c->sq_entries) n = c->sq_entries;
        if (n == 0) break;
        unsigned tail = *c->sq_tail;
        for (unsigned k = 0; k < n; k++) {
            uint32_t i = got + k;
            uint8_t *f = base + (size_t)i * stride;
            struct io_uring_sqe *sqe = next_sqe(c, &tail);
            if (c->vnet) {
                c->iov[2 * k] = (struct iovec){ c->hdrs + (size_t)k * VNET_MAX, c->vnet };
                c->iov[2 * k + 1] = (struct iovec){ f, stride };
                sqe->opcode = IORING_OP_READV;
                sqe->addr = (uint64_t)(uintptr_t)&c->iov[2 * k];
                sqe->len = 2;
            } else {
                sqe->opcode = IORING_OP_READ;
                sqe->addr = (uint64_t)(uintptr_t)f;
                sqe->len = stride;
            }
            sqe->fd = c->fixed ? 0 : c->fd;
            sqe->flags = c->fixed ? IOSQE_FIXED_FILE : 0;
            sqe->off = (uint64_t)-1;
            // RWF_NOWAIT: without it io_uring parks a read on an empty TAP (O_NONBLOCK on the fd is
            // not enough on 6.x) and the enter would wait for a frame; with it the read ends in EAGAIN.
            sqe->rw_flags = RWF_NOWAIT;
            sqe->user_data = i;
            c->res[i] = -EAGAIN;
        }
        int rc = submit_and_wait(c, tail, n, on_read, NULL);
        if (rc < 0) return rc;
        // Reads run in submission order, so frames fill a prefix; a frame that arrived after an
        // EAGAIN lands later and is moved down (rare), keeping arrival order.
        uint32_t full = 0, start = got;
        for (uint32_t i = start; i < start + n; i++) {
            int32_t r = c->res[i];
            if (r <= 0) continue;
            if (i != got) memmove(base + (size_t)got * stride, base + (size_t)i * stride, (size_t)r);
            if (meta) meta[got] = vnet_meta(c->hdrs + (size_t)(i - start) * VNET_MAX);
            lens[got++] = (uint32_t)r;
            full++;
        }
        if (full < n) {
            hint = full * 2 > 8 ? full * 2 : 8;
            break;
        }
        hint = hint * 2 < 4096 ? hint * 2 : 4096; // every read found a frame: more may be waiting
    }
    c->st[ST_RECV_HINT] = hint;
    return (int)got;
}

/**
 * Sets the TAP's offloads (TUNSETOFFLOAD: TUN_F_CSUM 1, TUN_F_TSO4 2, TUN_F_TSO6 4): what the kernel
 * may hand us on reads. 0 (as the TAP is opened) means whole, checksummed frames of at most the MTU.
 * Only meaningful on a vnet TAP (the header is what says a frame is partial or GSO). 0 or -errno.
 */
int pio_offload(struct pio *c, uint32_t flags) {
    if (!c->vnet && flags) return -EINVAL;
    return ioctl(c->fd, TUNSETOFFLOAD, (unsigned long)flags) < 0 ? -errno : 0;
}

// --- native memory for frame batches and helpers the TS side needs without a libc binding ---

/*
 * Zeroed, 64-byte aligned native memory (NULL on failure), mapped fresh from the kernel rather than
 * malloc'd and cleared: a page costs RSS only once written. Per-vif rx queues are sized for the
 * worst backlog (512 KiB each by default) and most never hold a frame, so memset()ing them made
 * 1000 idle vifs cost ~500 MiB. The pool frees a dead worker's blocks by address alone, and some
 * of those came from libc (GrantCopyBatch), so each mapping's length is kept here, not in the
 * block (writing a header would also make its first page resident): pio_free() unmaps what
 * pio_alloc() mapped and hands anything else to free(). Allocations are per vif or per worker,
 * never per packet, so a short list under a spin lock is enough.
 */
struct pio_block {
    void *p;
    size_t len;
};
static struct pio_block *pio_blocks;
static size_t pio_nblocks, pio_capblocks;
static int pio_lock_word;

static void pio_lock(void) {
    while (__atomic_exchange_n(&pio_lock_word, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&pio_lock_word, __ATOMIC_RELAXED)) {
        }
    }
}
static void pio_unlock(void) { __atomic_store_n(&pio_lock_word, 0, __ATOMIC_RELEASE); }

void *pio_alloc(uint64_t bytes) {
    size_t len = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
    if (len < bytes) return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    pio_lock();
    if (pio_nblocks == pio_capblocks) {
        size_t cap = pio_capblocks ? pio_capblocks * 2 : 64;
        struct pio_block *b = realloc(pio_blocks, cap * sizeof *b);
        if (!b) {
            pio_unlock();
            munmap(p, len);
            return NULL;
        }
        pio_blocks = b;
        pio_capblocks = cap;
    }
    pio_blocks[pio_nblocks++] = (struct pio_block){p, len};
    pio_unlock();
    return p;
}

void pio_free(void *p) {
    if (!p) return;
    size_t len = 0;
    pio_lock();
    for (size_t i = 0; i < pio_nblocks; i++) {
        if (pio_blocks[i].p != p) continue;
        len = pio_blocks[i].len;
        pio_blocks[i] = pio_blocks[--pio_nblocks];
        break;
    }
    pio_unlock();
    if (len) munmap(p, len);
    else free(p);
}

/** Copies one template frame into slots 0..count-1 and sets their lengths (the source peer). */
int pio_fill(uint8_t *base, uint32_t stride, uint32_t *lens, uint32_t count, const uint8_t *tmpl, uint32_t len) {
    if (len > stride) return -EINVAL;
    for (uint32_t i = 0; i < count; i++) {
        memcpy(base + (size_t)i * stride, tmpl, len);
        lens[i] = len;
    }
    return (int)count;
}
