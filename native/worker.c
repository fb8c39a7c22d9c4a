/*
 * The worker loop's few syscalls, each one FFI call: a blocking poll() over every fd the worker
 * waits on (event-channel device, peer fds, its control eventfd), and the control eventfd itself.
 * Everything returns i32 (BUN-FACTS: i64 returns are BigInt and slow); errors are -errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* A worker's vifs (src/daemon.ts VIFS_PER_WORKER) each with a peer fd, plus its 3 fixed fds. */
#define QW_MAX_FDS 1027

/* A nonblocking, close-on-exec eventfd: the main thread writes it to wake a worker. */
int qw_eventfd(void) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

/* Adds 1 to the eventfd's counter: one write(), wakes a poll() on it. */
int qw_eventfd_signal(int fd) {
  uint64_t one = 1;
  for (;;) {
    ssize_t r = write(fd, &one, sizeof one);
    if (r == (ssize_t)sizeof one) return 0;
    if (r < 0 && errno == EINTR) continue;
    /* EAGAIN: the counter is at its maximum, so the reader will wake anyway. */
    return r < 0 && errno == EAGAIN ? 0 : -errno;
  }
}

/* Resets the counter (one read()); returns 1 if it was signalled, 0 if not. */
int qw_eventfd_drain(int fd) {
  uint64_t v;
  for (;;) {
    ssize_t r = read(fd, &v, sizeof v);
    if (r == (ssize_t)sizeof v) return 1;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 && errno == EAGAIN ? 0 : -errno;
  }
}

int qw_close(int fd) { return close(fd) < 0 ? -errno : 0; }

/*
 * poll() on fds[0..n): fds < 0 are skipped, as poll() does. revents[i] gets each fd's revents
 * (the caller passes it as an argument, so the JIT sees the write: BUN-FACTS pitfall 1).
 * Returns how many fds are ready, 0 on timeout, -errno. EINTR is retried: a signal is not a wake-up.
 */
int qw_poll(const int32_t *fds, int32_t *revents, int n, int timeout_ms) {
  struct pollfd p[QW_MAX_FDS];
  if (n < 0 || n > QW_MAX_FDS) return -EINVAL;
  for (int i = 0; i < n; i++) {
    p[i].fd = fds[i];
    p[i].events = POLLIN;
    p[i].revents = 0;
  }
  for (;;) {
    int r = poll(p, (nfds_t)n, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    for (int i = 0; i < n; i++) revents[i] = p[i].revents;
    return r;
  }
}

/* Full barrier, for the ring's "mb()" between publishing an index and re-reading the other side's. */
void qw_mb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Releases a mapping left behind by a dead worker (real Xen: a gntdev mmap). */
int qw_munmap(uint64_t addr, uint64_t len) {
  return munmap((void *)(uintptr_t)addr, (size_t)len) < 0 ? -errno : 0;
}

/*
 * Copies frames of a receive batch into an rx queue's byte ring in one call (the worker queues
 * frames its guest has no buffer for yet): frame src_idx[k] (at src + src_idx[k] * stride, lens[k]
 * bytes) goes to dst + dst_off[k]. One FFI call per round instead of a JS copy (and a view) per frame.
 */
#include <string.h>
void qw_gather(uint8_t *dst, const uint32_t *dst_off, const uint8_t *src, uint32_t stride, const uint32_t *src_idx, const uint32_t *lens, uint32_t n) {
  for (uint32_t k = 0; k < n; k++) memcpy(dst + dst_off[k], src + (size_t)src_idx[k] * stride, lens[k]);
}
