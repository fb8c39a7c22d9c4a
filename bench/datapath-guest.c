/*
 * The guest side of bench/datapath.ts, a separate process: keeps one ring full of requests, as
 * fast as the backend answers, by writing the guest's RAM file of the simulated host directly.
 *   datapath-guest <ram file> <ring frame> tx <data gref> <size>
 *   datapath-guest <ram file> <ring frame> rx <gref,gref,...>
 *   datapath-guest <ram file> <ring frame> txgso <data gref> <mss>
 * txgso posts 65535-byte TCPv4 GSO packets as Linux netfront lays them out: a first slot carrying
 * the packet's size (its own 4096 bytes) with more_data|extra_info|csum_blank, the GSO extra, then
 * 15 fragments (14 x 4096 + 4095), every data slot reading the same granted page: 17 slots a packet.
 * Stops when the backend writes STOP into the ring page's pad (byte 60) or after 120 s.
 */
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RING 256u
#define STOP 0x53544f50u

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: datapath-guest ram frame tx|rx args\n"); return 2; }
  int fd = open(argv[1], O_RDWR);
  if (fd < 0) { perror("open ram"); return 1; }
  struct stat st;
  fstat(fd, &st);
  uint8_t *ram = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (ram == MAP_FAILED) { perror("mmap"); return 1; }
  uint8_t *ring = ram + (size_t)strtoul(argv[2], 0, 10) * 4096;
  volatile uint32_t *req_prod = (uint32_t *)ring, *rsp_prod = (uint32_t *)(ring + 8), *stop = (uint32_t *)(ring + 60);
  int tx = strcmp(argv[3], "tx") == 0, txgso = strcmp(argv[3], "txgso") == 0;
  uint32_t gref = 0, size = 0, ngrefs = 0, grefs[256];
  if (tx || txgso) { gref = strtoul(argv[4], 0, 10); size = strtoul(argv[5], 0, 10); }
  else for (char *p = strtok(argv[4], ","); p && ngrefs < 256; p = strtok(NULL, ",")) grefs[ngrefs++] = strtoul(p, 0, 10);
  uint32_t prod = *req_prod;
  time_t t0 = time(NULL);
  printf("ready\n");
  fflush(stdout);
  for (unsigned long iter = 0;; iter++) {
    if (__atomic_load_n(stop, __ATOMIC_RELAXED) == STOP) break;
    if ((iter & 0xfffff) == 0 && time(NULL) - t0 > 120) break;
    uint32_t rsp = __atomic_load_n(rsp_prod, __ATOMIC_ACQUIRE);
    if (prod - rsp + (txgso ? 17 : 1) > RING) { sched_yield(); continue; } /* full: let the backend run (see datapath-ref.c) */
    while (txgso && prod - rsp + 17 <= RING) {
      for (uint32_t k = 0; k < 17; k++) {
        uint8_t *s = ring + 64 + ((prod + k) & (RING - 1)) * 12;
        uint16_t off = 0, id = (uint16_t)((prod + k) & (RING - 1)), flags, sz;
        memset(s, 0, 12);
        if (k == 1) { /* the GSO extra: type 1, flags 0, size = MSS, TCPV4 */
          uint16_t mss = (uint16_t)size;
          s[0] = 1; memcpy(s + 2, &mss, 2); s[4] = 1;
          continue;
        }
        flags = k == 0 ? (1 | 4 | 8) : (k < 16 ? 4 : 0);
        sz = k == 0 ? 65535 : (k < 16 ? 4096 : 4095);
        memcpy(s, &gref, 4); memcpy(s + 4, &off, 2); memcpy(s + 6, &flags, 2); memcpy(s + 8, &id, 2); memcpy(s + 10, &sz, 2);
      }
      prod += 17;
    }
    while (!txgso && prod - rsp < RING) {
      if (tx) {
        uint8_t *s = ring + 64 + (prod & (RING - 1)) * 12;
        uint16_t off = 0, flags = 0, id = (uint16_t)(prod & (RING - 1)), sz = (uint16_t)size;
        memcpy(s, &gref, 4); memcpy(s + 4, &off, 2); memcpy(s + 6, &flags, 2); memcpy(s + 8, &id, 2); memcpy(s + 10, &sz, 2);
      } else {
        uint8_t *s = ring + 64 + (prod & (RING - 1)) * 8;
        uint16_t id = (uint16_t)(prod & (RING - 1));
        memcpy(s, &id, 2);
        memcpy(s + 4, &grefs[prod % ngrefs], 4);
      }
      prod++;
    }
    __atomic_store_n(req_prod, prod, __ATOMIC_RELEASE);
  }
  return 0;
}
