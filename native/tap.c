// TAP devices for qnicd's peers: open one by name, bring links up, add them to a bridge.
// Each call returns >= 0 on success or -errno, so the caller can name the failure in one line.
#include <errno.h>
#include <fcntl.h>
#include <net/if_arp.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_name(struct ifreq *ifr, const char *name) {
    memset(ifr, 0, sizeof(*ifr));
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
}

// A new fd on /dev/net/tun attached to TAP `name` with `flags` (TUNSETIFF), or -errno.
static int tap_attach(const char *name, short flags) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    set_name(&ifr, name);
    ifr.ifr_flags = flags;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

// A TAP for one vif. Non-blocking (the worker polls it) and close-on-exec (hotplug scripts and
// other children must not keep it alive). persist != 0 makes it outlive this process (TUNSETPERSIST):
// a restarted daemon re-opens it by name with its bridge port, MTU and firewall rules intact, as a
// kernel netback's vif survives an unbind/bind of the driver; qnicd_tap_unpersist() ends it. Opening
// the name of a persistent TAP nobody holds attaches to it rather than creating a new one.
//
// vnet != 0: every frame carries a struct virtio_net_hdr (10 bytes: no num_buffers, which only
// mergeable rx buffers use), so guest GSO packets go to the kernel whole and it segments them
// (guest tx). Offloads start off (TUNSETOFFLOAD 0): the kernel then hands us only frames of at most
// the MTU with complete checksums, all a frontend without GSO can take. The worker turns them on
// (native/peerio.c pio_offload) once it knows the vif's frontend takes checksum-partial and GSO frames.
//
// Every TAP is created with IFF_MULTI_QUEUE, so a vif whose frontend negotiates several queues gets
// one fd per queue (qnicd_tap_queue_open) on the same interface; the kernel's tun then picks the
// queue of each frame going to the guest by its flow hash. A persistent TAP an older qnicd made
// without the flag cannot be attached with it (EINVAL): it is re-opened as it is, single-queue.
int qnicd_tap_open(const char *name, int vnet, int persist) {
    short base = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
    int fd = tap_attach(name, base | IFF_MULTI_QUEUE);
    if (fd == -EINVAL) fd = tap_attach(name, base);
    if (fd < 0) return fd;
    int sz = sizeof(struct virtio_net_hdr);
    // The MAC Linux netback gives every vif (the largest non-broadcast address): a Linux bridge
    // takes the lowest MAC of its ports as its own, so a TAP with a random one would lend the
    // bridge (and dom0's IP on it) an address that changes again when the hotplug script renames
    // it, leaving guests with a stale ARP entry for dom0 until it expires.
    struct ifreq hw;
    set_name(&hw, name);
    hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memset(hw.ifr_hwaddr.sa_data, 0xff, 6);
    hw.ifr_hwaddr.sa_data[0] = (char)0xfe;
    if (ioctl(fd, SIOCSIFHWADDR, &hw) < 0 ||
        (vnet && (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 || ioctl(fd, TUNSETOFFLOAD, 0UL) < 0)) ||
        (persist && ioctl(fd, TUNSETPERSIST, 1UL) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

// One more queue of a multi-queue TAP that qnicd_tap_open made: attached with the same flags (tun
// applies a queue's TUNSETIFF flags to the whole device, so a different IFF_VNET_HDR here would
// change every queue's framing). Closing the fd detaches the queue; the interface stays.
int qnicd_tap_queue_open(const char *name, int vnet) {
    return tap_attach(name, IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | (vnet ? IFF_VNET_HDR : 0));
}

// Makes the TAP on `fd` go away with its last fd again, then closes `fd` (the vif is gone for good).
int qnicd_tap_unpersist(int fd) {
    int rc = ioctl(fd, TUNSETPERSIST, 0UL) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int qnicd_fd_close(int fd) {
    return close(fd) < 0 ? -errno : 0;
}

int qnicd_link_up(const char *name) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    set_name(&ifr, name);
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) rc = -errno;
    else {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) rc = -errno;
    }
    close(s);
    return rc;
}

int qnicd_bridge_add(const char *bridge, const char *name) {
    unsigned idx = if_nametoindex(name);
    if (idx == 0) return -errno;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    set_name(&ifr, bridge);
    ifr.ifr_ifindex = (int)idx;
    int rc = ioctl(s, SIOCBRADDIF, &ifr) < 0 ? -errno : 0;
    close(s);
    return rc;
}

// Sets an interface's MTU (SIOCSIFMTU): a vif's `mtu` (libxl's mtu= key), or its bridge's.
int qnicd_link_mtu(const char *name, int mtu) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    set_name(&ifr, name);
    ifr.ifr_mtu = mtu;
    int rc = ioctl(s, SIOCSIFMTU, &ifr) < 0 ? -errno : 0;
    close(s);
    return rc;
}

// 1 if an interface with this name exists, 0 if not.
int qnicd_if_exists(const char *name) {
    return if_nametoindex(name) != 0;
}
