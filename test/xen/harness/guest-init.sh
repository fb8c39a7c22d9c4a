#!/bin/busybox sh
# /init of the PV guest's busybox initramfs (built per run by make-run-disk.sh). Loads xen-netfront,
# brings eth0 up and runs the traffic checks against dom0, printing "GUEST ..." lines on hvc0,
# which dom0's xenconsoled logs and dom0-run.sh forwards to the serial console.
# Kernel command line: qnicd_ip=<guest ip> qnicd_peer=<dom0 ip> qnicd_mb=<MB per transfer>
# qnicd_mode=full (pings + TCP both ways), auto (TCP only if the 1472-byte pings got a reply)
# or ping (pings only); qnicd_tmo=<seconds allowed per TCP transfer>; qnicd_nf=<xen-netfront parameter>
# After its traffic the guest keeps watching: when dom0 detaches its vif (xl network-detach) and
# attaches a new one (xl network-attach), it brings the new interface up with the same address
# and pings again ("GUEST PING2 ..."), as often as that happens. Meanwhile xfer serves dom0's
# throughput steps on port 5010.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp
say() { echo "GUEST $*"; }
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
IP=$(arg qnicd_ip); PEER=$(arg qnicd_peer); MB=$(arg qnicd_mb)
MODE=$(arg qnicd_mode); TMO=$(arg qnicd_tmo); TMO=${TMO:-300}
IP=${IP:-10.0.0.2}; PEER=${PEER:-10.0.0.1}; MB=${MB:-16}; MODE=${MODE:-full}
up() { cut -d' ' -f1 /proc/uptime; }

# qnicd_nf=<param>: one xen-netfront module parameter (busybox insmod does not read
# "xen_netfront.<param>" from the kernel command line as modprobe would), e.g. max_queues=1.
NF=$(arg qnicd_nf)
for m in $(cat /mods/order); do
  case $m in *xen-netfront*) insmod /mods/$m $NF || say "FAIL insmod $m $NF" ;; *) insmod /mods/$m || say "FAIL insmod $m" ;; esac
done
say "NETFRONT queues=$(ls -d /sys/class/net/eth0/queues/tx-* 2>/dev/null | wc -l)"
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -e /sys/class/net/eth0 ] || { say "FAIL no eth0 (netfront did not connect)"; sleep 100000; }
ip link set lo up
ip addr add "$IP/24" dev eth0
ip link set eth0 up
i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
say "UP ip=$IP carrier=$(cat /sys/class/net/eth0/carrier 2>/dev/null) mtu=$(cat /sys/class/net/eth0/mtu)"
# The throughput steps' server (xfer.c): dom0 drives the bulk transfers and asks for the counters.
xfer serve 5010 /tmp/xfer-up /tmp/xfer-down &

# pings TAG: five pings of each size to dom0, one "GUEST <TAG> size=.. sent=5 recv=.." line each.
pings() {
  for s in 56 1000 1472; do
    out=$(ping -c 5 -s $s -W 3 "$PEER" 2>&1)
    recv=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    say "$1 size=$s sent=5 recv=${recv:-0}"
  done
}
# reachable: waits (20 s at most) for dom0 to answer at all; dom0's end joins the bridge a moment
# after our carrier is up, and under a loaded TCG host that can take seconds.
reachable() {
  t0=$(up); ok=0
  while [ $ok = 0 ] && [ "$(echo "$t0 $(up)" | awk '{print ($2-$1 < 20)}')" = 1 ]; do
    ping -c 1 -W 1 "$PEER" >/dev/null 2>&1 && ok=1
  done
  echo "ok=$ok after_secs=$(echo "$t0 $(up)" | awk '{printf "%.1f", $2-$1}')"
}
# watch_reattach: forever, waits for eth0 to go (the vif detached), then for a new eth* (a vif
# attached), brings it up with our address and pings dom0 again.
watch_reattach() {
  while :; do
    while [ -e /sys/class/net/eth0 ]; do sleep 0.5; done
    say "DETACHED"
    dev=""
    while [ -z "$dev" ]; do sleep 0.5; dev=$(ls /sys/class/net | grep '^eth' | head -1); done
    ip addr add "$IP/24" dev "$dev"
    ip link set "$dev" up
    i=0; while [ "$(cat /sys/class/net/$dev/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    say "REUP dev=$dev carrier=$(cat /sys/class/net/$dev/carrier 2>/dev/null) $(reachable) tx_packets=$(cat /sys/class/net/$dev/statistics/tx_packets) rx_packets=$(cat /sys/class/net/$dev/statistics/rx_packets)"
    say "NEIGH $(ip neigh show dev $dev | tr '\n' ' ')"
    pings PING2
    say "REDONE"
  done
}
say "REACHABLE $(reachable)"
pings PING
[ "$MODE" = auto ] && [ "${recv:-0}" -gt 0 ] && MODE=full

if [ "$MODE" != full ]; then say "DONE"; watch_reattach; fi

# guest -> dom0: dom0 listens on 5001 and writes what it gets to a file it checksums.
dd if=/dev/urandom of=/tmp/up bs=1048576 count="$MB" 2>/dev/null
say "UPSHA $(sha256sum /tmp/up | cut -c1-64) bytes=$(wc -c < /tmp/up)"
t0=$(up); timeout "$TMO" nc "$PEER" 5001 < /tmp/up; rc=$?; t1=$(up)
say "UPDONE rc=$rc secs=$(echo "$t0 $t1" | awk '{printf "%.2f", $2-$1}')"
rm -f /tmp/up

# dom0 -> guest: dom0 serves a file on 5002. A read-write fifo as stdin never reaches EOF, so nc
# stops only when dom0 closes the connection.
mkfifo /tmp/hold; exec 3<>/tmp/hold
t0=$(up); timeout "$TMO" nc "$PEER" 5002 <&3 > /tmp/down; rc=$?; t1=$(up)
say "DOWNSHA $(sha256sum /tmp/down | cut -c1-64) bytes=$(wc -c < /tmp/down) rc=$rc secs=$(echo "$t0 $t1" | awk '{printf "%.2f", $2-$1}')"
rm -f /tmp/down
say "DONE"
watch_reattach
