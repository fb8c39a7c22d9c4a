// The real Xen platform's native side: /dev/xen/gntdev, /dev/xen/evtchn (and /dev/xen/gntalloc,
// which only the harness uses to be its own granter). One FFI call per operation or batch, i32
// returns: >= 0 is a result, < 0 is -errno. Layouts follow linux/include/uapi/xen/{gntdev,evtchn,
// gntalloc}.h; they are written out here (not included) so no Xen headers are needed to build,
// and test/platform/xen-abi.test.ts checks every one against Debian's libxen-dev headers.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define XD_PAGE 4096u

// --- gntdev -------------------------------------------------------------------------------------
struct xd_grant_ref { uint32_t domid; uint32_t ref; };
struct xd_map_grant_ref { uint32_t count; uint32_t pad; uint64_t index; struct xd_grant_ref refs[1]; };
struct xd_unmap_grant_ref { uint64_t index; uint32_t count; uint32_t pad; };
struct xd_copy_seg {
  union { uint64_t virt; struct { uint32_t ref; uint16_t offset; uint16_t domid; } foreign; } source, dest;
  uint16_t len;
  uint16_t flags;
  int16_t status;
};
struct xd_grant_copy { uint32_t count; struct xd_copy_seg *segments; };

#define XD_IOC(nr, size) ((unsigned long)(((size) << 16) | ('G' << 8) | (nr)))
#define XD_IOCTL_GNTDEV_MAP_GRANT_REF XD_IOC(0, sizeof(struct xd_map_grant_ref))
#define XD_IOCTL_GNTDEV_UNMAP_GRANT_REF XD_IOC(1, sizeof(struct xd_unmap_grant_ref))
#define XD_IOCTL_GNTDEV_GRANT_COPY XD_IOC(8, sizeof(struct xd_grant_copy))

#define XD_GNTCOPY_source_gref 1
#define XD_GNTCOPY_dest_gref 2
#define XD_GNTST_okay 0
#define XD_GNTST_bad_copy_arg (-10)

// Sizes the TS side and the ABI test compare against the headers.
int xd_sizeof_copy_seg(void) { return (int)sizeof(struct xd_copy_seg); }
int xd_sizeof_map_grant_ref(void) { return (int)sizeof(struct xd_map_grant_ref); }
int xd_sizeof_grant_copy(void) { return (int)sizeof(struct xd_grant_copy); }
uint32_t xd_ioctl_number(int which) {
  switch (which) {
    case 0: return (uint32_t)XD_IOCTL_GNTDEV_MAP_GRANT_REF;
    case 1: return (uint32_t)XD_IOCTL_GNTDEV_UNMAP_GRANT_REF;
    case 8: return (uint32_t)XD_IOCTL_GNTDEV_GRANT_COPY;
    default: return 0;
  }
}

/** open(2) with O_RDWR|O_CLOEXEC (| O_NONBLOCK if nonblock): fd or -errno. */
int xd_open(const char *path, int nonblock) {
  int fd = open(path, O_RDWR | O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
  return fd < 0 ? -errno : fd;
}

int xd_close(int fd) { return close(fd) < 0 ? -errno : 0; }

/**
 * MAP_GRANT_REF for `count` refs of `domid`, then mmap of the whole range (MAP_SHARED; writable or
 * read-only). out[0] = address, out[1] = the ioctl's index (needed to unmap). On an mmap failure
 * (the hypercall's per-ref status is not reported by gntdev) the reservation is released again.
 * Returns 0 or -errno.
 */
int xd_gnt_map(int fd, uint32_t domid, const uint32_t *refs, uint32_t count, int writable, uint64_t *out) {
  if (count == 0 || count > (1u << 20)) return -EINVAL;
  size_t sz = sizeof(struct xd_map_grant_ref) + (size_t)(count - 1) * sizeof(struct xd_grant_ref);
  struct xd_map_grant_ref *req = calloc(1, sz);
  if (!req) return -ENOMEM;
  req->count = count;
  for (uint32_t i = 0; i < count; i++) { req->refs[i].domid = domid; req->refs[i].ref = refs[i]; }
  // The ioctl's size field says one ref; the kernel reads count refs from the same pointer.
  if (ioctl(fd, XD_IOCTL_GNTDEV_MAP_GRANT_REF, req) < 0) { int e = errno; free(req); return -e; }
  uint64_t index = req->index;
  free(req);
  void *p = mmap(NULL, (size_t)count * XD_PAGE, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, (off_t)index);
  if (p == MAP_FAILED) {
    int e = errno;
    struct xd_unmap_grant_ref u = { .index = index, .count = count };
    ioctl(fd, XD_IOCTL_GNTDEV_UNMAP_GRANT_REF, &u);
    return -e;
  }
  out[0] = (uint64_t)(uintptr_t)p;
  out[1] = index;
  return 0;
}

/** munmap alone: for a dead thread's mappings, whose gntdev fd is closed next (that drops the grants). 0 or -errno. */
int xd_munmap(uint64_t addr, uint64_t len) { return munmap((void *)(uintptr_t)addr, (size_t)len) < 0 ? -errno : 0; }

/** munmap, then UNMAP_GRANT_REF (the grant is released when both are done). 0 or -errno. */
int xd_gnt_unmap(int fd, uint64_t addr, uint32_t count, uint64_t index) {
  int rc = 0;
  if (addr && munmap((void *)(uintptr_t)addr, (size_t)count * XD_PAGE) < 0) rc = -errno;
  struct xd_unmap_grant_ref u = { .index = index, .count = count };
  if (ioctl(fd, XD_IOCTL_GNTDEV_UNMAP_GRANT_REF, &u) < 0 && rc == 0) rc = -errno;
  return rc;
}

static int seg_valid(const struct xd_copy_seg *s) {
  if (!(s->flags & (XD_GNTCOPY_source_gref | XD_GNTCOPY_dest_gref))) return 0;
  if ((s->flags & XD_GNTCOPY_source_gref) && (uint32_t)s->source.foreign.offset + s->len > XD_PAGE) return 0;
  if ((s->flags & XD_GNTCOPY_dest_gref) && (uint32_t)s->dest.foreign.offset + s->len > XD_PAGE) return 0;
  return 1;
}

static int copy_run(int fd, struct xd_copy_seg *segs, uint32_t n) {
  if (n == 0) return 0;
  struct xd_grant_copy c = { .count = n, .segments = segs };
  return ioctl(fd, XD_IOCTL_GNTDEV_GRANT_COPY, &c) < 0 ? -errno : 0;
}

/**
 * IOCTL_GNTDEV_GRANT_COPY over `count` segments. Linux fails the whole ioctl (EINVAL) for a segment
 * with no foreign side or a foreign side crossing its page, where Xen answers GNTST_bad_copy_arg for
 * that segment alone: such segments get that status here and are left out of the ioctl (the valid
 * runs around them are issued as they are; in the usual all-valid batch that is one ioctl).
 * Returns how many segments failed, or -errno if an ioctl itself failed (e.g. a bad local address).
 */
int xd_gnt_copy(int fd, struct xd_copy_seg *segs, uint32_t count) {
  uint32_t start = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (seg_valid(&segs[i])) { segs[i].status = XD_GNTST_okay; continue; }
    segs[i].status = XD_GNTST_bad_copy_arg;
    int rc = copy_run(fd, segs + start, i - start);
    if (rc < 0) return rc;
    start = i + 1;
  }
  int rc = copy_run(fd, segs + start, count - start);
  if (rc < 0) return rc;
  int failed = 0;
  for (uint32_t i = 0; i < count; i++) failed += segs[i].status != XD_GNTST_okay;
  return failed;
}

// --- evtchn -------------------------------------------------------------------------------------
#define XD_EIOC(nr, size) ((unsigned long)(((size) << 16) | ('E' << 8) | (nr)))
struct xd_bind_interdomain { uint32_t remote_domain; uint32_t remote_port; };
#define XD_IOCTL_EVTCHN_BIND_INTERDOMAIN XD_EIOC(1, sizeof(struct xd_bind_interdomain))
#define XD_IOCTL_EVTCHN_BIND_UNBOUND_PORT XD_EIOC(2, sizeof(uint32_t))
#define XD_IOCTL_EVTCHN_UNBIND XD_EIOC(3, sizeof(uint32_t))
#define XD_IOCTL_EVTCHN_NOTIFY XD_EIOC(4, sizeof(uint32_t))
#define XD_IOCTL_EVTCHN_RESET XD_EIOC(5, 0)

/** Local port, or -errno. */
int xd_evtchn_bind_interdomain(int fd, uint32_t domid, uint32_t port) {
  struct xd_bind_interdomain b = { .remote_domain = domid, .remote_port = port };
  int rc = ioctl(fd, XD_IOCTL_EVTCHN_BIND_INTERDOMAIN, &b);
  return rc < 0 ? -errno : rc;
}

int xd_evtchn_bind_unbound(int fd, uint32_t domid) {
  uint32_t d = domid;
  int rc = ioctl(fd, XD_IOCTL_EVTCHN_BIND_UNBOUND_PORT, &d);
  return rc < 0 ? -errno : rc;
}

int xd_evtchn_unbind(int fd, uint32_t port) {
  uint32_t p = port;
  return ioctl(fd, XD_IOCTL_EVTCHN_UNBIND, &p) < 0 ? -errno : 0;
}

int xd_evtchn_notify(int fd, uint32_t port) {
  uint32_t p = port;
  return ioctl(fd, XD_IOCTL_EVTCHN_NOTIFY, &p) < 0 ? -errno : 0;
}

/**
 * Nonblocking read of up to `max` fired ports into `out`: how many, 0 when none. On EFBIG (the
 * kernel's ring overflowed, events were lost) the device is RESET and -EFBIG returned: the caller
 * must then treat every bound port as fired. Other failures: -errno.
 */
int xd_evtchn_read(int fd, uint32_t *out, uint32_t max) {
  if (max == 0) return 0;
  for (;;) {
    ssize_t n = read(fd, out, (size_t)max * sizeof(uint32_t));
    if (n >= 0) return (int)(n / (ssize_t)sizeof(uint32_t));
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    if (errno == EFBIG) {
      if (ioctl(fd, XD_IOCTL_EVTCHN_RESET, 0) < 0) return -errno;
      return -EFBIG;
    }
    return -errno;
  }
}

/** write() of `count` ports: unmasks them. 0 or -errno. */
int xd_evtchn_unmask(int fd, const uint32_t *ports, uint32_t count) {
  size_t want = (size_t)count * sizeof(uint32_t), done = 0;
  while (done < want) {
    ssize_t n = write(fd, (const char *)ports + done, want - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += (size_t)n;
  }
  return 0;
}

// --- gntalloc (harness only: lets dom0 grant its own pages, to itself) --------------------------
struct xd_gntalloc_alloc { uint16_t domid; uint16_t flags; uint32_t count; uint64_t index; uint32_t gref_ids[1]; };
struct xd_gntalloc_dealloc { uint64_t index; uint32_t count; uint32_t pad; };
#define XD_IOCTL_GNTALLOC_ALLOC_GREF XD_IOC(5, sizeof(struct xd_gntalloc_alloc))
#define XD_IOCTL_GNTALLOC_DEALLOC_GREF XD_IOC(6, sizeof(struct xd_gntalloc_dealloc))

/**
 * Grants `count` new zeroed pages to `domid` (writable unless readonly) and maps them here.
 * refs_out gets the grant refs; out[0] = address, out[1] = index. 0 or -errno.
 */
int xd_gntalloc_alloc(int fd, uint32_t domid, uint32_t count, int readonly, uint32_t *refs_out, uint64_t *out) {
  if (count == 0 || count > 1024) return -EINVAL;
  size_t sz = sizeof(struct xd_gntalloc_alloc) + (size_t)(count - 1) * sizeof(uint32_t);
  struct xd_gntalloc_alloc *req = calloc(1, sz);
  if (!req) return -ENOMEM;
  req->domid = (uint16_t)domid;
  req->flags = readonly ? 0 : 1; // GNTALLOC_FLAG_WRITABLE
  req->count = count;
  if (ioctl(fd, XD_IOCTL_GNTALLOC_ALLOC_GREF, req) < 0) { int e = errno; free(req); return -e; }
  for (uint32_t i = 0; i < count; i++) refs_out[i] = req->gref_ids[i];
  uint64_t index = req->index;
  free(req);
  void *p = mmap(NULL, (size_t)count * XD_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)index);
  if (p == MAP_FAILED) {
    int e = errno;
    struct xd_gntalloc_dealloc d = { .index = index, .count = count };
    ioctl(fd, XD_IOCTL_GNTALLOC_DEALLOC_GREF, &d);
    return -e;
  }
  out[0] = (uint64_t)(uintptr_t)p;
  out[1] = index;
  return 0;
}

int xd_gntalloc_free(int fd, uint64_t addr, uint32_t count, uint64_t index) {
  int rc = 0;
  if (addr && munmap((void *)(uintptr_t)addr, (size_t)count * XD_PAGE) < 0) rc = -errno;
  struct xd_gntalloc_dealloc d = { .index = index, .count = count };
  if (ioctl(fd, XD_IOCTL_GNTALLOC_DEALLOC_GREF, &d) < 0 && rc == 0) rc = -errno;
  return rc;
}
