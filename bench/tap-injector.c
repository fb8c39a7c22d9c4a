// Load for bench/peers.ts's TAP receive numbers: transmits `count` copies of one frame on an
// interface through an AF_PACKET socket (sendmmsg, 64 frames per call), then prints "<frames sent>".
// On a TAP, every frame transmitted is a frame its fd can read (while its queue, txqueuelen, has room).
// Usage: tap-injector <ifname> <frame-bytes> <count>
#define _GNU_SOURCE
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: tap-injector <ifname> <frame-bytes> <count>\n"); return 2; }
    unsigned len = (unsigned)atoi(argv[2]);
    unsigned long count = strtoul(argv[3], NULL, 10);
    int s = socket(AF_PACKET, SOCK_RAW, 0); // protocol 0: transmit only, nothing queued for us to read
    if (s < 0) { perror("tap-injector: socket (needs root)"); return 1; }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = (int)if_nametoindex(argv[1]);
    if (!sll.sll_ifindex || bind(s, (struct sockaddr *)&sll, sizeof sll) < 0) { perror("tap-injector: bind"); return 1; }
    unsigned char *frame = calloc(1, len);
    memset(frame, 0x02, 6);
    memset(frame + 6, 0x04, 6);
    frame[12] = 0x08;
    enum { N = 64 };
    struct mmsghdr msgs[N];
    struct iovec iov = { frame, len };
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < N; i++) { msgs[i].msg_hdr.msg_iov = &iov; msgs[i].msg_hdr.msg_iovlen = 1; }
    unsigned long sent = 0;
    while (sent < count) {
        unsigned want = count - sent < N ? (unsigned)(count - sent) : N;
        int n = sendmmsg(s, msgs, want, 0);
        if (n <= 0) { perror("tap-injector: sendmmsg"); return 1; }
        sent += (unsigned long)n;
    }
    printf("%lu\n", sent);
    return 0;
}
