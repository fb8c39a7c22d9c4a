/*
 * The reference for bench/datapath.ts: the same ring-consume-and-copy loops the workers run in TS
 * (workers/tx.ts, workers/rx.ts), written in C and compiled with gcc -O2. Same ring, same checks,
 * same batched grant copy (the sim's sx_gdev_copy, the very function the TS path reaches through
 * SimGrantDevice.copy), same response writes and one push per batch; no JS in between.
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

/* Guest tx for `ms` milliseconds: returns packets copied out of the guest. */
int ref_tx(uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t budget, uint32_t *lens, int ms) {
  volatile uint32_t *req_prod = (uint32_t *)ring, *rsp_prod = (uint32_t *)(ring + 8);
  uint32_t cons = *rsp_prod, rsp = cons;
  static uint16_t ids[RING];
  static int32_t code[RING];
  long total = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
    if (prod - rsp > RING) return -1;
    uint32_t n = 0, r = 0;
    while (cons != prod && n < budget) {
      struct txreq q;
      memcpy(&q, ring + 64 + (cons & (RING - 1)) * 12, sizeof q); /* copy once */
      cons++;
      ids[r] = q.id;
      if ((q.flags & 12) || q.size < 14 || q.offset + q.size > 4096) { code[r++] = -1; continue; }
      struct seg *s = &segs[n];
      s->source.foreign.ref = q.gref;
      s->source.foreign.offset = q.offset;
      s->source.foreign.domid = (uint16_t)domid;
      s->dest.virt = (uint64_t)(uintptr_t)(frames + (size_t)n * stride);
      s->len = q.size;
      s->flags = GNTCOPY_source_gref;
      s->status = 0;
      lens[n] = q.size;
      code[r++] = (int32_t)n++;
    }
    if (r == 0) { sched_yield(); continue; }
    if (n) sx_gdev_copy(gdev, segs, n);
    for (uint32_t k = 0; k < r; k++) {
      struct txrsp *p = (struct txrsp *)(ring + 64 + (rsp & (RING - 1)) * 12);
      p->id = ids[k];
      p->status = code[k] >= 0 && segs[code[k]].status == 0 ? 0 : -1;
      rsp++;
    }
    if (r) {
      __atomic_store_n(rsp_prod, rsp, __ATOMIC_SEQ_CST);
      total += n;
    }
  }
  return (int)total;
}

/* Guest rx for `ms` milliseconds from a generator (one template frame, as the source peer): frames delivered. */
int ref_rx(uint8_t *ring, int gdev, uint32_t domid, uint8_t *frames, uint32_t stride, struct seg *segs, uint32_t batch, uint32_t *lens, const uint8_t *tmpl, uint32_t tlen, int ms) {
  volatile uint32_t *req_prod = (uint32_t *)ring, *rsp_prod = (uint32_t *)(ring + 8);
  uint32_t cons = *rsp_prod;
  static uint16_t ids[RING];
  long total = 0;
  double end = now_ms() + ms;
  for (int iter = 0;; iter++) {
    if ((iter & 63) == 0 && now_ms() >= end) break;
    /* receive(): a batch of frames from the generator */
    for (uint32_t i = 0; i < batch; i++) {
      memcpy(frames + (size_t)i * stride, tmpl, tlen);
      lens[i] = tlen;
    }
    uint32_t prod = __atomic_load_n(req_prod, __ATOMIC_SEQ_CST);
    if (prod - cons > RING) return -1;
    uint32_t avail = prod - cons, n = 0;
    for (uint32_t i = 0; i < batch && n < avail; i++) {
      if (lens[i] > 4094) continue;
      struct rxreq q;
      memcpy(&q, ring + 64 + ((cons + n) & (RING - 1)) * 8, sizeof q);
      ids[n] = q.id;
      struct seg *s = &segs[n];
      s->source.virt = (uint64_t)(uintptr_t)(frames + (size_t)i * stride);
      s->dest.foreign.ref = q.gref;
      s->dest.foreign.offset = 2;
      s->dest.foreign.domid = (uint16_t)domid;
      s->len = (uint16_t)lens[i];
      s->flags = GNTCOPY_dest_gref;
      s->status = 0;
      n++;
    }
    if (!n) { sched_yield(); continue; }
    sx_gdev_copy(gdev, segs, n);
    for (uint32_t k = 0; k < n; k++) {
      struct rxrsp *p = (struct rxrsp *)(ring + 64 + ((cons + k) & (RING - 1)) * 8);
      p->id = ids[k];
      p->flags = 0;
      if (segs[k].status == 0) { p->offset = 2; p->status = (int16_t)segs[k].len; }
      else { p->offset = 0; p->status = -1; }
    }
    cons += n;
    __atomic_store_n(rsp_prod, cons, __ATOMIC_SEQ_CST);
    total += n;
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
