// A multi-queue TAP's queue choice by eBPF (TUNSETSTEERINGEBPF): the bpf(2) calls that make the
// program's array map and load the program (src/net/steering-program.ts assembles it), and the
// ioctl that attaches it to the TAP or detaches it. Each call returns >= 0 or -errno.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_bpf(int cmd, union bpf_attr *a) {
    long rc = syscall(SYS_bpf, cmd, a, sizeof(*a));
    return rc < 0 ? -errno : (int)rc;
}

// An array map of one `value_size`-byte element (key 0), close-on-exec like every bpf fd.
int qnicd_steer_map_create(uint32_t value_size) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = sizeof(uint32_t);
    a.value_size = value_size;
    a.max_entries = 1;
    strncpy(a.map_name, "qnicd_steer", sizeof(a.map_name) - 1);
    return sys_bpf(BPF_MAP_CREATE, &a);
}

// Replaces the map's element. Readers may see a mix of the old and new value for the frames in
// flight during the copy; every value the program can read names an existing queue, so such a
// frame only lands on one of the vif's queues chosen by neither configuration.
int qnicd_steer_map_set(int map_fd, const void *value) {
    uint32_t key = 0;
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)map_fd;
    a.key = (uint64_t)(uintptr_t)&key;
    a.value = (uint64_t)(uintptr_t)value;
    a.flags = BPF_ANY;
    return sys_bpf(BPF_MAP_UPDATE_ELEM, &a);
}

// Loads `count` instructions as a socket filter (the type TUNSETSTEERINGEBPF takes). The verifier's
// complaint, if any, goes to `log` (NUL-terminated).
int qnicd_steer_prog_load(const void *insns, uint32_t count, char *log, uint32_t log_size) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = count;
    a.license = (uint64_t)(uintptr_t)"Proprietary"; // it calls no GPL-only helper
    strncpy(a.prog_name, "qnicd_steer", sizeof(a.prog_name) - 1);
    if (log && log_size) {
        log[0] = 0;
        a.log_buf = (uint64_t)(uintptr_t)log;
        a.log_size = log_size;
        a.log_level = 1;
    }
    int fd = sys_bpf(BPF_PROG_LOAD, &a);
    if (fd == -ENOSPC && log && log_size) {
        // Only the log overflowed: load again without one.
        a.log_buf = 0;
        a.log_size = 0;
        a.log_level = 0;
        fd = sys_bpf(BPF_PROG_LOAD, &a);
    }
    return fd;
}

// Attaches program `prog_fd` to the TAP of `tap_fd` (any queue's fd: the program is the device's);
// -1 detaches, and tun goes back to its own flow hash. The TAP keeps its own reference.
int qnicd_tap_steering(int tap_fd, int prog_fd) {
    int fd = prog_fd;
    return ioctl(tap_fd, TUNSETSTEERINGEBPF, &fd) < 0 ? -errno : 0;
}
