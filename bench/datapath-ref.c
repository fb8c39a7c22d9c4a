/*
 * The C reference for the tx, rx and bidir scenarios (bench/scenarios/, via bench/lib/datapath-rig.ts):
 * the same ring-consume-and-copy loops the workers run in TS (workers/tx.ts, workers/rx.ts), written
 * in C and compiled with gcc -O2. Same ring, same checks, same batched grant copy (the sim's
 * sx_gdev_copy, the very function the TS path reaches through SimGrantDevice.copy), same response
 * writes and one push per batch; no JS in between.
 * Built by the bench: gcc -O2 -shared -fPIC datapath-ref.c -L<native/build> -lsimxen.
 */
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

struct seg {
  union {
    uint64_t virt;
    struct { uint32_t ref; uint16_t offset; uint16_t domid; } foreign;
  } source, dest;
  uint16_t len, flags;
  int16_t status;
  uint16_t pad;
};
int sx_gdev_copy(int hid, struct seg *segs, uint32_t count);

/*
 * Every loop here (and the guest's, and the TS loop through ref_yield) gives the CPU away when it
 * finds nothing to do: on a 2-vCPU VM with other load, producer and consumer may share one CPU, and
 * two spinners would then hand over only at the scheduler's tick (~40 k packets/s, measured).
 */
void ref_yield(void) { sched_yield(); }

#define GNTCOPY_source_gref 1
#define GNTCOPY_dest_gref 2
#define RING 256u

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

struct txreq { uint32_t gref; uint16_t offset, flags, id, size; };
struct txrsp { uint16_t id; int16_t status; };
struct rxreq { uint16_t id, pad; uint32_t gref; };
struct rxrsp { uint16_t id, offset, flags; int16_t status; };

/* One direction's state across passes: the ring, the backend's private indexes, its batch. */
struct path {
  uint8_t *ring;
  int gdev;
  uint32_t domid, cons, rsp;
  uint8_t *frames;
  uint32_t stride, budget;
  struct seg *segs;
  uint32_t *lens;
  const uint8_t *tmpl;
  uint32_t tlen;
  uint16_t ids[RING];
  int32_t code[RING];
};

static void path_init(struct path *p, uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t budget, uint32_t *lens) {
  p->ring = ring; p->gdev = gdev; p->domid = domid; p->frames = frames; p->stride = stride;
  p->segs = segs; p->budget = budget; p->lens = lens; p->tmpl = 0; p->tlen = 0;
  p->cons = p->rsp = *(volatile uint32_t *)(ring + 8);
}

/* One tx pass (up to `budget` requests): packets copied out of the guest, 0 if none waiting, -1 on overflow. */
static long tx_pass(struct path *t) {
  volatile uint32_t *req_prod = (uint32_t *)t->ring, *rsp_prod = (uint32_t *)(t->ring + 8);
  uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
  if (prod - t->rsp > RING) return -1;
  uint32_t n = 0, r = 0, cons = t->cons;
  while (cons != prod && n < t->budget) {
    struct txreq q;
    memcpy(&q, t->ring + 64 + (cons & (RING - 1)) * 12, sizeof q); /* copy once */
    cons++;
    t->ids[r] = q.id;
    if ((q.flags & 12) || q.size < 14 || q.offset + q.size > 4096) { t->code[r++] = -1; continue; }
    struct seg *s = &t->segs[n];
    s->source.foreign.ref = q.gref;
    s->source.foreign.offset = q.offset;
    s->source.foreign.domid = (uint16_t)t->domid;
    s->dest.virt = (uint64_t)(uintptr_t)(t->frames + (size_t)n * t->stride);
    s->len = q.size;
    s->flags = GNTCOPY_source_gref;
    s->status = 0;
    t->lens[n] = q.size;
    t->code[r++] = (int32_t)n++;
  }
  t->cons = cons;
  if (r == 0) return 0;
  if (n) sx_gdev_copy(t->gdev, t->segs, n);
  for (uint32_t k = 0; k < r; k++) {
    struct txrsp *p = (struct txrsp *)(t->ring + 64 + (t->rsp & (RING - 1)) * 12);
    p->id = t->ids[k];
    p->status = t->code[k] >= 0 && t->segs[t->code[k]].status == 0 ? 0 : -1;
    t->rsp++;
  }
  __atomic_store_n(rsp_prod, t->rsp, __ATOMIC_SEQ_CST);
  return n;
}

/* receive() from the generator: a batch of copies of one template frame, as the source peer. */
static void rx_fill(struct path *x) {
  for (uint32_t i = 0; i < x->budget; i++) {
    memcpy(x->frames + (size_t)i * x->stride, x->tmpl, x->tlen);
    x->lens[i] = x->tlen;
  }
}

/*
 * Delivers frames 0..count-1 of the batch into as many posted requests as there are, drops the rest.
 * Frames delivered, 0 if no request, -1 on overflow.
 */
static long rx_deliver(struct path *x, uint32_t count) {
  volatile uint32_t *req_prod = (uint32_t *)x->ring, *rsp_prod = (uint32_t *)(x->ring + 8);
  uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
  if (prod - x->cons > RING) return -1;
  uint32_t avail = prod - x->cons, n = 0;
  for (uint32_t i = 0; i < count && n < avail; i++) {
    if (x->lens[i] > 4094) continue;
    struct rxreq q;
    memcpy(&q, x->ring + 64 + ((x->cons + n) & (RING - 1)) * 8, sizeof q);
    x->ids[n] = q.id;
    struct seg *s = &x->segs[n];
    s->source.virt = (uint64_t)(uintptr_t)(x->frames + (size_t)i * x->stride);
    s->dest.foreign.ref = q.gref;
    s->dest.foreign.offset = 2;
    s->dest.foreign.domid = (uint16_t)x->domid;
    s->len = (uint16_t)x->lens[i];
    s->flags = GNTCOPY_dest_gref;
    s->status = 0;
    n++;
  }
  if (!n) return 0;
  sx_gdev_copy(x->gdev, x->segs, n);
  for (uint32_t k = 0; k < n; k++) {
    struct rxrsp *p = (struct rxrsp *)(x->ring + 64 + ((x->cons + k) & (RING - 1)) * 8);
    p->id = x->ids[k];
    p->flags = 0;
    if (x->segs[k].status == 0) { p->offset = 2; p->status = (int16_t)x->segs[k].len; }
    else { p->offset = 0; p->status = -1; }
  }
  x->cons += n;
  __atomic_store_n(rsp_prod, x->cons, __ATOMIC_SEQ_CST);
  return n;
}

/* One rx pass from the generator: a full batch received, as many delivered as requests are posted. */
static long rx_pass(struct path *x) {
  rx_fill(x);
  return rx_deliver(x, x->budget);
}

static struct path tx_state, rx_state;

/*
 * Runs pass(p, arg) for `ms` milliseconds, the time read once every 64 passes, yielding the CPU
 * after a pass that found nothing (every request the bench posts is valid): packets passed, or -1
 * when a pass failed.
 */
typedef long (*pass_fn)(struct path *, uint32_t);
static int run_for(int ms, pass_fn pass, struct path *p, uint32_t arg) {
  long total = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    long n = pass(p, arg);
    if (n < 0) return -1;
    if (n == 0) sched_yield();
    total += n;
  }
  return (int)total;
}
static long tx_pass_of(struct path *t, uint32_t unused) { (void)unused; return tx_pass(t); }
static long rx_pass_of(struct path *x, uint32_t unused) { (void)unused; return rx_pass(x); }

/* Guest tx for `ms` milliseconds: returns packets copied out of the guest. */
int ref_tx(uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t budget, uint32_t *lens, int ms) {
  struct path *t = &tx_state;
  path_init(t, ring, gdev, domid, frames, stride, segs, budget, lens);
  return run_for(ms, tx_pass_of, t, 0);
}

/* Guest rx for `ms` milliseconds from a generator (one template frame, as the source peer): frames delivered. */
int ref_rx(uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t batch, uint32_t *lens, const uint8_t *tmpl, uint32_t tlen, int ms) {
  struct path *x = &rx_state;
  path_init(x, ring, gdev, domid, frames, stride, segs, batch, lens);
  x->tmpl = tmpl; x->tlen = tlen;
  return run_for(ms, rx_pass_of, x, 0);
}

/*
 * Both directions of one vif for `ms`, as one worker serves it: a tx pass then an rx pass per
 * wake-up, yielding only when neither had work. Returns tx + rx packets; *rx_out gets the rx part.
 */
int ref_bidir(uint8_t *txring, uint8_t *rxring, int gdev, uint32_t domid, uint8_t *txframes, uint32_t txstride, uint8_t *rxframes, uint32_t rxstride, struct seg *txsegs, struct seg *rxsegs, uint32_t budget, uint32_t *txlens, uint32_t *rxlens, const uint8_t *tmpl, uint32_t tlen, int ms, int32_t *rx_out) {
  struct path *t = &tx_state, *x = &rx_state;
  path_init(t, txring, gdev, domid, txframes, txstride, txsegs, budget, txlens);
  path_init(x, rxring, gdev, domid, rxframes, rxstride, rxsegs, budget, rxlens);
  x->tmpl = tmpl; x->tlen = tlen;
  long txn = 0, rxn = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    long a = tx_pass(t), b = rx_pass(x);
    if (a < 0 || b < 0) return -1;
    if (a == 0 && b == 0) sched_yield();
    txn += a;
    rxn += b;
  }
  *rx_out = (int32_t)rxn;
  return (int)(txn + rxn);
}

/* The in-daemon switch (native/l2switch.c), the same functions SwitchPeer.send / receive call. */
int sw_send(void *h, uint32_t src, const uint8_t *base, uint32_t stride, const uint32_t *lens, uint32_t count, const uint32_t *meta);
int sw_recv(void *h, uint32_t dst, uint8_t *base, uint32_t stride, uint32_t *lens, uint32_t capacity, uint32_t *meta);

/*
 * Guest to guest through the switch for `ms`: tx pass on vif A's ring, the batch sent from port A,
 * port B's batch received and delivered into vif B's rx ring. Returns frames delivered to B.
 */
int ref_switch(uint8_t *txring, uint8_t *rxring, int gdev, uint32_t domid, uint8_t *txframes, uint32_t txstride, uint8_t *rxframes, uint32_t rxstride, struct seg *txsegs, struct seg *rxsegs, uint32_t budget, uint32_t *txlens, uint32_t *rxlens, void *fabric, uint32_t port_a, uint32_t port_b, int ms) {
  struct path *t = &tx_state, *x = &rx_state;
  path_init(t, txring, gdev, domid, txframes, txstride, txsegs, budget, txlens);
  path_init(x, rxring, gdev, domid, rxframes, rxstride, rxsegs, budget, rxlens);
  long total = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    long a = tx_pass(t);
    if (a < 0) return -1;
    if (a > 0) sw_send(fabric, port_a, t->frames, t->stride, t->lens, (uint32_t)a, 0);
    int m = sw_recv(fabric, port_b, x->frames, x->stride, x->lens, x->budget, 0);
    long b = m > 0 ? rx_deliver(x, (uint32_t)m) : 0;
    if (b < 0) return -1;
    if (a == 0 && m <= 0) sched_yield();
    total += b;
  }
  return (int)total;
}

/* The producer alone: answer every request without reading it, for `ms`: requests acknowledged. */
int ref_ack(uint8_t *ring, int ms) {
  volatile uint32_t *req_prod = (uint32_t *)ring, *rsp_prod = (uint32_t *)(ring + 8);
  uint32_t rsp = *rsp_prod;
  long total = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
    if (prod == rsp) { sched_yield(); continue; }
    total += prod - rsp;
    rsp = prod;
    __atomic_store_n(rsp_prod, rsp, __ATOMIC_SEQ_CST);
  }
  return (int)total;
}

/* Two producers alone (bidir): both rings answered in turn, for `ms`: requests acknowledged on both. */
int ref_ack2(uint8_t *ring1, uint8_t *ring2, int ms) {
  uint8_t *rings[2] = { ring1, ring2 };
  uint32_t rsp[2] = { *(volatile uint32_t *)(ring1 + 8), *(volatile uint32_t *)(ring2 + 8) };
  long total = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    int idle = 1;
    for (int k = 0; k < 2; k++) {
      uint32_t prod = __atomic_load_n((volatile uint32_t *)rings[k], __ATOMIC_SEQ_CST);
      if (prod == rsp[k]) continue;
      idle = 0;
      total += prod - rsp[k];
      rsp[k] = prod;
      __atomic_store_n((volatile uint32_t *)(rings[k] + 8), rsp[k], __ATOMIC_SEQ_CST);
    }
    if (idle) sched_yield();
  }
  return (int)total;
}

/*
 * The gso scenario's references: 64 KiB TCP frames both ways with feature-sg + feature-gso-tcpv4, laid
 * out as workers/rx.ts and workers/tx.ts lay them (netback's layouts), one batched copy per pass.
 */
#define NETRXF_data_validated 1
#define NETRXF_csum_blank 2
#define NETRXF_more_data 4
#define NETRXF_extra_info 8
#define NETTXF_more_data 4
#define NETTXF_extra_info 8
#define GSO_FRAME_SLOTS 18 /* the most buffers one frame takes: what the TS path reads against */

struct extra { uint8_t type, flags; uint16_t size; uint8_t gso_type, pad; uint16_t features; };

/*
 * One rx pass: as many template frames received as the posted requests take at GSO_FRAME_SLOTS
 * apiece (what RxPath reads), each laid over ceil(len/4096) data slots plus the GSO extra in the
 * second slot. Frames delivered, 0 if no room, -1 on overflow.
 */
static long rx_gso_pass(struct path *x, uint32_t mss) {
  volatile uint32_t *req_prod = (uint32_t *)x->ring, *rsp_prod = (uint32_t *)(x->ring + 8);
  uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
  if (prod - x->cons > RING) return -1;
  uint32_t avail = prod - x->cons;
  uint32_t k = avail / GSO_FRAME_SLOTS;
  if (k > x->budget) k = x->budget;
  if (k == 0) return 0;
  for (uint32_t i = 0; i < k; i++) { memcpy(x->frames + (size_t)i * x->stride, x->tmpl, x->tlen); x->lens[i] = x->tlen; }
  uint32_t used = 0, nseg = 0, slot_seg[RING];
  for (uint32_t i = 0; i < k; i++) {
    uint32_t len = x->lens[i], need = (len + 4095) / 4096 + 1, off = 0;
    if (used + need > avail) break;
    for (uint32_t j = 0; j < need; j++) {
      uint32_t at = used + j;
      struct rxreq q;
      memcpy(&q, x->ring + 64 + ((x->cons + at) & (RING - 1)) * 8, sizeof q);
      x->ids[at] = q.id;
      if (j == 1) { slot_seg[at] = UINT32_MAX; x->code[at] = (int32_t)i; continue; }
      uint32_t chunk = len - off > 4096 ? 4096 : len - off;
      struct seg *s = &x->segs[nseg];
      s->source.virt = (uint64_t)(uintptr_t)(x->frames + (size_t)i * x->stride + off);
      s->dest.foreign.ref = q.gref;
      s->dest.foreign.offset = 0;
      s->dest.foreign.domid = (uint16_t)x->domid;
      s->len = (uint16_t)chunk;
      s->flags = GNTCOPY_dest_gref;
      s->status = 0;
      off += chunk;
      slot_seg[at] = nseg++;
      x->code[at] = (j == 0 ? NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info : 0) | (off < len ? NETRXF_more_data : 0);
    }
    used += need;
  }
  sx_gdev_copy(x->gdev, x->segs, nseg);
  for (uint32_t at = 0; at < used; at++) {
    uint8_t *p = x->ring + 64 + ((x->cons + at) & (RING - 1)) * 8;
    if (slot_seg[at] == UINT32_MAX) {
      struct extra e = { 1, 0, (uint16_t)mss, 1, 0, 0 };
      memcpy(p, &e, sizeof e);
      continue;
    }
    struct rxrsp r = { x->ids[at], 0, (uint16_t)x->code[at], x->segs[slot_seg[at]].status == 0 ? (int16_t)x->segs[slot_seg[at]].len : -1 };
    memcpy(p, &r, sizeof r);
  }
  x->cons += used;
  __atomic_store_n(rsp_prod, x->cons, __ATOMIC_SEQ_CST);
  return k;
}

/* Guest rx of 64 KiB GSO frames for `ms` from a generator (one template frame): frames delivered. */
int ref_rx_gso(uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t batch, uint32_t *lens, const uint8_t *tmpl, uint32_t tlen, uint32_t mss, int ms) {
  struct path *x = &rx_state;
  path_init(x, ring, gdev, domid, frames, stride, segs, batch, lens);
  x->tmpl = tmpl; x->tlen = tlen;
  return run_for(ms, rx_gso_pass, x, mss);
}

/*
 * One tx pass over multi-slot GSO packets (first slot: the packet's size, more_data|extra_info; a
 * GSO extra; fragments): each packet's slots copied one after another into its frame slot, one
 * response per slot (the extra's NETIF_RSP_NULL), up to `budget` packets and a ring of slots.
 * Packets copied, 0 if none waiting, -1 on overflow or a malformed packet (the bench posts none).
 */
static long tx_gso_pass(struct path *t) {
  volatile uint32_t *req_prod = (uint32_t *)t->ring, *rsp_prod = (uint32_t *)(t->ring + 8);
  uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
  if (prod - t->rsp > RING) return -1;
  uint32_t n = 0, r = 0, nseg = 0, cons = t->cons;
  while (cons != prod && n < t->budget) {
    struct txreq q;
    memcpy(&q, t->ring + 64 + (cons & (RING - 1)) * 12, sizeof q);
    /* The whole packet must be posted: walk its slots first (netback's xenvif_count_requests). */
    uint32_t c = cons + 1, total = 0, more = q.flags & NETTXF_more_data;
    if (q.flags & NETTXF_extra_info) {
      if (c == prod) break;
      struct extra e;
      memcpy(&e, t->ring + 64 + (c & (RING - 1)) * 12, sizeof e);
      if (e.type != 1 || e.size == 0) return -1;
      c++;
    }
    uint32_t frag_from = c;
    while (more) {
      if (c == prod) break;
      struct txreq f;
      memcpy(&f, t->ring + 64 + (c & (RING - 1)) * 12, sizeof f);
      if (f.offset + f.size > 4096 || f.size > q.size - total) return -1;
      total += f.size;
      more = f.flags & NETTXF_more_data;
      c++;
    }
    if (more) break; /* not all posted yet */
    if (c - cons > 20 || q.size < 14 || q.size - total > 4096 || q.offset + (q.size - total) > 4096 || q.size > t->stride) return -1;
    uint8_t *frame = t->frames + (size_t)n * t->stride;
    uint32_t first = q.size - total, off = 0;
    for (uint32_t s = cons; s != c; s++) {
      struct txreq f;
      memcpy(&f, t->ring + 64 + (s & (RING - 1)) * 12, sizeof f);
      t->ids[r] = f.id;
      if (s != cons && s < frag_from) { t->code[r++] = -2; continue; } /* the extra slot */
      uint32_t len = s == cons ? first : f.size;
      struct seg *g = &t->segs[nseg++];
      g->source.foreign.ref = f.gref;
      g->source.foreign.offset = f.offset;
      g->source.foreign.domid = (uint16_t)t->domid;
      g->dest.virt = (uint64_t)(uintptr_t)(frame + off);
      g->len = (uint16_t)len;
      g->flags = GNTCOPY_source_gref;
      g->status = 0;
      off += len;
      t->code[r++] = (int32_t)(nseg - 1);
    }
    t->lens[n++] = q.size;
    cons = c;
  }
  t->cons = cons;
  if (r == 0) return 0;
  sx_gdev_copy(t->gdev, t->segs, nseg);
  for (uint32_t k = 0; k < r; k++) {
    struct txrsp *p = (struct txrsp *)(t->ring + 64 + (t->rsp & (RING - 1)) * 12);
    p->id = t->ids[k];
    p->status = t->code[k] == -2 ? 1 : t->segs[t->code[k]].status == 0 ? 0 : -1;
    t->rsp++;
  }
  __atomic_store_n(rsp_prod, t->rsp, __ATOMIC_SEQ_CST);
  return n;
}

static long tx_gso_pass_of(struct path *t, uint32_t unused) { (void)unused; return tx_gso_pass(t); }

/* Guest tx of multi-slot GSO packets for `ms` into a sink: packets copied out of the guest. */
int ref_tx_gso(uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t budget, uint32_t *lens, int ms) {
  struct path *t = &tx_state;
  path_init(t, ring, gdev, domid, frames, stride, segs, budget, lens);
  return run_for(ms, tx_gso_pass_of, t, 0);
}
