/*
 * Simulated Xen hypervisor for qnicd: grant tables and event channels across processes, in shared
 * memory (see simxen.h for the layout). Semantics follow xen/common/grant_table.c,
 * xen/common/event_channel.c and Linux's drivers/xen/{gntdev,evtchn}.c; this is our own code.
 *
 * Handles (small ints) name per-thread objects: a grant device (gdev), an event-channel device
 * (edev) or a guest view of one domain. A handle is used by one thread at a time (each Bun Worker
 * opens its own), so the data path needs no locks; only the handle tables are mutex-protected.
 *
 * Return conventions: >= 0 success, -errno on failure; sx_gdev_map returns 0, a GNTST_* status
 * (-1..-12), or SX_ERRNO_BASE - errno.
 */
#define _GNU_SOURCE
#include "simxen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct sx_copy_seg) == 24, "gntdev_grant_copy_segment is 24 bytes");
_Static_assert(__builtin_offsetof(struct sx_copy_seg, len) == 16, "len @16");
_Static_assert(__builtin_offsetof(struct sx_copy_seg, flags) == 18, "flags @18");
_Static_assert(__builtin_offsetof(struct sx_copy_seg, status) == 20, "status @20");
_Static_assert(sizeof(struct sx_port) == 32, "port entry");
_Static_assert(sizeof(struct sx_dev) == 32, "dev entry");
_Static_assert(sizeof(struct sx_audit_rec) == 24, "audit record");
_Static_assert(__builtin_offsetof(struct sx_audit, rec) == 64, "audit header");
_Static_assert(SX_GNT_AUDIT_OFF % SX_PAGE == 0, "audit log page aligned");

#define SX_ERRNO_BASE (-1000)
#define SX_MAX_HANDLES 256 /* slot = id & 0xff */
#define SX_PATH_MAX 512
#define SX_READ_BATCH 64

#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CAS(p, expp, v) __atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

/* ------------------------------------------------------------------------------------------ */
/* small helpers */

static int path_join(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

static size_t round_page(size_t n) { return (n + SX_PAGE - 1) & ~((size_t)SX_PAGE - 1); }

static size_t gnt_file_len(uint32_t pages) { return round_page((size_t)SX_GNT_PALLOC_OFF + pages); }

/* Maps a whole file; returns NULL (never MAP_FAILED) on failure with errno set. */
static void *map_file(int fd, size_t len, int prot) {
  void *p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* Process start time (clock ticks since boot), 0 if unknown. */
static uint64_t proc_starttime(pid_t pid, char *state_out) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  p += 2; /* field 3: state */
  if (state_out) *state_out = *p;
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  return p ? strtoull(p, NULL, 10) : 0;
}

/* Is the process that opened a device still alive (and not a zombie, and not a reused pid)? */
static int owner_alive(uint32_t pid, uint64_t starttime) {
  if (pid == (uint32_t)getpid()) return 1;
  if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) return 0;
  char state = 0;
  uint64_t st = proc_starttime((pid_t)pid, &state);
  if (st == 0) return 1; /* /proc unreadable: trust kill() */
  if (state == 'Z' || state == 'X') return 0;
  if (starttime && st != starttime) return 0;
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* registry */

struct regmap {
  int fd;
  struct sx_reg *reg;
};

static int reg_open(const char *shmdir, struct regmap *m) {
  char path[SX_PATH_MAX];
  int rc = path_join(path, sizeof path, shmdir, "registry");
  if (rc) return rc;
  m->fd = open(path, O_RDWR | O_CLOEXEC);
  if (m->fd < 0) return -errno;
  struct stat st;
  if (fstat(m->fd, &st) < 0 || (size_t)st.st_size < sizeof(struct sx_reg)) {
    close(m->fd);
    return -EPROTO;
  }
  m->reg = map_file(m->fd, sizeof(struct sx_reg), PROT_READ | PROT_WRITE);
  if (!m->reg) {
    rc = -errno;
    close(m->fd);
    return rc;
  }
  if (LD(&m->reg->magic) != SX_MAGIC || m->reg->version != SX_VERSION) {
    munmap(m->reg, sizeof(struct sx_reg));
    close(m->fd);
    return -EPROTO;
  }
  return 0;
}

static void reg_close(struct regmap *m) {
  if (m->reg) munmap(m->reg, sizeof(struct sx_reg));
  if (m->fd >= 0) close(m->fd);
  m->reg = NULL;
  m->fd = -1;
}

static void reg_lock(struct regmap *m) {
  while (flock(m->fd, LOCK_EX) < 0 && errno == EINTR) {
  }
}
static void reg_unlock(struct regmap *m) { flock(m->fd, LOCK_UN); }

static int dom_file(char *out, size_t cap, const char *shmdir, uint32_t domid, const char *ext) {
  char name[64];
  snprintf(name, sizeof name, "dom%u.%s", domid, ext);
  return path_join(out, cap, shmdir, name);
}

/* Creates the files of a new domain and marks it live. Registry lock held. */
static int dom_create_locked(const char *shmdir, struct sx_reg *reg, uint32_t domid, uint32_t pages) {
  char ram[SX_PATH_MAX], gnt[SX_PATH_MAX];
  int rc = dom_file(ram, sizeof ram, shmdir, domid, "ram");
  if (!rc) rc = dom_file(gnt, sizeof gnt, shmdir, domid, "gnttab");
  if (rc) return rc;
  unlink(ram);
  unlink(gnt);
  int fr = open(ram, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fr < 0) return -errno;
  int fg = open(gnt, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fg < 0) {
    rc = -errno;
    close(fr);
    unlink(ram);
    return rc;
  }
  if (ftruncate(fr, (off_t)pages * SX_PAGE) < 0 || ftruncate(fg, (off_t)gnt_file_len(pages)) < 0) {
    rc = -errno;
    close(fr);
    close(fg);
    unlink(ram);
    unlink(gnt);
    return rc;
  }
  close(fr);
  close(fg);
  memset(reg->port[domid], 0, sizeof reg->port[domid]);
  struct sx_dom *d = &reg->dom[domid];
  d->pages = pages;
  d->nr_gnt = SX_NR_GNT;
  d->creator_pid = (uint32_t)getpid();
  uint32_t gen = ++reg->gen_counter;
  if (gen == 0) gen = ++reg->gen_counter;
  ST(&d->live_gen, gen);
  return 0;
}

/* Closes one port, Xen-style: the interdomain peer returns to unbound (bindable again by us). */
static void port_close_locked(struct sx_reg *reg, uint32_t dom, uint32_t port) {
  struct sx_port *e = &reg->port[dom][port];
  if (LD(&e->state) == SX_ECS_INTERDOMAIN) {
    uint32_t rd = e->remote_dom, rp = e->remote_port;
    if (rd < SX_MAX_DOMS && rp < SX_NR_PORTS) {
      struct sx_port *r = &reg->port[rd][rp];
      if (LD(&r->state) == SX_ECS_INTERDOMAIN && r->remote_dom == dom && r->remote_port == port) {
        r->remote_port = 0;
        ST(&r->state, SX_ECS_UNBOUND); /* remote_dom stays: the closing domain may bind again */
      }
    }
  }
  ST(&e->state, SX_ECS_FREE);
  e->remote_dom = 0;
  e->remote_port = 0;
  e->owner_dev = 0;
  e->owner_gen = 0;
  ST(&e->ev, 0);
}

static int sock_path(char *out, size_t cap, const char *evdir, uint32_t idx, uint32_t gen) {
  char name[48];
  snprintf(name, sizeof name, "ev-%u-%u.sock", idx, gen);
  return path_join(out, cap, evdir, name);
}

/* Frees a device entry and closes every port it owns. Registry lock held. */
static void dev_free_locked(struct sx_reg *reg, uint32_t idx) {
  struct sx_dev *d = &reg->dev[idx];
  uint32_t dom = d->domid, gen = d->gen;
  if (dom < SX_MAX_DOMS) {
    for (uint32_t p = 1; p < SX_NR_PORTS; p++) {
      struct sx_port *e = &reg->port[dom][p];
      if (LD(&e->state) != SX_ECS_FREE && e->owner_dev == idx + 1 && e->owner_gen == gen)
        port_close_locked(reg, dom, p);
    }
  }
  ST(&d->live, 0);
}

static void reap_dead_gdevs_locked(struct sx_reg *reg, const char *shmdir);

/*
 * What the kernel does when a process dies, done by the next process that needs it: the ports of
 * its event-channel devices close, so their peers return to unbound, and the grants its grant
 * devices had mapped are released (reap_dead_gdevs_locked).
 */
static void reap_dead_locked(struct sx_reg *reg, const char *shmdir, const char *evdir) {
  reap_dead_gdevs_locked(reg, shmdir);
  for (uint32_t i = 0; i < SX_MAX_DEVS; i++) {
    struct sx_dev *d = &reg->dev[i];
    if (!LD(&d->live)) continue;
    if (owner_alive(d->pid, d->starttime)) continue;
    uint32_t gen = d->gen;
    dev_free_locked(reg, i);
    if (evdir) {
      char path[SX_PATH_MAX];
      if (!sock_path(path, sizeof path, evdir, i, gen)) unlink(path);
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* global control operations */

int sx_init(const char *shmdir) {
  if (mkdir(shmdir, 0700) < 0 && errno != EEXIST) return -errno;
  char path[SX_PATH_MAX];
  int rc = path_join(path, sizeof path, shmdir, "registry");
  if (rc) return rc;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  while (flock(fd, LOCK_EX) < 0 && errno == EINTR) {
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    goto out;
  }
  if (st.st_size == 0 && ftruncate(fd, sizeof(struct sx_reg)) < 0) {
    rc = -errno;
    goto out;
  }
  if (st.st_size != 0 && (size_t)st.st_size != sizeof(struct sx_reg)) {
    rc = -EPROTO;
    goto out;
  }
  struct sx_reg *reg = map_file(fd, sizeof(struct sx_reg), PROT_READ | PROT_WRITE);
  if (!reg) {
    rc = -errno;
    goto out;
  }
  if (LD(&reg->magic) == 0) {
    reg->version = SX_VERSION;
    reg->next_domid = 1;
    reg->gen_counter = 0;
    rc = dom_create_locked(shmdir, reg, 0, SX_DOM0_PAGES);
    if (!rc) ST(&reg->magic, SX_MAGIC);
  } else if (reg->magic != SX_MAGIC || reg->version != SX_VERSION) {
    rc = -EPROTO;
  } else if (!LD(&reg->dom[0].live_gen)) {
    rc = dom_create_locked(shmdir, reg, 0, SX_DOM0_PAGES);
  }
  munmap(reg, sizeof(struct sx_reg));
out:
  flock(fd, LOCK_UN);
  close(fd);
  return rc;
}

int sx_domain_create(const char *shmdir, uint32_t pages) {
  if (pages == 0) pages = SX_DEFAULT_PAGES;
  if (pages > SX_MAX_PAGES) return -E2BIG;
  struct regmap m;
  int rc = reg_open(shmdir, &m);
  if (rc) return rc;
  reg_lock(&m);
  struct sx_reg *reg = m.reg;
  int domid = -ENOSPC;
  /* Xen hands out increasing domids; wrapping round-robin keeps a fresh domid from reusing a
   * just-destroyed one (whose stale grants a backend might still hold). */
  uint32_t start = reg->next_domid;
  for (uint32_t i = 0; i < SX_MAX_DOMS - 1; i++) {
    uint32_t d = 1 + ((start - 1 + i) % (SX_MAX_DOMS - 1));
    if (LD(&reg->dom[d].live_gen)) continue;
    rc = dom_create_locked(shmdir, reg, d, pages);
    if (rc) {
      domid = rc;
    } else {
      domid = (int)d;
      reg->next_domid = 1 + (d % (SX_MAX_DOMS - 1));
    }
    break;
  }
  reg_unlock(&m);
  reg_close(&m);
  return domid;
}

int sx_domain_destroy(const char *shmdir, const char *evdir, uint32_t domid) {
  if (domid == 0) return -EPERM;
  if (domid >= SX_MAX_DOMS) return -ESRCH;
  struct regmap m;
  int rc = reg_open(shmdir, &m);
  if (rc) return rc;
  reg_lock(&m);
  struct sx_reg *reg = m.reg;
  if (!LD(&reg->dom[domid].live_gen)) {
    rc = -ESRCH;
  } else {
    /* Like evtchn_destroy: every port closes, so interdomain peers return to unbound. */
    for (uint32_t p = 1; p < SX_NR_PORTS; p++)
      if (LD(&reg->port[domid][p].state) != SX_ECS_FREE) port_close_locked(reg, domid, p);
    for (uint32_t i = 0; i < SX_MAX_DEVS; i++) {
      struct sx_dev *d = &reg->dev[i];
      if (LD(&d->live) && d->domid == domid) {
        uint32_t gen = d->gen;
        ST(&d->live, 0);
        if (evdir && *evdir) {
          char path[SX_PATH_MAX];
          if (!sock_path(path, sizeof path, evdir, i, gen)) unlink(path);
        }
      }
    }
    ST(&reg->dom[domid].live_gen, 0);
    char path[SX_PATH_MAX];
    if (!dom_file(path, sizeof path, shmdir, domid, "ram")) unlink(path);
    if (!dom_file(path, sizeof path, shmdir, domid, "gnttab")) unlink(path);
  }
  reg_unlock(&m);
  reg_close(&m);
  return rc;
}

int sx_domain_list(const char *shmdir, uint32_t *out, uint32_t cap) {
  struct regmap m;
  int rc = reg_open(shmdir, &m);
  if (rc) return rc;
  uint32_t n = 0;
  for (uint32_t d = 0; d < SX_MAX_DOMS && n < cap; d++)
    if (LD(&m.reg->dom[d].live_gen)) out[n++] = d;
  reg_close(&m);
  return (int)n;
}

/* 1 = exists, 0 = not, -errno if the hypervisor is not there. Also reports the page count. */
int sx_domain_pages(const char *shmdir, uint32_t domid) {
  if (domid >= SX_MAX_DOMS) return 0;
  struct regmap m;
  int rc = reg_open(shmdir, &m);
  if (rc) return rc;
  int pages = LD(&m.reg->dom[domid].live_gen) ? (int)m.reg->dom[domid].pages : 0;
  reg_close(&m);
  return pages;
}

/* ------------------------------------------------------------------------------------------ */
/* handle tables */

enum { H_GDEV = 1, H_EDEV = 2, H_GUEST = 3 };

struct handle {
  int kind;
  int id; /* slot | generation << 8, so a stale id never names a newer handle */
  char shmdir[SX_PATH_MAX];
  void *obj;
};

static pthread_mutex_t htab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle htab[SX_MAX_HANDLES];
static uint32_t htab_gen;

static int handle_alloc(int kind, const char *shmdir, void *obj) {
  pthread_mutex_lock(&htab_lock);
  int id = -EMFILE;
  for (int i = 0; i < SX_MAX_HANDLES; i++) {
    if (htab[i].kind) continue;
    htab_gen = (htab_gen + 1) & 0x3fffff;
    if (htab_gen == 0) htab_gen = 1;
    htab[i].kind = kind;
    htab[i].id = (int)(htab_gen << 8) | i;
    snprintf(htab[i].shmdir, sizeof htab[i].shmdir, "%s", shmdir);
    htab[i].obj = obj;
    id = htab[i].id;
    break;
  }
  pthread_mutex_unlock(&htab_lock);
  return id;
}

static inline void *handle_get(int id, int kind) {
  if (id < 0) return NULL;
  struct handle *h = &htab[id & 0xff];
  return h->kind == kind && h->id == id ? h->obj : NULL;
}

static void *handle_take(int id, int kind) {
  if (id < 0) return NULL;
  pthread_mutex_lock(&htab_lock);
  void *obj = NULL;
  struct handle *h = &htab[id & 0xff];
  if (h->kind == kind && h->id == id) {
    obj = h->obj;
    h->kind = 0;
    h->id = 0;
    h->obj = NULL;
  }
  pthread_mutex_unlock(&htab_lock);
  return obj;
}

/* ------------------------------------------------------------------------------------------ */
/* grant device (backend side: IOCTL_GNTDEV_MAP_GRANT_REF + mmap, IOCTL_GNTDEV_GRANT_COPY) */

struct dcache {
  uint32_t gen; /* 0 = not attached */
  uint32_t pages;
  int ram_fd;
  uint8_t *ram;
  uint8_t *gnt;
  size_t gnt_len;
};

struct mapping {
  uint8_t *base;
  uint32_t count;
  uint32_t domid;
  uint32_t gen;
  int writable;
  uint32_t *refs;
  uint32_t pin0; /* its refs' records in the pin file: pin0 .. pin0 + count - 1 */
};

struct gdev {
  char shmdir[SX_PATH_MAX];
  uint32_t domid;
  uint32_t pid; /* for the grant-access audit (getpid() is a system call: taken once) */
  struct regmap m;
  uint32_t slot, slot_gen; /* registry gdev[] entry */
  int pins_fd;
  struct sx_pin *pins; /* the pin file, mapped */
  uint32_t pins_cap;
  uint32_t pins_hint; /* every record below it is in use: long-lived ring mappings fill the front */
  struct dcache dc[SX_MAX_DOMS];
  uint64_t attached[(SX_MAX_DOMS + 63) / 64]; /* dc[] entries that may hold a domain: dc_trim's worklist */
  struct mapping *maps;
  uint32_t nmaps;
};

static void dc_release(struct dcache *c) {
  if (c->ram) munmap(c->ram, (size_t)c->pages * SX_PAGE);
  if (c->gnt) munmap(c->gnt, c->gnt_len);
  if (c->ram_fd >= 0) close(c->ram_fd);
  memset(c, 0, sizeof *c);
  c->ram_fd = -1;
}

static struct dcache *dc_attach(struct gdev *g, uint32_t domid, uint32_t gen) {
  struct dcache *c = &g->dc[domid];
  dc_release(c);
  uint32_t pages = g->m.reg->dom[domid].pages;
  char ram[SX_PATH_MAX], gnt[SX_PATH_MAX];
  if (dom_file(ram, sizeof ram, g->shmdir, domid, "ram") || dom_file(gnt, sizeof gnt, g->shmdir, domid, "gnttab"))
    return NULL;
  int fr = open(ram, O_RDWR | O_CLOEXEC);
  if (fr < 0) return NULL;
  int fg = open(gnt, O_RDWR | O_CLOEXEC);
  if (fg < 0) {
    close(fr);
    return NULL;
  }
  struct stat sr, sg;
  size_t glen = gnt_file_len(pages);
  if (fstat(fr, &sr) < 0 || fstat(fg, &sg) < 0 || (size_t)sr.st_size < (size_t)pages * SX_PAGE ||
      (size_t)sg.st_size < glen) {
    close(fr);
    close(fg);
    return NULL;
  }
  uint8_t *r = map_file(fr, (size_t)pages * SX_PAGE, PROT_READ | PROT_WRITE);
  uint8_t *gm = map_file(fg, glen, PROT_READ | PROT_WRITE);
  close(fg);
  if (!r || !gm) {
    if (r) munmap(r, (size_t)pages * SX_PAGE);
    if (gm) munmap(gm, glen);
    close(fr);
    return NULL;
  }
  c->ram = r;
  c->gnt = gm;
  c->gnt_len = glen;
  c->pages = pages;
  c->ram_fd = fr;
  /* The files we opened must belong to the incarnation we read the page count of. */
  if (LD(&g->m.reg->dom[domid].live_gen) != gen) {
    dc_release(c);
    return NULL;
  }
  c->gen = gen;
  return c;
}

static inline struct dcache *dc_get(struct gdev *g, uint32_t domid) {
  if (domid >= SX_MAX_DOMS) return NULL;
  uint32_t gen = LD(&g->m.reg->dom[domid].live_gen);
  if (!gen) return NULL;
  struct dcache *c = &g->dc[domid];
  if (__builtin_expect(c->gen == gen, 1)) return c;
  c = dc_attach(g, domid, gen);
  if (c) g->attached[domid / 64] |= 1ull << (domid % 64);
  return c;
}

/*
 * The domain cache is the sim's own shortcut (real gntdev maps nothing beyond the granted pages):
 * it holds the domain's whole RAM and grant table mapped and the RAM file open. Kept past its use,
 * every guest a backend ever served would stay mapped (an 8 MiB mapping and an fd per destroyed
 * guest, until its domid comes round again). So a device lets go of a domain when it unmaps that
 * domain's last mapping (a backend disconnecting), and of every destroyed incarnation whenever it
 * maps or unmaps. Only the thread using the device calls these, so no copy can be using the cache.
 */
static void dc_trim(struct gdev *g, uint32_t unmapped_domid) {
  /* A worklist, not a scan of dc[]: the seed datapath maps and unmaps once per packet. */
  for (uint32_t w = 0; w < sizeof g->attached / sizeof g->attached[0]; w++) {
    for (uint64_t bits = g->attached[w]; bits; bits &= bits - 1) {
      uint32_t d = w * 64 + (uint32_t)__builtin_ctzll(bits);
      struct dcache *c = &g->dc[d];
      int keep = c->gen && LD(&g->m.reg->dom[d].live_gen) == c->gen;
      if (keep && d == unmapped_domid) {
        keep = 0;
        for (uint32_t i = 0; i < g->nmaps; i++)
          if (g->maps[i].base && g->maps[i].domid == d) {
            keep = 1;
            break;
          }
      }
      if (!keep) {
        dc_release(c);
        g->attached[w] &= ~(1ull << (d % 64));
      }
    }
  }
}

static inline uint32_t *gnt_word(struct dcache *c, uint32_t ref) { return (uint32_t *)(c->gnt + (size_t)ref * 8); }
static inline uint32_t *gnt_frame(struct dcache *c, uint32_t ref) { return (uint32_t *)(c->gnt + (size_t)ref * 8 + 4); }
static inline uint32_t *gnt_pin(struct dcache *c, uint32_t ref) {
  return (uint32_t *)(c->gnt + SX_GNT_PIN_OFF + (size_t)ref * 4);
}

/* ---- grant-access audit (see simxen.h) ---- */

static inline struct sx_audit *dc_audit(struct dcache *c) { return (struct sx_audit *)(c->gnt + SX_GNT_AUDIT_OFF); }

/* The one branch the data path pays while auditing is off. */
static inline int audit_on(struct dcache *c) {
  return __builtin_expect(__atomic_load_n(&dc_audit(c)->enabled, __ATOMIC_RELAXED) != 0, 0);
}

static __attribute__((noinline, cold)) void audit_record(struct gdev *g, struct dcache *c, uint32_t ref, uint32_t op,
                                                         int st, uint32_t offset, uint32_t len) {
  struct sx_audit *a = dc_audit(c);
  uint64_t idx = __atomic_fetch_add(&a->head, 1, __ATOMIC_ACQ_REL);
  struct sx_audit_rec *r = &a->rec[idx % SX_AUDIT_CAP];
  ST(&r->stamp, 0u); /* a reader copying the slot's previous record sees it change */
  r->ref = ref;
  r->pid = g->pid;
  r->offset = (uint16_t)offset;
  r->len = (uint16_t)len;
  r->op = (uint16_t)op;
  r->status = (int16_t)st;
  r->caller_dom = g->domid;
  ST(&r->stamp, (uint32_t)(idx + 1));
}

/* The checks of acquire_grant_for_copy / _set_status_v1, without pinning (copy path). */
static inline int grant_check(struct dcache *c, uint32_t ref, int readonly, uint32_t ldom, uint32_t *frame) {
  if (ref >= SX_NR_GNT) return SX_GNTST_bad_gntref;
  uint32_t w = LD(gnt_word(c, ref));
  uint32_t flags = w & 0xffff, dom = w >> 16;
  if ((flags & SX_GTF_type_mask) != SX_GTF_permit_access || dom != ldom) return SX_GNTST_general_error;
  if (!readonly && (flags & SX_GTF_readonly)) return SX_GNTST_general_error;
  uint32_t f = LD(gnt_frame(c, ref));
  if (f >= c->pages) return SX_GNTST_bad_page;
  *frame = f;
  return SX_GNTST_okay;
}

/* Sets GTF_reading/GTF_writing to match the pin count (clears only). */
static void grant_clear_to_pins(struct dcache *c, uint32_t ref) {
  uint32_t pin = LD(gnt_pin(c, ref));
  uint32_t clear = 0;
  if (!(pin >> 16)) clear |= SX_GTF_writing;
  if (!pin) clear |= SX_GTF_reading;
  if (clear) __atomic_fetch_and(gnt_word(c, ref), ~clear, __ATOMIC_ACQ_REL);
}

/* map_grant_ref: validate and pin one ref. Registry lock held. */
static int grant_pin(struct dcache *c, uint32_t ref, int writable, uint32_t ldom, uint32_t *frame) {
  if (ref >= SX_NR_GNT) return SX_GNTST_bad_gntref;
  uint32_t *w = gnt_word(c, ref);
  uint32_t old = LD(w);
  for (int retries = 0;; retries++) {
    uint32_t flags = old & 0xffff, dom = old >> 16;
    if ((flags & SX_GTF_type_mask) != SX_GTF_permit_access || dom != ldom) return SX_GNTST_general_error;
    if (writable && (flags & SX_GTF_readonly)) return SX_GNTST_general_error;
    uint32_t nw = old | SX_GTF_reading | (writable ? SX_GTF_writing : 0);
    if (CAS(w, &old, nw)) break;
    if (retries == 4) return SX_GNTST_general_error; /* "shared grant entry is unstable" */
  }
  uint32_t f = LD(gnt_frame(c, ref));
  if (f >= c->pages) {
    grant_clear_to_pins(c, ref);
    return SX_GNTST_bad_page;
  }
  __atomic_fetch_add(gnt_pin(c, ref), writable ? 0x10000u : 1u, __ATOMIC_ACQ_REL);
  *frame = f;
  return SX_GNTST_okay;
}

static void grant_unpin(struct dcache *c, uint32_t ref, int writable) {
  __atomic_fetch_sub(gnt_pin(c, ref), writable ? 0x10000u : 1u, __ATOMIC_ACQ_REL);
  grant_clear_to_pins(c, ref);
}

/* ------------------------------------------------------------------------------------------ */
/*
 * Pins by owner. Linux's gntdev unmaps every grant a process still has mapped when its fd is
 * released, which the kernel does when the process dies (drivers/xen/gntdev.c gntdev_release),
 * so a guest can end access to its old ring pages after its backend was killed. The sim has no
 * kernel to run at process exit, so each grant device records the grants it pinned in a file of
 * its own (gdev-<slot>-<gen>.pins) and the registry names its process; whoever next needs it (a
 * new grant device or event-channel device, a guest ending access to a grant still pinned)
 * releases the pins of devices whose process is gone.
 *
 * Crash safety, for a process killed at any instruction: a record is written right after its pin
 * is taken and cleared right before the pin is dropped, all under the registry lock. A death
 * between the two leaves one pin unrecorded (the guest cannot end access to that grant, as with a
 * live mapping), never a record without its pin, which would release someone else's.
 */

static int pins_path(char *out, size_t cap, const char *shmdir, uint32_t slot, uint32_t gen) {
  char name[48];
  snprintf(name, sizeof name, "gdev-%u-%u.pins", slot, gen);
  return path_join(out, cap, shmdir, name);
}

/* Drops one pin of a grant table mapped at gnt, never below zero (a record is never trusted more than the count). */
static void pin_release_raw(uint8_t *gnt, uint32_t ref, int writable) {
  uint32_t *pin = (uint32_t *)(gnt + SX_GNT_PIN_OFF + (size_t)ref * 4);
  uint32_t unit = writable ? 0x10000u : 1u, mask = writable ? 0xffff0000u : 0xffffu;
  uint32_t old = LD(pin);
  while ((old & mask) && !CAS(pin, &old, old - unit)) {
  }
  struct dcache c = {.gnt = gnt};
  grant_clear_to_pins(&c, ref);
}

/* Maps just a live domain's grant table (the reaper needs no RAM), or NULL. */
static uint8_t *gnt_map_only(const char *shmdir, struct sx_reg *reg, uint32_t domid, size_t *len) {
  char path[SX_PATH_MAX];
  if (dom_file(path, sizeof path, shmdir, domid, "gnttab")) return NULL;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return NULL;
  *len = gnt_file_len(reg->dom[domid].pages);
  struct stat st;
  uint8_t *p = fstat(fd, &st) == 0 && (size_t)st.st_size >= *len ? map_file(fd, *len, PROT_READ | PROT_WRITE) : NULL;
  close(fd);
  return p;
}

/* gntdev_release for a dead process's device: every grant its pin file records is unpinned. */
static void release_pins_of(struct sx_reg *reg, const char *shmdir, uint32_t slot, uint32_t gen) {
  char path[SX_PATH_MAX];
  if (pins_path(path, sizeof path, shmdir, slot, gen)) return;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  size_t n = fstat(fd, &st) == 0 ? (size_t)st.st_size / sizeof(struct sx_pin) : 0;
  const struct sx_pin *pins = n ? map_file(fd, n * sizeof(struct sx_pin), PROT_READ) : NULL;
  close(fd);
  uint8_t *gnt = NULL;
  size_t gnt_len = 0;
  uint32_t gnt_dom = SX_MAX_DOMS;
  for (size_t k = 0; pins && k < n; k++) {
    struct sx_pin p = pins[k];
    if (!(p.flags & SX_PIN_USED) || p.domid >= SX_MAX_DOMS || p.ref >= SX_NR_GNT) continue;
    /* A destroyed domain took its grant table with it: nothing to release there. */
    if (LD(&reg->dom[p.domid].live_gen) != p.dom_gen) continue;
    if (p.domid != gnt_dom) { /* a mapping's records are contiguous: one domain at a time */
      if (gnt) munmap(gnt, gnt_len);
      gnt = gnt_map_only(shmdir, reg, p.domid, &gnt_len);
      gnt_dom = p.domid;
    }
    if (gnt) pin_release_raw(gnt, p.ref, (p.flags & SX_PIN_WRITABLE) != 0);
  }
  if (gnt) munmap(gnt, gnt_len);
  if (pins) munmap((void *)pins, n * sizeof(struct sx_pin));
  unlink(path);
}

static void reap_dead_gdevs_locked(struct sx_reg *reg, const char *shmdir) {
  for (uint32_t i = 0; i < SX_MAX_DEVS; i++) {
    struct sx_gslot *s = &reg->gdev[i];
    if (!LD(&s->live) || owner_alive(s->pid, s->starttime)) continue;
    release_pins_of(reg, shmdir, i, s->gen);
    ST(&s->live, 0);
  }
}

/* Claims a grant-device slot for this process and creates its (empty) pin file. Registry lock held. */
static int gslot_claim_locked(struct gdev *g) {
  struct sx_reg *reg = g->m.reg;
  for (uint32_t i = 0; i < SX_MAX_DEVS; i++) {
    struct sx_gslot *s = &reg->gdev[i];
    if (LD(&s->live)) continue;
    uint32_t gen = s->gen + 1 ? s->gen + 1 : 1;
    char path[SX_PATH_MAX];
    if (pins_path(path, sizeof path, g->shmdir, i, gen)) return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    s->gen = gen;
    s->pid = (uint32_t)getpid();
    s->starttime = proc_starttime(getpid(), NULL);
    ST(&s->live, 1);
    g->slot = i;
    g->slot_gen = gen;
    g->pins_fd = fd;
    return 0;
  }
  return -ENFILE;
}

/* Lets go of the slot at close: every mapping is gone by then, so the file records nothing. */
static void gslot_release(struct gdev *g) {
  if (g->pins) munmap(g->pins, (size_t)g->pins_cap * sizeof(struct sx_pin));
  if (g->pins_fd >= 0) close(g->pins_fd);
  g->pins = NULL;
  g->pins_fd = -1;
  if (!g->slot_gen) return;
  reg_lock(&g->m);
  struct sx_gslot *s = &g->m.reg->gdev[g->slot];
  if (LD(&s->live) && s->gen == g->slot_gen) {
    char path[SX_PATH_MAX];
    if (!pins_path(path, sizeof path, g->shmdir, g->slot, g->slot_gen)) unlink(path);
    ST(&s->live, 0);
  }
  reg_unlock(&g->m);
  g->slot_gen = 0;
}

/* Finds `count` consecutive free records, growing the file if needed. Registry lock held. */
static int pins_reserve(struct gdev *g, uint32_t count, uint32_t *first) {
  uint32_t run = 0;
  for (uint32_t i = g->pins_hint; i < g->pins_cap; i++) {
    if (LD(&g->pins[i].flags) & SX_PIN_USED) {
      run = 0;
    } else if (++run == count) {
      *first = i + 1 - count;
      if (*first == g->pins_hint) g->pins_hint = i + 1; /* pin_forget lowers it again on failure */
      return 0;
    }
  }
  uint32_t start = g->pins_cap - run, cap = g->pins_cap ? g->pins_cap : 64;
  while (cap < start + count) cap *= 2;
  if (ftruncate(g->pins_fd, (off_t)cap * sizeof(struct sx_pin)) < 0) return -errno;
  void *p = g->pins ? mremap(g->pins, (size_t)g->pins_cap * sizeof(struct sx_pin), (size_t)cap * sizeof(struct sx_pin), MREMAP_MAYMOVE)
                    : mmap(NULL, (size_t)cap * sizeof(struct sx_pin), PROT_READ | PROT_WRITE, MAP_SHARED, g->pins_fd, 0);
  if (p == MAP_FAILED) return -errno;
  g->pins = p;
  g->pins_cap = cap;
  *first = start;
  if (start == g->pins_hint) g->pins_hint = start + count;
  return 0;
}

static void pin_note(struct gdev *g, uint32_t at, uint32_t domid, uint32_t gen, uint32_t ref, int writable) {
  struct sx_pin *p = &g->pins[at];
  p->domid = domid;
  p->dom_gen = gen;
  p->ref = ref;
  ST(&p->flags, SX_PIN_USED | (writable ? SX_PIN_WRITABLE : 0));
}

static void pin_forget(struct gdev *g, uint32_t at) {
  ST(&g->pins[at].flags, 0);
  if (at < g->pins_hint) g->pins_hint = at;
}

int sx_gdev_open(const char *shmdir, uint32_t domid) {
  struct gdev *g = calloc(1, sizeof *g);
  if (!g) return -ENOMEM;
  snprintf(g->shmdir, sizeof g->shmdir, "%s", shmdir);
  g->domid = domid;
  g->pid = (uint32_t)getpid();
  for (uint32_t i = 0; i < SX_MAX_DOMS; i++) g->dc[i].ram_fd = -1;
  int rc = reg_open(shmdir, &g->m);
  if (rc) {
    free(g);
    return rc;
  }
  g->pins_fd = -1;
  if (domid >= SX_MAX_DOMS || !LD(&g->m.reg->dom[domid].live_gen)) {
    reg_close(&g->m);
    free(g);
    return -ESRCH;
  }
  /* A successor first releases what a dead predecessor left mapped (as its exit would have). */
  reg_lock(&g->m);
  reap_dead_gdevs_locked(g->m.reg, shmdir);
  rc = gslot_claim_locked(g);
  reg_unlock(&g->m);
  if (rc) {
    reg_close(&g->m);
    free(g);
    return rc;
  }
  int id = handle_alloc(H_GDEV, shmdir, g);
  if (id < 0) {
    gslot_release(g);
    reg_close(&g->m);
    free(g);
  }
  return id;
}

static int map_fail(uint64_t *out, uint32_t index, int st) {
  out[2] = index;
  return st;
}

/* out[0] = address, out[1] = mapping id, out[2] = index of the failing ref. */
int sx_gdev_map(int hid, uint32_t domid, const uint32_t *refs, uint32_t count, int writable, uint64_t *out) {
  struct gdev *g = handle_get(hid, H_GDEV);
  if (!g) return SX_ERRNO_BASE - EBADF;
  if (count == 0 || count > SX_MAX_MAP_PAGES) return SX_ERRNO_BASE - EINVAL;
  uint32_t *frames = malloc(count * sizeof *frames);
  uint32_t *saved = malloc(count * sizeof *saved);
  if (!frames || !saved) {
    free(frames);
    free(saved);
    return SX_ERRNO_BASE - ENOMEM;
  }
  memcpy(saved, refs, count * sizeof *saved);
  reg_lock(&g->m);
  dc_trim(g, SX_MAX_DOMS);
  struct dcache *c = dc_get(g, domid);
  if (!c) {
    reg_unlock(&g->m);
    free(frames);
    free(saved);
    return map_fail(out, 0, SX_GNTST_bad_domain);
  }
  const uint32_t map_op = writable ? SX_AUDIT_MAP_RW : SX_AUDIT_MAP_RO;
  const uint32_t unmap_op = writable ? SX_AUDIT_UNMAP_RW : SX_AUDIT_UNMAP_RO;
  uint32_t pin0 = 0;
  int prc = pins_reserve(g, count, &pin0);
  if (prc) {
    dc_trim(g, domid);
    reg_unlock(&g->m);
    free(frames);
    free(saved);
    return SX_ERRNO_BASE + prc;
  }
  for (uint32_t i = 0; i < count; i++) {
    int st = grant_pin(c, saved[i], writable, g->domid, &frames[i]);
    if (audit_on(c)) audit_record(g, c, saved[i], map_op, st, 0, 0);
    if (st) {
      for (uint32_t j = 0; j < i; j++) {
        pin_forget(g, pin0 + j);
        grant_unpin(c, saved[j], writable);
        if (audit_on(c)) audit_record(g, c, saved[j], unmap_op, 0, 0, 0);
      }
      dc_trim(g, domid);
      reg_unlock(&g->m);
      free(frames);
      free(saved);
      return map_fail(out, i, st);
    }
    pin_note(g, pin0 + i, domid, c->gen, saved[i], writable);
  }
  uint32_t gen = c->gen;
  int fd = c->ram_fd;
  size_t len = (size_t)count * SX_PAGE;
  int err = 0;
  uint8_t *base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    err = errno;
    base = NULL;
  }
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  for (uint32_t i = 0; base && i < count;) {
    uint32_t run = 1; /* coalesce runs of consecutive frames into one mmap */
    while (i + run < count && frames[i + run] == frames[i] + run) run++;
    void *p = mmap(base + (size_t)i * SX_PAGE, (size_t)run * SX_PAGE, prot, MAP_SHARED | MAP_FIXED, fd,
                   (off_t)frames[i] * SX_PAGE);
    if (p == MAP_FAILED) {
      err = errno;
      munmap(base, len);
      base = NULL;
    }
    i += run;
  }
  if (base) {
    struct mapping *nm = NULL;
    uint32_t slot = g->nmaps;
    for (uint32_t i = 0; i < g->nmaps; i++)
      if (!g->maps[i].base) {
        slot = i;
        break;
      }
    if (slot == g->nmaps) {
      nm = realloc(g->maps, (g->nmaps + 16) * sizeof *nm);
      if (!nm) {
        err = ENOMEM;
        munmap(base, len);
        base = NULL;
      } else {
        memset(nm + g->nmaps, 0, 16 * sizeof *nm);
        g->maps = nm;
        g->nmaps += 16;
      }
    }
    if (base) {
      struct mapping *mp = &g->maps[slot];
      mp->base = base;
      mp->count = count;
      mp->domid = domid;
      mp->gen = gen;
      mp->writable = writable;
      mp->refs = saved;
      mp->pin0 = pin0;
      saved = NULL;
      out[0] = (uint64_t)(uintptr_t)base;
      out[1] = slot + 1;
    }
  }
  if (!base) {
    for (uint32_t i = 0; i < count; i++) {
      pin_forget(g, pin0 + i);
      grant_unpin(c, saved[i], writable);
      if (audit_on(c)) audit_record(g, c, saved[i], unmap_op, 0, 0, 0);
    }
    dc_trim(g, domid);
  }
  reg_unlock(&g->m);
  free(frames);
  free(saved);
  return base ? 0 : SX_ERRNO_BASE - err;
}

static void gdev_unmap_one(struct gdev *g, struct mapping *mp) {
  munmap(mp->base, (size_t)mp->count * SX_PAGE);
  reg_lock(&g->m);
  /* A destroyed domain's grant table is gone: nothing to release (the pages stayed valid). */
  struct dcache *c = NULL;
  if (mp->domid < SX_MAX_DOMS && LD(&g->m.reg->dom[mp->domid].live_gen) == mp->gen) {
    c = dc_get(g, mp->domid);
    if (c && c->gen != mp->gen) c = NULL;
  }
  for (uint32_t i = 0; i < mp->count; i++) {
    pin_forget(g, mp->pin0 + i);
    if (c) {
      grant_unpin(c, mp->refs[i], mp->writable);
      if (audit_on(c))
        audit_record(g, c, mp->refs[i], mp->writable ? SX_AUDIT_UNMAP_RW : SX_AUDIT_UNMAP_RO, 0, 0, 0);
    }
  }
  uint32_t domid = mp->domid;
  free(mp->refs);
  memset(mp, 0, sizeof *mp);
  dc_trim(g, domid);
  reg_unlock(&g->m);
}

int sx_gdev_unmap(int hid, uint32_t id) {
  struct gdev *g = handle_get(hid, H_GDEV);
  if (!g) return -EBADF;
  if (id == 0 || id > g->nmaps || !g->maps[id - 1].base) return -EINVAL;
  gdev_unmap_one(g, &g->maps[id - 1]);
  return 0;
}

/* One segment, in Xen's order: domains, source grant, dest grant, then the page bounds. *scp and
 * *dcp return the domain caches of the granted sides it reached, for the audit. */
static inline int copy_checked(struct gdev *g, struct sx_copy_seg *s, struct dcache **scp, struct dcache **dcp) {
  uint32_t f = s->flags;
  uint32_t len = s->len;
  uint32_t ldom = g->domid;
  struct dcache *sc = NULL, *dc = NULL;
  if (!(f & (SX_GNTCOPY_source_gref | SX_GNTCOPY_dest_gref))) return SX_GNTST_bad_copy_arg;
  if (f & SX_GNTCOPY_source_gref) {
    sc = dc_get(g, s->source.foreign.domid);
    if (!sc) return SX_GNTST_bad_domain;
    *scp = sc;
  }
  if (f & SX_GNTCOPY_dest_gref) {
    dc = dc_get(g, s->dest.foreign.domid);
    if (!dc) return SX_GNTST_bad_domain;
    *dcp = dc;
  }
  const uint8_t *sp;
  uint8_t *dp;
  uint32_t frame;
  int st;
  if (sc) {
    if ((st = grant_check(sc, s->source.foreign.ref, 1, ldom, &frame))) return st;
    sp = sc->ram + (size_t)frame * SX_PAGE + s->source.foreign.offset;
  } else {
    if (!s->source.virt) return SX_GNTST_bad_virt_addr;
    sp = (const uint8_t *)(uintptr_t)s->source.virt;
  }
  if (dc) {
    if ((st = grant_check(dc, s->dest.foreign.ref, 0, ldom, &frame))) return st;
    dp = dc->ram + (size_t)frame * SX_PAGE + s->dest.foreign.offset;
  } else {
    if (!s->dest.virt) return SX_GNTST_bad_virt_addr;
    dp = (uint8_t *)(uintptr_t)s->dest.virt;
  }
  if ((sc && s->source.foreign.offset + len > SX_PAGE) || (dc && s->dest.foreign.offset + len > SX_PAGE))
    return SX_GNTST_bad_copy_arg;
  memmove(dp, sp, len);
  return SX_GNTST_okay;
}

static inline int copy_one(struct gdev *g, struct sx_copy_seg *s) {
  struct dcache *sc = NULL, *dc = NULL;
  int st = copy_checked(g, s, &sc, &dc);
  if (sc && audit_on(sc)) audit_record(g, sc, s->source.foreign.ref, SX_AUDIT_COPY_FROM, st, s->source.foreign.offset, s->len);
  if (dc && audit_on(dc)) audit_record(g, dc, s->dest.foreign.ref, SX_AUDIT_COPY_TO, st, s->dest.foreign.offset, s->len);
  return st;
}

/* IOCTL_GNTDEV_GRANT_COPY: every segment gets a status; returns how many failed. */
int sx_gdev_copy(int hid, struct sx_copy_seg *segs, uint32_t count) {
  struct gdev *g = handle_get(hid, H_GDEV);
  if (!g) return -EBADF;
  int failed = 0;
  for (uint32_t i = 0; i < count; i++) {
    int st = copy_one(g, &segs[i]);
    segs[i].status = (int16_t)st;
    failed += st != 0;
  }
  return failed;
}

static void gdev_free(struct gdev *g) {
  for (uint32_t i = 0; i < g->nmaps; i++)
    if (g->maps[i].base) gdev_unmap_one(g, &g->maps[i]);
  free(g->maps);
  gslot_release(g);
  for (uint32_t i = 0; i < SX_MAX_DOMS; i++) dc_release(&g->dc[i]);
  reg_close(&g->m);
  free(g);
}

int sx_gdev_close(int hid) {
  struct gdev *g = handle_take(hid, H_GDEV);
  if (!g) return -EBADF;
  gdev_free(g);
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* event-channel device (/dev/xen/evtchn): one Unix datagram socket per device is the pollable fd */

struct edev {
  char shmdir[SX_PATH_MAX];
  char evdir[SX_PATH_MAX];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  uint32_t domid;
  uint32_t idx; /* device index in the registry */
  uint32_t gen;
  int sock;
  struct regmap m;
  int peer_fd[SX_MAX_DEVS]; /* connected sockets to other devices' doorbells, by device index */
  uint32_t peer_gen[SX_MAX_DEVS];
  uint32_t npeers; /* peer_fd[] entries open */
  uint32_t rbuf[SX_READ_BATCH];
  struct iovec iov[SX_READ_BATCH];
  struct mmsghdr msgs[SX_READ_BATCH];
};

/*
 * Closes the cached sockets of devices that are gone (closed, replaced by a newer incarnation, or
 * reaped after their process died). Without it a backend kept one socket per guest it had ever
 * notified, until that device index came round again: 30 guests come and gone were 30 more fds.
 * A dead process's device counts as gone once reaped (reap_dead_locked, run by every bind); checking
 * each peer's process here would read /proc once per cached peer. Called where it is cheap and
 * fitting: before caching a new socket, and after an unbind (a guest just went away).
 */
static void peer_sweep(struct edev *h) {
  if (!h->npeers) return;
  for (uint32_t i = 0; i < SX_MAX_DEVS; i++) {
    if (h->peer_fd[i] < 0 || i == h->idx) continue;
    struct sx_dev *d = &h->m.reg->dev[i];
    if (LD(&d->live) && LD(&d->gen) == h->peer_gen[i]) continue;
    close(h->peer_fd[i]);
    h->peer_fd[i] = -1;
    h->npeers--;
  }
}

static void peer_drop(struct edev *h, uint32_t idx) {
  if (h->peer_fd[idx] < 0) return;
  close(h->peer_fd[idx]);
  h->peer_fd[idx] = -1;
  h->npeers--;
}

static int peer_socket(struct edev *h, uint32_t idx, uint32_t gen) {
  if (h->peer_fd[idx] >= 0 && h->peer_gen[idx] == gen) return h->peer_fd[idx];
  peer_drop(h, idx);
  peer_sweep(h);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (sock_path(a.sun_path, sizeof a.sun_path, h->evdir, idx, gen)) return -1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  h->peer_fd[idx] = fd;
  h->peer_gen[idx] = gen;
  h->npeers++;
  return fd;
}

/* Wakes the device that owns a port: one send(), or a flag if its queue is full. */
static void doorbell(struct edev *h, uint32_t owner, uint32_t gen, uint32_t port) {
  if (owner == 0 || owner > SX_MAX_DEVS) return;
  uint32_t idx = owner - 1;
  struct sx_dev *d = &h->m.reg->dev[idx];
  if (!LD(&d->live) || LD(&d->gen) != gen) return;
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = peer_socket(h, idx, gen);
    if (fd < 0) return;
    ssize_t r = send(fd, &port, sizeof port, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r == (ssize_t)sizeof port) return;
    if (r < 0 && errno == EINTR) {
      attempt--;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      /* The reader's queue is full, so it will wake; tell it to scan for what we could not
       * queue. Retry once in case it drained the queue before seeing the flag. */
      ST(&d->overflow, 1);
      (void)send(fd, &port, sizeof port, MSG_DONTWAIT | MSG_NOSIGNAL);
      return;
    }
    /* ECONNREFUSED / ENOENT: the reader went away or was replaced; reconnect once. */
    peer_drop(h, idx);
  }
}

/* A notification arriving at (dom, port): coalesce on PENDING while masked, else fire. */
static void port_fire(struct edev *h, uint32_t dom, uint32_t port) {
  struct sx_port *e = &h->m.reg->port[dom][port];
  uint32_t old = LD(&e->ev);
  for (;;) {
    if (old & SX_EV_MASKED) {
      if (old & SX_EV_PENDING) return;
      if (CAS(&e->ev, &old, old | SX_EV_PENDING)) return;
    } else if (CAS(&e->ev, &old, old | SX_EV_MASKED | SX_EV_FIRED)) {
      break;
    }
  }
  doorbell(h, LD(&e->owner_dev), LD(&e->owner_gen), port);
}

static inline int port_owned(struct edev *h, uint32_t port) {
  if (port == 0 || port >= SX_NR_PORTS) return 0;
  struct sx_port *e = &h->m.reg->port[h->domid][port];
  return LD(&e->state) != SX_ECS_FREE && LD(&e->owner_dev) == h->idx + 1 && LD(&e->owner_gen) == h->gen;
}

static void edev_free(struct edev *h, int release_ports) {
  if (release_ports && h->m.reg) {
    reg_lock(&h->m);
    struct sx_dev *d = &h->m.reg->dev[h->idx];
    if (LD(&d->live) && d->gen == h->gen) dev_free_locked(h->m.reg, h->idx);
    reg_unlock(&h->m);
  }
  if (h->sock >= 0) close(h->sock);
  if (h->path[0]) unlink(h->path);
  for (uint32_t i = 0; i < SX_MAX_DEVS; i++)
    if (h->peer_fd[i] >= 0) close(h->peer_fd[i]);
  reg_close(&h->m);
  free(h);
}

int sx_edev_open(const char *shmdir, const char *evdir, uint32_t domid) {
  struct edev *h = calloc(1, sizeof *h);
  if (!h) return -ENOMEM;
  h->sock = -1;
  h->m.fd = -1;
  for (uint32_t i = 0; i < SX_MAX_DEVS; i++) h->peer_fd[i] = -1;
  snprintf(h->shmdir, sizeof h->shmdir, "%s", shmdir);
  snprintf(h->evdir, sizeof h->evdir, "%s", evdir);
  h->domid = domid;
  int rc = reg_open(shmdir, &h->m);
  if (rc) {
    free(h);
    return rc;
  }
  if (domid >= SX_MAX_DOMS) {
    edev_free(h, 0);
    return -ESRCH;
  }
  /* Claim a device slot. */
  reg_lock(&h->m);
  struct sx_reg *reg = h->m.reg;
  reap_dead_locked(reg, shmdir, evdir);
  rc = -ENFILE;
  if (!LD(&reg->dom[domid].live_gen)) {
    rc = -ESRCH;
  } else {
    for (uint32_t i = 0; i < SX_MAX_DEVS; i++) {
      uint32_t idx = (reg->dev_hint + i) % SX_MAX_DEVS;
      struct sx_dev *d = &reg->dev[idx];
      if (LD(&d->live)) continue;
      d->gen++;
      if (d->gen == 0) d->gen = 1;
      d->pid = (uint32_t)getpid();
      d->starttime = proc_starttime(getpid(), NULL);
      d->domid = domid;
      d->overflow = 0;
      ST(&d->live, 1);
      reg->dev_hint = (idx + 1) % SX_MAX_DEVS;
      h->idx = idx;
      h->gen = d->gen;
      rc = 0;
      break;
    }
  }
  reg_unlock(&h->m);
  if (rc) {
    edev_free(h, 0);
    return rc;
  }
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (sock_path(a.sun_path, sizeof a.sun_path, evdir, h->idx, h->gen)) {
    edev_free(h, 1);
    return -ENAMETOOLONG;
  }
  h->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (h->sock < 0) {
    rc = -errno;
    edev_free(h, 1);
    return rc;
  }
  unlink(a.sun_path);
  if (bind(h->sock, (struct sockaddr *)&a, sizeof a) < 0) {
    rc = -errno;
    edev_free(h, 1);
    return rc;
  }
  memcpy(h->path, a.sun_path, sizeof h->path);
  for (int i = 0; i < SX_READ_BATCH; i++) {
    h->iov[i].iov_base = &h->rbuf[i];
    h->iov[i].iov_len = sizeof h->rbuf[i];
    h->msgs[i].msg_hdr.msg_iov = &h->iov[i];
    h->msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int id = handle_alloc(H_EDEV, shmdir, h);
  if (id < 0) edev_free(h, 1);
  return id;
}

int sx_edev_fd(int hid) {
  struct edev *h = handle_get(hid, H_EDEV);
  return h ? h->sock : -EBADF;
}

static int alloc_port_locked(struct sx_reg *reg, uint32_t dom) {
  for (uint32_t p = 1; p < SX_NR_PORTS; p++)
    if (LD(&reg->port[dom][p].state) == SX_ECS_FREE) return (int)p;
  return -ENOSPC;
}

/* EVTCHNOP_alloc_unbound for remote_dom, bound to this device. */
int sx_edev_bind_unbound(int hid, uint32_t remote_dom) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  if (remote_dom >= 0x7ff0) return -EINVAL; /* DOMID_FIRST_RESERVED */
  reg_lock(&h->m);
  struct sx_reg *reg = h->m.reg;
  reap_dead_locked(reg, h->shmdir, h->evdir);
  int rc;
  if (!LD(&reg->dom[h->domid].live_gen) || !LD(&reg->dev[h->idx].live) || reg->dev[h->idx].gen != h->gen) {
    rc = -ESRCH;
  } else if ((rc = alloc_port_locked(reg, h->domid)) > 0) {
    struct sx_port *e = &reg->port[h->domid][rc];
    e->remote_dom = remote_dom;
    e->remote_port = 0;
    e->owner_dev = h->idx + 1;
    e->owner_gen = h->gen;
    ST(&e->ev, 0);
    ST(&e->state, SX_ECS_UNBOUND);
  }
  reg_unlock(&h->m);
  return rc;
}

/* EVTCHNOP_bind_interdomain: -ESRCH no such domain, -EINVAL port not unbound-for-us. */
int sx_edev_bind_interdomain(int hid, uint32_t rdom, uint32_t rport) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  reg_lock(&h->m);
  struct sx_reg *reg = h->m.reg;
  reap_dead_locked(reg, h->shmdir, h->evdir);
  int rc;
  uint32_t ldom = h->domid;
  if (!LD(&reg->dom[ldom].live_gen) || !LD(&reg->dev[h->idx].live) || reg->dev[h->idx].gen != h->gen) {
    rc = -ESRCH;
    goto out;
  }
  if (rdom >= SX_MAX_DOMS || !LD(&reg->dom[rdom].live_gen)) {
    rc = -ESRCH;
    goto out;
  }
  if (rport == 0 || rport >= SX_NR_PORTS) {
    rc = -EINVAL;
    goto out;
  }
  struct sx_port *r = &reg->port[rdom][rport];
  if (LD(&r->state) != SX_ECS_UNBOUND || r->remote_dom != ldom) {
    rc = -EINVAL;
    goto out;
  }
  rc = alloc_port_locked(reg, ldom);
  if (rc < 0) goto out;
  uint32_t lport = (uint32_t)rc;
  struct sx_port *l = &reg->port[ldom][lport];
  l->remote_dom = rdom;
  l->remote_port = rport;
  l->owner_dev = h->idx + 1;
  l->owner_gen = h->gen;
  ST(&l->ev, 0);
  ST(&l->state, SX_ECS_INTERDOMAIN);
  r->remote_dom = ldom;
  r->remote_port = lport;
  ST(&r->state, SX_ECS_INTERDOMAIN);
  /* As Xen does: notifications sent to the unbound port may have been lost, so the new local
   * port is conservatively made pending (the binder sees one event). */
  port_fire(h, ldom, lport);
out:
  reg_unlock(&h->m);
  return rc;
}

int sx_edev_unbind(int hid, uint32_t port) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  if (port == 0 || port >= SX_NR_PORTS) return -EINVAL;
  reg_lock(&h->m);
  int rc = 0;
  if (!port_owned(h, port)) rc = -ENOTCONN;
  else port_close_locked(h->m.reg, h->domid, port);
  reg_unlock(&h->m);
  peer_sweep(h);
  return rc;
}

/* EVTCHNOP_send: atomic state update on the peer port and at most one send(). */
int sx_edev_notify(int hid, uint32_t port) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  if (port == 0 || port >= SX_NR_PORTS) return -EINVAL;
  if (!port_owned(h, port)) return -ENOTCONN;
  struct sx_port *e = &h->m.reg->port[h->domid][port];
  if (LD(&e->state) != SX_ECS_INTERDOMAIN) return 0; /* unbound: Xen silently drops it */
  uint32_t rd = LD(&e->remote_dom), rp = LD(&e->remote_port);
  if (rd >= SX_MAX_DOMS || rp == 0 || rp >= SX_NR_PORTS) return 0;
  struct sx_port *r = &h->m.reg->port[rd][rp];
  if (LD(&r->state) != SX_ECS_INTERDOMAIN || LD(&r->remote_dom) != h->domid || LD(&r->remote_port) != port)
    return 0;
  port_fire(h, rd, rp);
  return 0;
}

static inline int take_fired(struct edev *h, uint32_t port) {
  if (!port_owned(h, port)) return 0;
  struct sx_port *e = &h->m.reg->port[h->domid][port];
  return (__atomic_fetch_and(&e->ev, ~SX_EV_FIRED, __ATOMIC_ACQ_REL) & SX_EV_FIRED) != 0;
}

/* read(): up to cap fired ports, non-blocking. */
int sx_edev_read(int hid, uint32_t *out, uint32_t cap) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  uint32_t n = 0;
  while (n < cap) {
    uint32_t want = cap - n < SX_READ_BATCH ? cap - n : SX_READ_BATCH;
    int r = recvmmsg(h->sock, h->msgs, want, MSG_DONTWAIT, NULL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (int i = 0; i < r; i++) {
      if (h->msgs[i].msg_len != sizeof(uint32_t)) continue;
      uint32_t p = h->rbuf[i];
      if (take_fired(h, p)) out[n++] = p;
    }
    if ((uint32_t)r < want) break;
  }
  struct sx_dev *d = &h->m.reg->dev[h->idx];
  if (n < cap && LD(&d->overflow) && __atomic_exchange_n(&d->overflow, 0, __ATOMIC_ACQ_REL)) {
    for (uint32_t p = 1; p < SX_NR_PORTS; p++) {
      if (!(LD(&h->m.reg->port[h->domid][p].ev) & SX_EV_FIRED)) continue;
      if (n == cap) { /* no room: keep the flag and make sure we wake again */
        ST(&d->overflow, 1);
        doorbell(h, h->idx + 1, h->gen, 0);
        break;
      }
      if (take_fired(h, p)) out[n++] = p;
    }
  }
  return (int)n;
}

/* write(): unmask; a port notified while masked fires again right away. */
int sx_edev_unmask(int hid, const uint32_t *ports, uint32_t count) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t p = ports[i];
    if (!port_owned(h, p)) continue; /* like Linux's evtchn_write: ignored */
    struct sx_port *e = &h->m.reg->port[h->domid][p];
    uint32_t old = LD(&e->ev);
    for (;;) {
      if (!(old & SX_EV_MASKED)) break;
      if (old & SX_EV_PENDING) {
        if (CAS(&e->ev, &old, (old & ~SX_EV_PENDING) | SX_EV_FIRED)) {
          doorbell(h, h->idx + 1, h->gen, p);
          break;
        }
      } else if (CAS(&e->ev, &old, old & ~SX_EV_MASKED)) {
        break;
      }
    }
  }
  return 0;
}

int sx_edev_close(int hid) {
  struct edev *h = handle_take(hid, H_EDEV);
  if (!h) return -EBADF;
  edev_free(h, 1);
  return 0;
}

/* Test/diagnostic: the delivery state of a port of this device's domain, or -errno. */
int sx_edev_port_state(int hid, uint32_t port, uint32_t *out) {
  struct edev *h = handle_get(hid, H_EDEV);
  if (!h) return -EBADF;
  if (port >= SX_NR_PORTS) return -EINVAL;
  struct sx_port *e = &h->m.reg->port[h->domid][port];
  out[0] = LD(&e->state);
  out[1] = LD(&e->remote_dom);
  out[2] = LD(&e->remote_port);
  out[3] = LD(&e->ev);
  return 0;
}

/* Blocking poll on one fd: > 0 revents, 0 timeout, -errno. */
int sx_poll(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    return r ? p.revents : 0;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* guest view of a domain: its RAM, its grant table, its own allocations */

struct guest {
  char shmdir[SX_PATH_MAX];
  uint32_t domid;
  uint32_t gen;
  uint32_t pages;
  uint8_t *ram;
  uint8_t *gnt;
  size_t gnt_len;
  uint32_t gref_hint;
  uint32_t page_hint;
};

int sx_guest_open(const char *shmdir, uint32_t domid) {
  if (domid >= SX_MAX_DOMS) return -ESRCH;
  struct regmap m;
  int rc = reg_open(shmdir, &m);
  if (rc) return rc;
  uint32_t gen = LD(&m.reg->dom[domid].live_gen);
  uint32_t pages = m.reg->dom[domid].pages;
  reg_close(&m);
  if (!gen) return -ESRCH;
  char ram[SX_PATH_MAX], gnt[SX_PATH_MAX];
  if (dom_file(ram, sizeof ram, shmdir, domid, "ram") || dom_file(gnt, sizeof gnt, shmdir, domid, "gnttab"))
    return -ENAMETOOLONG;
  int fr = open(ram, O_RDWR | O_CLOEXEC);
  if (fr < 0) return errno == ENOENT ? -ESRCH : -errno;
  int fg = open(gnt, O_RDWR | O_CLOEXEC);
  if (fg < 0) {
    rc = errno == ENOENT ? -ESRCH : -errno;
    close(fr);
    return rc;
  }
  struct guest *g = calloc(1, sizeof *g);
  if (!g) {
    close(fr);
    close(fg);
    return -ENOMEM;
  }
  snprintf(g->shmdir, sizeof g->shmdir, "%s", shmdir);
  g->domid = domid;
  g->gen = gen;
  g->pages = pages;
  g->gnt_len = gnt_file_len(pages);
  g->ram = map_file(fr, (size_t)pages * SX_PAGE, PROT_READ | PROT_WRITE);
  rc = g->ram ? 0 : -errno;
  if (!rc) {
    g->gnt = map_file(fg, g->gnt_len, PROT_READ | PROT_WRITE);
    rc = g->gnt ? 0 : -errno;
  }
  close(fr);
  close(fg);
  g->gref_hint = SX_NR_RESERVED_GREFS;
  if (!rc) {
    int id = handle_alloc(H_GUEST, shmdir, g);
    if (id >= 0) return id;
    rc = id;
  }
  if (g->ram) munmap(g->ram, (size_t)pages * SX_PAGE);
  if (g->gnt) munmap(g->gnt, g->gnt_len);
  free(g);
  return rc;
}

void *sx_guest_ram(int hid) {
  struct guest *g = handle_get(hid, H_GUEST);
  return g ? g->ram : NULL;
}

void *sx_guest_gnttab(int hid) {
  struct guest *g = handle_get(hid, H_GUEST);
  return g ? g->gnt : NULL;
}

int sx_guest_pages(int hid) {
  struct guest *g = handle_get(hid, H_GUEST);
  return g ? (int)g->pages : -EBADF;
}

int sx_guest_alloc_page(int hid) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  uint8_t *alloc = g->gnt + SX_GNT_PALLOC_OFF;
  for (uint32_t i = 0; i < g->pages; i++) {
    uint32_t p = (g->page_hint + i) % g->pages;
    uint8_t zero = 0;
    if (LD(&alloc[p]) == 0 && CAS(&alloc[p], &zero, 1)) {
      g->page_hint = (p + 1) % g->pages;
      return (int)p;
    }
  }
  return -ENOMEM;
}

int sx_guest_free_page(int hid, uint32_t frame) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  if (frame >= g->pages) return -EINVAL;
  uint8_t one = 1;
  return CAS(&g->gnt[SX_GNT_PALLOC_OFF + frame], &one, 0) ? 0 : -EINVAL;
}

/* gnttab_grant_foreign_access: frame and domid first, then the flags (release). */
int sx_guest_grant(int hid, uint32_t rdom, uint32_t frame, int readonly) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  if (rdom >= 0x7ff0) return -EINVAL;
  if (frame >= g->pages) return -EINVAL;
  uint8_t *alloc = g->gnt + SX_GNT_GALLOC_OFF;
  uint32_t span = SX_NR_GNT - SX_NR_RESERVED_GREFS;
  for (uint32_t i = 0; i < span; i++) {
    uint32_t ref = SX_NR_RESERVED_GREFS + (g->gref_hint - SX_NR_RESERVED_GREFS + i) % span;
    uint8_t zero = 0;
    if (LD(&alloc[ref]) != 0 || !CAS(&alloc[ref], &zero, 1)) continue;
    g->gref_hint = ref + 1 >= SX_NR_GNT ? SX_NR_RESERVED_GREFS : ref + 1;
    uint32_t *w = (uint32_t *)(g->gnt + (size_t)ref * 8);
    ST(w + 1, frame);
    ST(w, (rdom << 16) | SX_GTF_permit_access | (readonly ? SX_GTF_readonly : 0));
    return (int)ref;
  }
  return -ENOSPC;
}

/* Releases the pins of grant devices whose process died; 0 if the registry could not be opened. */
static int guest_reap_dead(struct guest *g) {
  struct regmap m;
  if (reg_open(g->shmdir, &m)) return 0;
  reg_lock(&m);
  reap_dead_gdevs_locked(m.reg, g->shmdir);
  reg_unlock(&m);
  reg_close(&m);
  return 1;
}

/* gnttab_end_foreign_access_ref: 1 done, 0 still in use by a mapping, -errno bad ref. */
int sx_guest_end(int hid, uint32_t ref) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  if (ref < SX_NR_RESERVED_GREFS || ref >= SX_NR_GNT) return -EINVAL;
  uint8_t *alloc = g->gnt + SX_GNT_GALLOC_OFF;
  if (!LD(&alloc[ref])) return -EINVAL;
  uint32_t *w = (uint32_t *)(g->gnt + (size_t)ref * 8);
  uint32_t old = LD(w);
  for (int reaped = 0;;) {
    if (old & (SX_GTF_reading | SX_GTF_writing)) {
      /* Still mapped, unless by a process that died: Xen would have seen its kernel unmap it. */
      if (reaped || !guest_reap_dead(g)) return 0;
      reaped = 1;
      old = LD(w);
      continue;
    }
    if (CAS(w, &old, old & 0xffff0000u)) break;
  }
  ST(&alloc[ref], 0);
  return 1;
}

/* Grant-access audit of this domain (simxen.h): enabling starts a fresh window. */
int sx_guest_audit_enable(int hid, int on) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  struct sx_audit *a = (struct sx_audit *)(g->gnt + SX_GNT_AUDIT_OFF);
  if (on) {
    ST(&a->cap, SX_AUDIT_CAP);
    ST(&a->base, LD(&a->head));
  }
  ST(&a->enabled, on ? 1u : 0u);
  return 0;
}

int sx_guest_audit_reset(int hid) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  struct sx_audit *a = (struct sx_audit *)(g->gnt + SX_GNT_AUDIT_OFF);
  ST(&a->base, LD(&a->head));
  return 0;
}

/* Copies up to cap complete records of the current window to out, oldest first; returns how many.
 * counts[0] = accesses since the window began, [1] = dropped (overwritten: the log keeps the
 * newest SX_AUDIT_CAP), [2] = still being written (left for the next read), [3] = 1 if on.
 * consume: the next window begins after the last record returned, so nothing racing with the read
 * is lost (a record still being written is returned by the next read). */
int sx_guest_audit_read(int hid, struct sx_audit_rec *out, uint32_t cap, uint64_t *counts, int consume) {
  struct guest *g = handle_get(hid, H_GUEST);
  if (!g) return -EBADF;
  struct sx_audit *a = (struct sx_audit *)(g->gnt + SX_GNT_AUDIT_OFF);
  uint64_t base = LD(&a->base), head = LD(&a->head);
  if (head < base) head = base; /* a reset between the two loads */
  uint64_t total = head - base;
  uint64_t k = head - base > SX_AUDIT_CAP ? head - SX_AUDIT_CAP : base;
  uint64_t dropped = k - base;
  uint32_t n = 0;
  for (; k < head && n < cap; k++) {
    struct sx_audit_rec *r = &a->rec[k % SX_AUDIT_CAP];
    uint32_t want = (uint32_t)(k + 1);
    uint32_t s1 = LD(&r->stamp);
    if (s1 == want) {
      out[n] = *r;
      __atomic_thread_fence(__ATOMIC_ACQUIRE);
      if (LD(&r->stamp) == want) {
        n++;
        continue;
      }
      s1 = LD(&r->stamp);
    }
    if ((int32_t)(s1 - want) > 0) { /* overwritten by a newer access */
      dropped++;
      continue;
    }
    break; /* still being written: stop here, the next read starts with it */
  }
  if (consume) __atomic_compare_exchange_n(&a->base, &base, k, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  counts[0] = total;
  counts[1] = dropped;
  counts[2] = head - k;
  counts[3] = LD(&a->enabled);
  return (int)n;
}

static void guest_free(struct guest *g) {
  munmap(g->ram, (size_t)g->pages * SX_PAGE);
  munmap(g->gnt, g->gnt_len);
  free(g);
}

int sx_guest_close(int hid) {
  struct guest *g = handle_take(hid, H_GUEST);
  if (!g) return -EBADF;
  guest_free(g);
  return 0;
}

/* ------------------------------------------------------------------------------------------ */

/* Closes every handle of this process on shmdir, then removes the shared-memory files. */
int sx_teardown(const char *shmdir) {
  for (int i = 0; i < SX_MAX_HANDLES; i++) {
    pthread_mutex_lock(&htab_lock);
    int kind = htab[i].kind;
    void *obj = NULL;
    if (kind && strcmp(htab[i].shmdir, shmdir) == 0) {
      obj = htab[i].obj;
      htab[i].kind = 0;
      htab[i].id = 0;
      htab[i].obj = NULL;
    }
    pthread_mutex_unlock(&htab_lock);
    if (!obj) continue;
    if (kind == H_GDEV) gdev_free(obj);
    else if (kind == H_EDEV) edev_free(obj, 1);
    else if (kind == H_GUEST) guest_free(obj);
  }
  DIR *d = opendir(shmdir);
  if (!d) return errno == ENOENT ? 0 : -errno;
  struct dirent *de;
  char path[SX_PATH_MAX];
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (!path_join(path, sizeof path, shmdir, de->d_name)) unlink(path);
  }
  closedir(d);
  if (rmdir(shmdir) < 0 && errno != ENOENT) return -errno;
  return 0;
}

/* Layout facts for tests: 0 registry size, 1 grant entries, 2 ports per domain, 3 max domains,
 * 4 default pages, 5 audit log capacity, 6 audit record size. */
int sx_layout(int what) {
  switch (what) {
    case 0: return (int)sizeof(struct sx_reg);
    case 1: return (int)SX_NR_GNT;
    case 2: return (int)SX_NR_PORTS;
    case 3: return (int)SX_MAX_DOMS;
    case 4: return (int)SX_DEFAULT_PAGES;
    case 5: return (int)SX_AUDIT_CAP;
    case 6: return (int)sizeof(struct sx_audit_rec);
    default: return -EINVAL;
  }
}
