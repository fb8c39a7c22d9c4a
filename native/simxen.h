/*
 * Simulated Xen hypervisor: shared-memory layout shared by every process of a simulated host.
 * Everything lives in files under the run directory's shmDir (/dev/shm/qnicd-sim-<tag>):
 *
 *   registry        struct sx_reg: domains, event-channel devices, per-domain port tables
 *   dom<N>.ram      the domain's "RAM": pages * 4096 bytes, frame = page index
 *   dom<N>.gnttab   grant_entry_v1[SX_NR_GNT] (the real v1 layout), then hypervisor-private pin
 *                   counts, then the guest kernel's own allocation bytes (grefs, pages)
 *   gdev-<I>-<G>.pins  struct sx_pin[]: the grants grant device I (incarnation G) has mapped, so
 *                   the pins of a process that died can be released (Linux's gntdev_release)
 *
 * Control operations (domain create/destroy, port bind/close, grant map/unmap) take flock() on
 * the registry file; the data path (grant copy, notify, read, unmask) is lock-free (C11 atomics).
 */
#ifndef QNICD_SIMXEN_H
#define QNICD_SIMXEN_H

#include <stdint.h>

#define SX_MAGIC 0x4e58535au /* "ZSXN" */
#define SX_VERSION 3u /* 2: the grant-access audit log in dom<N>.gnttab; 3: pin records of grant devices */

#define SX_PAGE 4096u
#define SX_MAX_DOMS 128u      /* domids 0..127; 0 is dom0 */
#define SX_NR_PORTS 1024u     /* ports 1..1023 per domain (0 is reserved, as on Xen) */
#define SX_MAX_DEVS 1024u     /* open event-channel devices, host-wide */
#define SX_GNT_FRAMES 32u
#define SX_NR_GNT (SX_GNT_FRAMES * (SX_PAGE / 8u)) /* 16384 v1 entries */
#define SX_NR_RESERVED_GREFS 8u                    /* like Linux's GNTTAB_NR_RESERVED_ENTRIES */
#define SX_DEFAULT_PAGES 2048u
#define SX_DOM0_PAGES 256u
#define SX_MAX_PAGES (1u << 20)                    /* 4 GiB of simulated RAM per domain */
#define SX_MAX_MAP_PAGES 4096u

/* Xen event-channel states (xen/include/xen/sched.h ECS_*) */
#define SX_ECS_FREE 0u
#define SX_ECS_UNBOUND 2u
#define SX_ECS_INTERDOMAIN 3u

/* Per-port delivery state (sx_port.ev) */
#define SX_EV_PENDING 1u /* notified while masked: fires again on unmask */
#define SX_EV_MASKED 2u  /* fired and not yet written back (unmasked) */
#define SX_EV_FIRED 4u   /* fired and not yet returned by read */

/* grant table flags (public/grant_table.h) */
#define SX_GTF_permit_access 1u
#define SX_GTF_type_mask 3u
#define SX_GTF_readonly (1u << 2)
#define SX_GTF_reading (1u << 3)
#define SX_GTF_writing (1u << 4)

#define SX_GNTCOPY_source_gref 1u
#define SX_GNTCOPY_dest_gref 2u

#define SX_GNTST_okay 0
#define SX_GNTST_general_error (-1)
#define SX_GNTST_bad_domain (-2)
#define SX_GNTST_bad_gntref (-3)
#define SX_GNTST_bad_virt_addr (-5)
#define SX_GNTST_bad_page (-9)
#define SX_GNTST_bad_copy_arg (-10)

struct sx_dom {
  uint32_t live_gen; /* 0 = no such domain; otherwise the generation of this incarnation */
  uint32_t pages;
  uint32_t nr_gnt;
  uint32_t creator_pid;
  uint32_t pad[4];
};

struct sx_dev {
  uint32_t live;
  uint32_t gen;
  uint32_t pid;
  uint32_t domid;
  uint32_t overflow; /* a doorbell could not be queued: the reader must scan its ports */
  uint32_t pad;
  uint64_t starttime; /* /proc/<pid>/stat field 22, to tell a dead pid from a reused one */
};

struct sx_port {
  uint32_t state;       /* SX_ECS_* */
  uint32_t remote_dom;  /* UNBOUND: who may bind; INTERDOMAIN: the peer domain */
  uint32_t remote_port; /* INTERDOMAIN: the peer port */
  uint32_t owner_dev;   /* device index + 1 (0 = none) */
  uint32_t owner_gen;   /* device generation at bind time */
  uint32_t ev;          /* SX_EV_* */
  uint32_t pad[2];
};

/* An open grant device (/dev/xen/gntdev): who holds the pins its pin file records. */
struct sx_gslot {
  uint32_t live;
  uint32_t gen;
  uint32_t pid;
  uint32_t pad;
  uint64_t starttime; /* as sx_dev: tells a dead pid from a reused one */
};

struct sx_reg {
  uint32_t magic;
  uint32_t version;
  uint32_t next_domid;
  uint32_t gen_counter;
  uint32_t dev_hint;
  uint32_t pad[11];
  struct sx_dom dom[SX_MAX_DOMS];
  struct sx_dev dev[SX_MAX_DEVS];
  struct sx_port port[SX_MAX_DOMS][SX_NR_PORTS];
  struct sx_gslot gdev[SX_MAX_DEVS];
};

/* One grant a grant device has pinned (mapped). Written under the registry lock. */
struct sx_pin {
  uint32_t domid;
  uint32_t dom_gen; /* the domain's incarnation: a destroyed domain's pins went with it */
  uint32_t ref;
  uint32_t flags; /* SX_PIN_* */
};
#define SX_PIN_USED 1u
#define SX_PIN_WRITABLE 2u

/* struct gntdev_grant_copy_segment (linux uapi xen/gntdev.h) */
struct sx_foreign {
  uint32_t ref;
  uint16_t offset;
  uint16_t domid;
};
union sx_copy_ptr {
  uint64_t virt;
  struct sx_foreign foreign;
};
struct sx_copy_seg {
  union sx_copy_ptr source;
  union sx_copy_ptr dest;
  uint16_t len;
  uint16_t flags;
  int16_t status;
  uint16_t pad;
};

/*
 * Grant-access audit (a test facility; Xen has no such thing): when a domain's audit is enabled,
 * every grant copy segment and every map/unmap that a backend performs against that domain's
 * grants is appended to a bounded log in the domain's gnttab file, so a test in any process can
 * check which grants a backend touched. Off (the default) it costs one load and one predictable
 * branch per grant side.
 *
 * The log is a ring over a monotonic counter: a writer takes idx = head++ and stores record
 * idx % SX_AUDIT_CAP, writing its stamp ((u32)(idx + 1)) last. A reader's window runs from base to
 * head: record k is complete when its stamp is (u32)(k + 1), still being written when older, and
 * overwritten (dropped: the log keeps the newest SX_AUDIT_CAP) when newer. Writers never look at
 * base, so a reader moving it (reset, or a consuming read stopping at the first record still being
 * written) can never make a writer lose its place.
 */
#define SX_AUDIT_CAP 8192u
#define SX_AUDIT_COPY_FROM 1u /* grant copy, the granted page is the source (backend reads it) */
#define SX_AUDIT_COPY_TO 2u   /* grant copy, the granted page is the destination (backend writes) */
#define SX_AUDIT_MAP_RO 3u    /* map of the ref, read-only */
#define SX_AUDIT_MAP_RW 4u    /* map of the ref, writable */
#define SX_AUDIT_UNMAP_RO 5u  /* the mapping holding the ref went away */
#define SX_AUDIT_UNMAP_RW 6u

struct sx_audit_rec {
  uint32_t stamp;      /* (u32)(idx + 1) once complete */
  uint32_t ref;
  uint32_t pid;        /* the process performing the copy/map (the backend) */
  uint16_t offset;     /* copy: offset in the granted page; map/unmap: 0 */
  uint16_t len;        /* copy: bytes; map/unmap: 0 */
  uint16_t op;         /* SX_AUDIT_* */
  int16_t status;      /* GNTST_* of the segment or of this ref's pin */
  uint32_t caller_dom; /* the domain the grant device belongs to (the backend's) */
};

struct sx_audit {
  uint32_t enabled;
  uint32_t cap;
  uint64_t head;
  uint64_t base; /* the readers' window starts here */
  uint32_t pad[10];
  struct sx_audit_rec rec[SX_AUDIT_CAP];
};

/* dom<N>.gnttab layout */
#define SX_GNT_ENTRIES_OFF 0u
#define SX_GNT_PIN_OFF (SX_NR_GNT * 8u)                 /* u32 per entry: readers | writers << 16 */
#define SX_GNT_GALLOC_OFF (SX_GNT_PIN_OFF + SX_NR_GNT * 4u) /* u8 per entry: guest allocated it */
#define SX_GNT_AUDIT_OFF (SX_GNT_GALLOC_OFF + SX_NR_GNT)    /* struct sx_audit (page aligned) */
#define SX_GNT_PALLOC_OFF (SX_GNT_AUDIT_OFF + ((sizeof(struct sx_audit) + SX_PAGE - 1) & ~(SX_PAGE - 1))) /* u8 per page */

#endif
