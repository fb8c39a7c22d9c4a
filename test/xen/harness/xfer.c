/* Bulk TCP transfers for the testbed's throughput steps (dom0-run.sh), built static by
 * make-run-disk.sh and used on both ends: in the guest as a server, in dom0 as the client.
 *
 * Why not busybox nc: it moves a few KiB per poll() round, and every system call of a PV domain
 * under QEMU's emulation costs a trip through Xen, so it tops out near 2 MB/s whichever backend
 * serves the guest; the figure then measures nc, not the backend. This tool moves 1 MiB per
 * read()/write() and keeps files, checksums and timing out of the timed part.
 *
 *   xfer serve PORT UPFILE DOWNFILE   (guest) one connection at a time, a one-line command each:
 *     "P <bytes>"  fill UPFILE with that many random bytes; answers "<sha256 hex>\n"
 *     "U"          streams UPFILE, then closes (guest -> dom0)
 *     "D"          reads to EOF into DOWNFILE, answers "K" at once (the client stops its clock
 *                  there), then "<sha256 hex of DOWNFILE>\n" (dom0 -> guest)
 *     "S"          the guest's side of the cost: its interfaces' packet and byte counters, its
 *                  network interrupt lines (/proc/interrupts) and TCP retransmissions, as text,
 *                  and netfront's rx_gso_checksum_fixup per interface ("ethtool eth0
 *                  rx_gso_checksum_fixup=N"; "... error=<errno name>" when it cannot be read)
 *   xfer prep HOST PORT BYTES         prints the sha256 the server answered to "P"
 *   xfer get HOST PORT OUTFILE        "U": prints "bytes=N secs=S", the clock running from connect
 *                                     to the server's close
 *   xfer stat HOST PORT -             prints what the server answered to "S"
 *   xfer put HOST PORT INFILE         "D": prints "bytes=N secs=S sha=<guest's sha256>", the clock
 *                                     running from connect to the server's "K"
 * With XFER_MARK=<label> in its environment, get and put write "QNICD-XFER <label> start" and
 * "... end" on /dev/console at the edges of the timed part, and stay idle MARK_SETTLE_US after
 * each, as the server does before checksumming: the host reads QEMU's CPU time when it sees a mark,
 * so the CPU the emulated machine spent on the transfer is known however loaded the host is.
 * Exit status 0 on success; 1 with one line on stderr otherwise. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)
/* A transfer that stalls this long fails instead of hanging the step. */
#define IO_TIMEOUT_S 60

/* Longer than the host takes to see a console line and read QEMU's CPU time, even when loaded. */
#define MARK_SETTLE_US 300000

static char buf[CHUNK];

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("xfer: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void mark(const char *phase) {
  const char *label = getenv("XFER_MARK");
  if (!label) return;
  int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
  if (fd < 0) return;
  dprintf(fd, "QNICD-XFER %s %s\n", label, phase);
  close(fd);
  usleep(MARK_SETTLE_US);
}

static void set_timeouts(int fd) {
  struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Copies from one fd to the other until EOF; the byte count, or -1 (errno set). */
static long long pump(int from, int to) {
  long long total = 0;
  for (;;) {
    ssize_t r = read(from, buf, CHUNK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return total;
    if (write_all(to, buf, (size_t)r) < 0) return -1;
    total += r;
  }
}

/* Reads one line (without its newline) of at most cap-1 bytes; -1 on EOF or error first. */
static int read_line(int fd, char *line, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return n > 0 ? 0 : -1;
    if (c == '\n') break;
    line[n++] = c;
  }
  line[n] = 0;
  return 0;
}

/* sha256 of a file by the system's sha256sum (busybox in the guest): 64 hex digits into out. */
static int sha256_file(const char *path, char out[65]) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  int ok = fscanf(p, "%64[0-9a-f]", out) == 1 && strlen(out) == 64;
  return pclose(p) == 0 && ok ? 0 : -1;
}

static int fill_random(const char *path, long long bytes) {
  int rnd = open("/dev/urandom", O_RDONLY);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int rc = rnd < 0 || fd < 0 ? -1 : 0;
  while (rc == 0 && bytes > 0) {
    size_t want = bytes < CHUNK ? (size_t)bytes : CHUNK;
    ssize_t got = read(rnd, buf, want);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0 || write_all(fd, buf, (size_t)got) < 0) rc = -1;
    else bytes -= got;
  }
  if (rnd >= 0) close(rnd);
  if (fd >= 0 && close(fd) < 0) rc = -1;
  return rc;
}

/* One ethtool driver statistic of `dev` by name, as `ethtool -S` reads it (the guest has no ethtool):
 * ETHTOOL_GSSET_INFO for the number of ETH_SS_STATS strings, ETHTOOL_GSTRINGS for their names,
 * ETHTOOL_GSTATS for the values, all through SIOCETHTOOL. Linux xen-netfront (drivers/net/
 * xen-netfront.c, xennet_stats) exposes only there how many received packets it had to give a
 * checksum because the backend handed it a GSO packet that was not checksum-partial:
 * rx_gso_checksum_fixup. Writes "ethtool DEV NAME=VALUE" or "ethtool DEV NAME error=..." to fd. */
static void ethtool_stat(int fd, const char *dev, const char *name) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq ifr;
  const char *err = NULL;
  union { struct ethtool_sset_info i; char b[sizeof(struct ethtool_sset_info) + sizeof(__u32)]; } ss;
  struct ethtool_gstrings *names = NULL;
  struct ethtool_stats *vals = NULL;
  memset(&ifr, 0, sizeof ifr);
  if (strlen(dev) >= sizeof ifr.ifr_name) { err = "name-too-long"; goto out; }
  memcpy(ifr.ifr_name, dev, strlen(dev));
  memset(&ss, 0, sizeof ss);
  ss.i.cmd = ETHTOOL_GSSET_INFO;
  ss.i.sset_mask = 1ULL << ETH_SS_STATS;
  ifr.ifr_data = (char *)&ss;
  if (s < 0 || ioctl(s, SIOCETHTOOL, &ifr) < 0) { err = strerror(errno); goto out; }
  __u32 n = ss.i.sset_mask ? ss.i.data[0] : 0;
  if (n == 0 || n > 4096) { err = "no-stats"; goto out; }
  names = calloc(1, sizeof *names + (size_t)n * ETH_GSTRING_LEN);
  vals = calloc(1, sizeof *vals + (size_t)n * sizeof(__u64));
  if (!names || !vals) { err = "no-memory"; goto out; }
  names->cmd = ETHTOOL_GSTRINGS;
  names->string_set = ETH_SS_STATS;
  names->len = n;
  ifr.ifr_data = (char *)names;
  if (ioctl(s, SIOCETHTOOL, &ifr) < 0) { err = strerror(errno); goto out; }
  vals->cmd = ETHTOOL_GSTATS;
  vals->n_stats = n;
  ifr.ifr_data = (char *)vals;
  if (ioctl(s, SIOCETHTOOL, &ifr) < 0) { err = strerror(errno); goto out; }
  for (__u32 i = 0; i < n && i < names->len && i < vals->n_stats; i++) {
    const char *k = (const char *)names->data + (size_t)i * ETH_GSTRING_LEN;
    if (strncmp(k, name, ETH_GSTRING_LEN)) continue;
    dprintf(fd, "ethtool %s %s=%llu\n", dev, name, (unsigned long long)vals->data[i]);
    goto done;
  }
  err = "not-found";
out:
  dprintf(fd, "ethtool %s %s error=%s\n", dev, name, err);
done:
  free(names);
  free(vals);
  if (s >= 0) close(s);
}

/* ethtool_stat() for every eth* interface. */
static void ethtool_stats(int fd, const char *name) {
  DIR *d = opendir("/sys/class/net");
  struct dirent *e;
  if (!d) return;
  while ((e = readdir(d)) != NULL)
    if (!strncmp(e->d_name, "eth", 3)) ethtool_stat(fd, e->d_name, name);
  closedir(d);
}

static void serve_one(int c, const char *upfile, const char *downfile) {
  char line[64], sha[65];
  if (read_line(c, line, sizeof line) < 0) return;
  if (line[0] == 'P' && line[1] == ' ') {
    char *end;
    long long bytes = strtoll(line + 2, &end, 10);
    if (*end || bytes <= 0 || bytes > (1LL << 30)) return;
    if (fill_random(upfile, bytes) < 0 || sha256_file(upfile, sha) < 0) return;
    dprintf(c, "%s\n", sha);
  } else if (line[0] == 'U' && !line[1]) {
    int fd = open(upfile, O_RDONLY);
    if (fd < 0) return;
    pump(fd, c);
    close(fd);
  } else if (line[0] == 'S' && !line[1]) {
    FILE *p = popen("cd /sys/class/net && for d in eth*; do echo \"dev $d rx_packets=$(cat $d/statistics/rx_packets)"
                    " tx_packets=$(cat $d/statistics/tx_packets) rx_bytes=$(cat $d/statistics/rx_bytes)"
                    " tx_bytes=$(cat $d/statistics/tx_bytes)\"; done; grep -E \"eth|vif\" /proc/interrupts | sed 's/^/irq /'; "
                    "awk '/^Tcp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == \"RetransSegs\") c = i } else print \"tcp retrans_segs=\" $c }' /proc/net/snmp",
                    "r");
    if (!p) return;
    size_t n;
    while ((n = fread(buf, 1, CHUNK, p)) > 0) write_all(c, buf, n);
    pclose(p);
    ethtool_stats(c, "rx_gso_checksum_fixup");
  } else if (line[0] == 'D' && !line[1]) {
    int fd = open(downfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return;
    long long got = pump(c, fd);
    close(fd);
    if (got < 0 || write_all(c, "K", 1) < 0) return;
    usleep(MARK_SETTLE_US); /* the client's end mark: nothing here may burn CPU before it is read */
    if (sha256_file(downfile, sha) < 0) return;
    dprintf(c, "%s\n", sha);
  }
}

static void serve(int port, const char *upfile, const char *downfile) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4) < 0) die("serve: cannot listen on port %d: %s", port, strerror(errno));
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("serve: accept: %s", strerror(errno));
    }
    set_timeouts(c);
    serve_one(c, upfile, downfile);
    close(c);
  }
}

/* Connects, retrying for a few seconds while nothing listens yet. */
static int dial(const char *host, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("not an IPv4 address: %s", host);
  double until = now_s() + 10;
  for (;;) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket: %s", strerror(errno));
    set_timeouts(s);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) return s;
    int e = errno;
    close(s);
    if (now_s() > until || (e != ECONNREFUSED && e != EHOSTUNREACH && e != ENETUNREACH))
      die("cannot connect to %s:%d: %s", host, port, strerror(e));
    usleep(200000);
  }
}

static void read_sha(int s, char *what, char sha[65]) {
  char line[80];
  if (read_line(s, line, sizeof line) < 0 || strlen(line) != 64) die("%s: the server sent no sha256 (it failed on its side)", what);
  memcpy(sha, line, 65);
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "serve")) {
    serve(atoi(argv[2]), argv[3], argv[4]);
    return 0;
  }
  if (argc != 5) die("usage: xfer serve PORT UPFILE DOWNFILE | prep HOST PORT BYTES | stat HOST PORT - | get HOST PORT OUTFILE | put HOST PORT INFILE");
  const char *mode = argv[1], *host = argv[2], *arg = argv[4];
  int port = atoi(argv[3]);
  char sha[65];
  if (!strcmp(mode, "prep")) {
    int s = dial(host, port);
    dprintf(s, "P %s\n", arg);
    read_sha(s, "prep", sha);
    printf("%s\n", sha);
  } else if (!strcmp(mode, "stat")) {
    int s = dial(host, port);
    dprintf(s, "S\n");
    if (pump(s, 1) < 0) die("stat: %s", strerror(errno));
  } else if (!strcmp(mode, "get")) {
    int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("get: cannot create %s: %s", arg, strerror(errno));
    mark("start");
    double t0 = now_s();
    int s = dial(host, port);
    if (write_all(s, "U\n", 2) < 0) die("get: cannot send the command: %s", strerror(errno));
    long long got = pump(s, fd);
    double secs = now_s() - t0;
    mark("end");
    if (got < 0) die("get: transfer failed after some bytes: %s", strerror(errno));
    if (close(fd) < 0) die("get: writing %s: %s", arg, strerror(errno));
    printf("bytes=%lld secs=%.3f\n", got, secs);
  } else if (!strcmp(mode, "put")) {
    int fd = open(arg, O_RDONLY);
    if (fd < 0) die("put: cannot open %s: %s", arg, strerror(errno));
    mark("start");
    double t0 = now_s();
    int s = dial(host, port);
    if (write_all(s, "D\n", 2) < 0) die("put: cannot send the command: %s", strerror(errno));
    long long sent = pump(fd, s);
    if (sent < 0) die("put: transfer failed: %s", strerror(errno));
    shutdown(s, SHUT_WR);
    char k;
    ssize_t r;
    while ((r = read(s, &k, 1)) < 0 && errno == EINTR) {}
    double secs = now_s() - t0;
    mark("end");
    if (r != 1 || k != 'K') die("put: the server did not confirm the data (%s)", r < 0 ? strerror(errno) : "closed");
    read_sha(s, "put", sha);
    printf("bytes=%lld secs=%.3f sha=%s\n", sent, secs, sha);
  } else {
    die("unknown mode %s", mode);
  }
  return 0;
}
