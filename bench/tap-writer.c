// Reference for bench/peers.ts: the plainest C io_uring TAP writer, no Bun, no FFI. Writes one frame
// `batch` times per io_uring_enter (submit `batch` writes, wait for `batch` completions) into the
// TAP fd it inherits as fd 3, for `seconds`, then prints "<frames ok> <frames failed> <seconds>".
// Usage: tap-writer <frame-bytes> <batch> <seconds>
#define _GNU_SOURCE
#include <errno.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: tap-writer <frame-bytes> <batch> <seconds> (TAP fd on fd 3)\n"); return 2; }
    unsigned len = (unsigned)atoi(argv[1]), batch = (unsigned)atoi(argv[2]);
    double secs = atof(argv[3]);
    int fd = 3;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    // The same ring setup TapPeer uses (SUBMIT_ALL, COOP_TASKRUN, registered fd), so the
    // comparison measures the JS/FFI side and nothing else.
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    int rfd = (int)syscall(__NR_io_uring_setup, batch, &p);
    if (rfd < 0) { perror("tap-writer: io_uring_setup"); return 1; }
    int fds[1] = { fd };
    int fixed = syscall(__NR_io_uring_register, rfd, IORING_REGISTER_FILES, fds, 1) == 0;
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_len > sq_len) sq_len = cq_len; // IORING_FEAT_SINGLE_MMAP (kernel >= 5.4) assumed
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) { perror("tap-writer: mmap"); return 1; }
    unsigned *sq_tail = (unsigned *)(sq + p.sq_off.tail), *sq_mask = (unsigned *)(sq + p.sq_off.ring_mask), *sq_array = (unsigned *)(sq + p.sq_off.array);
    unsigned *cq_head = (unsigned *)(sq + p.cq_off.head), *cq_tail = (unsigned *)(sq + p.cq_off.tail), *cq_mask = (unsigned *)(sq + p.cq_off.ring_mask);
    struct io_uring_cqe *cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
    uint8_t *frame = calloc(1, len);
    memset(frame, 0x02, 6);        // unicast to a MAC that is not the TAP's: dropped early by the stack
    memset(frame + 6, 0x04, 6);
    frame[12] = 0x08;              // IPv4 ethertype, like the bench's frames
    unsigned long ok = 0, failed = 0;
    double start = now(), end = start + secs, t = start;
    while (t < end) {
        unsigned tail = *sq_tail;
        for (unsigned i = 0; i < batch; i++) {
            unsigned idx = tail & *sq_mask;
            struct io_uring_sqe *s = &sqes[idx];
            memset(s, 0, sizeof *s);
            s->opcode = IORING_OP_WRITE;
            s->fd = fixed ? 0 : fd;
            s->flags = fixed ? IOSQE_FIXED_FILE : 0;
            s->addr = (uint64_t)(uintptr_t)frame;
            s->len = len;
            s->off = (uint64_t)-1;
            s->rw_flags = RWF_NOWAIT;
            sq_array[idx] = idx;
            tail++;
        }
        __atomic_store_n(sq_tail, tail, __ATOMIC_RELEASE);
        unsigned done = 0, submit = batch;
        while (done < batch) {
            int rc = (int)syscall(__NR_io_uring_enter, rfd, submit, batch - done, IORING_ENTER_GETEVENTS, NULL, 0);
            if (rc < 0 && errno != EINTR) { perror("tap-writer: io_uring_enter"); return 1; }
            if (rc > 0) submit -= (unsigned)rc;
            unsigned h = *cq_head, ct = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
            for (; h != ct; h++, done++) {
                if (cqes[h & *cq_mask].res == (int)len) ok++;
                else failed++;
            }
            __atomic_store_n(cq_head, h, __ATOMIC_RELEASE);
        }
        t = now();
    }
    printf("%lu %lu %.6f\n", ok, failed, t - start);
    return 0;
}
