#!/bin/bash
# dom0's PID 1 in the testbed (the initramfs switch_roots into it with the run disk on /qnicd).
# Brings up the Xen toolstack, then runs the checks, reporting on the serial console with lines
#   QNICD-STEP <name> ok|fail <detail>     one check's verdict
#   QNICD-RESULT <key>=<value> ...         measurements
#   QNICD-DONE                             all steps ran (the host stops QEMU on it)
# Guest console lines are forwarded as "[guest<N>] ...". Settings come from /qnicd/.xen-run/env.
export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
R=/qnicd/.xen-run
BB=$R/busybox
XL=/usr/lib/xen-4.17/bin/xl
t_start=$(cut -d' ' -f1 /proc/uptime)

say() { echo "$*" > /dev/console; }
step() { say "QNICD-STEP $1 $2 ${*:3}"; }
result() { say "QNICD-RESULT $*"; }
# elapsed START: seconds (one decimal) since the uptime value START.
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
# within START SECS: true while less than SECS seconds passed since START (loops bounded by time,
# not by iterations: under TCG a loop iteration that spawns processes takes a variable while).
within() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN{exit !(b-a < s)}'; }
since() { awk -v a="$t_start" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}'; }
finish() {
  say "QNICD-DONE uptime=$(since)"
  sync
  echo o > /proc/sysrq-trigger
  sleep 5
  poweroff -f
}
trap finish EXIT

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/shm /dev/pts && mount -t tmpfs tmpfs /dev/shm && mount -t devpts devpts /dev/pts
ln -sfn /run /var/run 2>/dev/null
# devtmpfs has no /dev/fd (udev makes it): bash's process substitution needs it.
ln -sfn /proc/self/fd /dev/fd; ln -sfn /proc/self/fd/0 /dev/stdin; ln -sfn /proc/self/fd/1 /dev/stdout; ln -sfn /proc/self/fd/2 /dev/stderr
[ -f $R/env ] && . $R/env
say "dom0: up after $(since) s (kernel $(uname -r))"

# --- Xen toolstack ---------------------------------------------------------------------------
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd bridge tun; do modprobe $m || say "dom0: modprobe $m failed"; done
mount -t xenfs xenfs /proc/xen
mkdir -p /run/xenstored /var/log/xen/console /var/lib/xen /run/xen
xenstored --pid-file /run/xenstored.pid || { step toolstack fail "xenstored did not start"; exit 1; }
xen-init-dom0 >/tmp/xen-init-dom0.log 2>&1 || { step toolstack fail "xen-init-dom0: $(tail -3 /tmp/xen-init-dom0.log)"; exit 1; }
xenconsoled --log=guest --log-dir=/var/log/xen/console || { step toolstack fail "xenconsoled did not start"; exit 1; }
ip link set lo up
ip link add xenbr0 type bridge && ip addr add 10.0.0.1/24 dev xenbr0 && ip link set xenbr0 up
if $XL list >/tmp/xl-list 2>&1 && grep -q Domain-0 /tmp/xl-list; then
  step toolstack ok "xenstored, xen-init-dom0, xenconsoled, xenbr0 10.0.0.1/24 ready at $(since) s"
else
  step toolstack fail "xl list: $(tail -2 /tmp/xl-list)"; exit 1
fi
result "toolstack_ready_s=$(since)"

# GET http://127.0.0.1:8080$1 with bash's /dev/tcp (busybox-static's wget crashes in this dom0):
# the body on stdout, status 1 if nothing listens.
http_get() {
  (
    exec 5<>/dev/tcp/127.0.0.1/8080 || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&5
    resp=$(timeout 5 cat <&5)
    printf '%s\n' "${resp#*$'\r\n\r\n'}"
  ) 2>/dev/null
}

# Forwards a guest's console log to the serial console, prefixed.
forward_console() {
  local name=$1 log=/var/log/xen/console/guest-$1.log
  stop_forward "$name"
  : > "$log"
  tail -n +1 -F "$log" 2>/dev/null | while IFS= read -r line; do say "[$name] ${line%$'\r'}"; done &
}

stop_forward() { pkill -f "tail -n \+1 -F /var/log/xen/console/guest-$1.log" 2>/dev/null; }

# Waits (up to $2 s) for a line matching $3 in guest $1's console log.
wait_guest() {
  local log=/var/log/xen/console/guest-$1.log w0; w0=$(now)
  while within "$w0" "$2"; do
    grep -q "$3" "$log" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
guest_line() { grep "$2" "/var/log/xen/console/guest-$1.log" 2>/dev/null | tail -1 | tr -d '\r'; }

guest_cfg() { # name mac mode [seconds per TCP transfer] [guest ip] [vcpus] [xen-netfront parameter]
  cat > /tmp/$1.cfg <<CFG
name = "$1"
type = "pv"
kernel = "$R/vmlinuz"
ramdisk = "$R/guest-initrd.gz"
extra = "console=hvc0 quiet qnicd_ip=${5:-10.0.0.2} qnicd_peer=10.0.0.1 qnicd_mb=${QNICD_MB:-16} qnicd_mode=$3 qnicd_tmo=${4:-300} qnicd_nf=${7:-}"
memory = 256
vcpus = ${6:-1}
vif = [ 'mac=$2,bridge=xenbr0' ]
on_crash = "destroy"
CFG
}

# dom0 -> guest pings, sizes up to 1472. Appends to $fail.
ping_guest() { # result-prefix [guest ip]
  local s out recv
  for s in 56 1000 1472; do
    out=$($BB ping -c 5 -s $s -W 3 ${2:-10.0.0.2} 2>&1)
    recv=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    result "$1_dom0_ping size=$s sent=5 recv=${recv:-0}"
    [ "${recv:-0}" = 5 ] || fail="$fail dom0->guest ping size=$s lost packets (${recv:-0}/5);"
  done
}

# The guest's TCP peers in dom0, started before the guest: 5001 receives the guest's upload into
# /tmp/up.bin, 5002 serves /tmp/down.bin. Sets DOWNSHA and UP_PID.
start_listeners() {
  pkill -f "nc -l -p 500[12]" 2>/dev/null
  head -c $(( ${QNICD_MB:-16} * 1048576 )) /dev/urandom > /tmp/down.bin
  DOWNSHA=$(sha256sum /tmp/down.bin | cut -c1-64)
  rm -f /tmp/up.bin /tmp/hold; mkfifo /tmp/hold && exec 4<>/tmp/hold
  $BB nc -l -p 5001 <&4 > /tmp/up.bin &
  UP_PID=$!
  $BB nc -l -p 5002 < /tmp/down.bin &
}

# guest_pings GUEST TAG RESULT-PREFIX: the guest's "GUEST <TAG> size=.. sent=5 recv=.." lines (its
# pings to dom0), all three sizes without loss. Appends problems to $fail.
guest_pings() {
  local size recv n=0
  while read -r size recv; do
    n=$((n + 1))
    result "$3_guest_ping $size sent=5 $recv"
    [ "$recv" = recv=5 ] || fail="$fail $1->dom0 ping $size lost packets ($recv of 5);"
  done < <(grep -o "GUEST $2 size=[0-9]* sent=5 recv=[0-9]*" /var/log/xen/console/guest-$1.log | awk '{print $3, $5}')
  [ $n = 3 ] || fail="$fail $1 reported $n of 3 ping results;"
}

# Reads a finished guest's results: guest->dom0 pings, then dom0->guest pings, then (if the guest
# ran them) both TCP transfers by sha256 and MB/s. Appends problems to $fail.
evaluate_traffic() { # guest result-prefix
  local g=$1 p=$2 reach
  reach=$(guest_line $g "GUEST REACHABLE")
  result "${p}_guest_reachable ${reach#GUEST REACHABLE }"
  guest_pings $g PING $p
  ping_guest "$p"
  local upline downline upsha gotup upsecs downsecs mb=${QNICD_MB:-16}
  upline=$(guest_line $g "GUEST UPSHA")
  if [ -z "$upline" ]; then fail="$fail the guest ran no TCP transfer;"; return; fi
  upsha=$(echo "$upline" | awk '{print $3}')
  local w0; w0=$(now)
  while kill -0 $UP_PID 2>/dev/null && within "$w0" 10; do sleep 0.2; done
  gotup=$(sha256sum /tmp/up.bin | cut -c1-64)
  [ "$upsha" = "$gotup" ] || fail="$fail guest->dom0 TCP data differs (guest sha256 $upsha, dom0 got $(stat -c %s /tmp/up.bin) bytes with $gotup);"
  downline=$(guest_line $g "GUEST DOWNSHA")
  [ "$(echo "$downline" | awk '{print $3}')" = "$DOWNSHA" ] || fail="$fail dom0->guest TCP data differs (${downline:-no result} vs $DOWNSHA);"
  upsecs=$(guest_line $g "GUEST UPDONE" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
  downsecs=$(echo "$downline" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
  result "${p}_tcp_up mb=$mb secs=$upsecs mbps=$(awk -v m=$mb -v s=${upsecs:-0} 'BEGIN{if(s>0)printf "%.2f", m/s; else print "nan"}')"
  result "${p}_tcp_down mb=$mb secs=$downsecs mbps=$(awk -v m=$mb -v s=${downsecs:-0} 'BEGIN{if(s>0)printf "%.2f", m/s; else print "nan"}')"
}

# --- 1. kernel netback baseline --------------------------------------------------------------
baseline() {
  modprobe xen-netback || { step netback-baseline fail "modprobe xen-netback"; return; }
  start_listeners
  guest_cfg guest1 00:16:3e:00:00:01 full
  local t0; t0=$(since)
  forward_console guest1
  if ! $XL create /tmp/guest1.cfg >/tmp/xl-create.log 2>&1; then
    step netback-baseline fail "xl create: $(tail -3 /tmp/xl-create.log | tr '\n' ' ')"; return
  fi
  result "netback_xl_create_s=$(awk -v a="$t0" -v b="$(since)" 'BEGIN{printf "%.1f", b-a}')"
  if ! wait_guest guest1 90 "GUEST UP"; then
    step netback-baseline fail "the guest's eth0 did not come up in 90 s"; $XL destroy guest1; return
  fi
  result "netback_guest_up_s=$(awk -v a="$t0" -v b="$(since)" 'BEGIN{printf "%.1f", b-a}')"
  if ! wait_guest guest1 400 "GUEST DONE"; then
    step netback-baseline fail "the guest's traffic did not finish in 400 s"; $XL destroy guest1; return
  fi
  local fail=""
  evaluate_traffic guest1 netback
  rm -f /tmp/up.bin /tmp/down.bin
  NB_DOMID=$($XL domid guest1 2>/dev/null)
  if [ -z "$fail" ]; then step netback-baseline ok "pings 56..1472 both ways, ${QNICD_MB:-16} MB TCP each way with equal sha256"
  else step netback-baseline fail "$fail"; fi
}

# --- throughput: bulk TCP through a backend, and what it cost ---------------------------------
# Steps netback-throughput (on guest1, after netback-baseline) and qnicd-throughput (on guest2,
# after qnicd), when QNICD_STEPS names "throughput". xfer (xfer.c) runs as a server in the guest;
# dom0 moves ${QNICD_TPUT_MB:-32} MB guest -> dom0 ("up") three times, then dom0 -> guest ("down")
# three times (each direction after one untimed warm-up transfer), each timed in dom0 (and marked on the console: "QNICD-XFER B D N start|end", where
# the host reads QEMU's CPU time) and compared by sha256. Around each direction's three it takes
# the counters that say what the transfers cost: dom0's /proc/interrupts lines of the vif (kernel
# netback names its IRQs vifD.N-q0-tx/-rx) and of user-space event channels ("evtchn:<command>",
# qnicd's), the dom0 netdev's counters, TCP retransmissions, the guest's (xfer stat) and, for
# qnicd, /vifs/<vif>.
# The host (throughput.ts) turns the lines into MB/s, medians, ratios and per-MB costs:
#   QNICD-RESULT tput backend=B dir=up|down i=N bytes=.. secs=.. mbps=.. sha=ok|bad
#   QNICD-RESULT tput_snap backend=B dir=D at=before|after dev|tcp|vifs|irq|guest <what was read>
TPUT_PORT=5010
has_step() { case " ${QNICD_STEPS:-} " in *" $1 "*) return 0 ;; esac; return 1; }

tput_snap() { # backend dir at vif guest-ip
  local p="tput_snap backend=$1 dir=$2 at=$3" st=/sys/class/net/$4/statistics l
  result "$p dev rx_packets=$(cat $st/rx_packets) tx_packets=$(cat $st/tx_packets) rx_bytes=$(cat $st/rx_bytes) tx_bytes=$(cat $st/tx_bytes)"
  grep -E " $4-|evtchn:" /proc/interrupts | while IFS= read -r l; do result "$p irq $l"; done
  # Segments TCP sent again (a lost or late packet; a retransmission timeout stalls a transfer).
  result "$p $(awk '/^Tcp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i } else print "tcp retrans_segs=" $c }' /proc/net/snmp)"
  # The CPU counters are read nearest the transfers (last before them, first after them): the /vifs
  # request and the guest's stat exchange cost qnicd's main thread and the JIT real time under
  # emulation (a first boot read 2.9 ms/MB on the main thread and 6.1 on the JIT thread with one
  # /vifs request inside the window), and are not the transfers' cost.
  [ $3 = after ] && tput_cpu "$p" $1 $4
  [ "$1" = qnicd ] && result "$p vifs $(http_get /vifs/$4 | grep -o '"counters":{[^}]*}')"
  timeout 30 $R/xfer stat $5 $TPUT_PORT - 2>&1 | while IFS= read -r l; do result "$p guest $l"; done
  if [ $3 = before ]; then tput_cpu "$p" $1 $4; fi
}

# tput_cpu PREFIX BACKEND VIF: where dom0's CPU time goes, in clock ticks (USER_HZ, 100 on x86):
# dom0's own split from /proc/stat (steal = time dom0 could have run while Xen ran the guest), and
# the backend's threads: every thread of qnicd, or kernel netback's per-queue threads of the vif
# ("vifD.N-qK-guest-rx", "vifD.N-qK-dealloc"; its NAPI polls run in softirq, counted above).
#   cpu user=.. nice=.. system=.. idle=.. iowait=.. irq=.. softirq=.. steal=..
#   thread comm=<name> tid=N utime=.. stime=..
tput_cpu() {
  local p=$1 t pids
  result "$p $(awk '/^cpu / { printf "cpu user=%s nice=%s system=%s idle=%s iowait=%s irq=%s softirq=%s steal=%s", $2, $3, $4, $5, $6, $7, $8, $9 }' /proc/stat)"
  if [ $2 = qnicd ]; then pids=$(ls -d /proc/$QPID/task/* 2>/dev/null)
  else pids=$(grep -l "^$3-" /proc/[0-9]*/comm 2>/dev/null | sed 's,/comm$,,'); fi
  for t in $pids; do
    # Fields after "pid (comm) ": utime and stime are the 12th and 13th (stat's 14th and 15th).
    [ -r $t/stat ] && result "$p thread comm=$(tr ' ' '_' < $t/comm) tid=${t##*/} $(sed 's/.*) //' $t/stat | awk '{ printf "utime=%s stime=%s", $12, $13 }')"
  done
}

# tput_strace VIF GUEST-IP [PREFIX]: one more up transfer (after the timed ones, so no figure above is
# slowed) with strace attached to every thread of qnicd: what each thread called, by system call,
# and the vif's /vifs counters around it, so the syscalls /vifs counts per packet get names:
#   QNICD-RESULT strace_up thread=<comm> tid=N <syscall>=<count> ...
#   QNICD-RESULT strace_up vifs at=before|after "counters":{...}
#   QNICD-RESULT strace_up transfer <xfer's line>
tput_strace() {
  local sp tid comm p=${3:-strace_up}
  command -v strace >/dev/null || { result "$p unavailable (strace is not in the dom0 image)"; return; }
  result "$p vifs at=before $(http_get /vifs/$1 | grep -o '"counters":{[^}]*}')"
  strace -f -qq -o /tmp/strace-up.log -p $QPID 2>/dev/null & sp=$!
  sleep 2 # attached to every thread before the transfer starts
  result "$p transfer $(timeout 180 $R/xfer get $2 $TPUT_PORT /tmp/tput-up.bin 2>&1 | tail -1)"
  kill -INT $sp; wait $sp 2>/dev/null
  result "$p vifs at=after $(http_get /vifs/$1 | grep -o '"counters":{[^}]*}')"
  # "TID name(args) = ret" and "TID name(args <unfinished ...>" start a call; "<... resumed>" does not.
  awk '$2 !~ /^</ { n = index($2, "("); if (n > 1) c[$1 " " substr($2, 1, n - 1)]++ }
       END { for (k in c) print k, c[k] }' /tmp/strace-up.log | sort -k1,1n -k3,3nr > /tmp/strace-up.sum
  for tid in $(cut -d' ' -f1 /tmp/strace-up.sum | sort -un); do
    comm=$(tr ' ' '_' < /proc/$QPID/task/$tid/comm 2>/dev/null)
    result "$p thread=${comm:-gone} tid=$tid $(awk -v t=$tid '$1 == t { printf "%s=%s ", $2, $3 }' /tmp/strace-up.sum)"
  done
  rm -f /tmp/strace-up.log /tmp/strace-up.sum
}

tput_step() { # step-name backend guest-name guest-ip domid devid
  local name=$1 b=$2 g=$3 ip=$4 vif=vif$5.$6 mb=${QNICD_TPUT_MB:-32} fail="" upsha downsha out i dir t0
  local bytes=$(( mb * 1048576 ))
  if [ -z "$5" ] || ! $XL domid $g >/dev/null 2>&1 || [ ! -e /sys/class/net/$vif ]; then
    step $name fail "needs $g running with $vif"; return
  fi
  t0=$(now)
  # dom0's data: made once and kept for the next backend's step (random data costs time under TCG).
  [ "$(stat -c %s /tmp/tput-down.bin 2>/dev/null)" = $bytes ] || head -c $bytes /dev/urandom > /tmp/tput-down.bin
  downsha=$(sha256sum /tmp/tput-down.bin | cut -c1-64)
  upsha=$(timeout 120 $R/xfer prep $ip $TPUT_PORT $bytes 2>&1)
  if [ ${#upsha} != 64 ]; then
    step $name fail "the guest's xfer did not prepare ${mb} MB: $upsha"; return
  fi
  for dir in up down; do
    # One untimed transfer first, for both backends: qnicd's JavaScript is compiled by JSC's JIT
    # threads while it first runs (under emulation they took 8 ms per MB of the first three up
    # transfers, 6 % of dom0's time), and the figures below are meant to be a backend's steady state.
    # Its MB/s is printed, outside the medians.
    if [ $dir = up ]; then out=$(timeout 180 $R/xfer get $ip $TPUT_PORT /tmp/tput-up.bin 2>&1)
    else out=$(timeout 180 $R/xfer put $ip $TPUT_PORT /tmp/tput-down.bin 2>&1); fi
    result "tput_warmup backend=$b dir=$dir $(echo "$out" | tail -1 | head -c 120)"
    tput_snap $b $dir before $vif $ip
    for i in 1 2 3; do
      local secs got sha ok=bad
      if [ $dir = up ]; then
        out=$(XFER_MARK="$b $dir $i" timeout 180 $R/xfer get $ip $TPUT_PORT /tmp/tput-up.bin 2>&1)
        sha=$(sha256sum /tmp/tput-up.bin | cut -c1-64); [ "$sha" = "$upsha" ] && ok=ok
      else
        out=$(XFER_MARK="$b $dir $i" timeout 180 $R/xfer put $ip $TPUT_PORT /tmp/tput-down.bin 2>&1)
        sha=$(echo "$out" | sed -n 's/.*sha=\([0-9a-f]*\).*/\1/p'); [ "$sha" = "$downsha" ] && ok=ok
      fi
      secs=$(echo "$out" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
      got=$(echo "$out" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
      [ "$got" = $bytes ] || ok=bad
      result "tput backend=$b dir=$dir i=$i bytes=${got:-0} secs=${secs:-nan} mbps=$(awk -v b=${got:-0} -v s=${secs:-0} 'BEGIN{if(s>0)printf "%.2f", b/1048576/s; else print "nan"}') sha=$ok"
      [ $ok = ok ] || fail="$fail $dir transfer $i: $(echo "$out" | tail -1 | head -c 200) (sha256 ${sha:-none}, expected $([ $dir = up ] && echo $upsha || echo $downsha));"
      # A transfer that moved nothing (stalled, refused) would only stall the next ones too.
      [ -n "$got" ] || break 2
    done
    tput_snap $b $dir after $vif $ip
    [ $b = qnicd ] && [ $dir = up ] && tput_strace $vif $ip
  done
  rm -f /tmp/tput-up.bin
  result "${b}_throughput_s=$(elapsed "$t0")"
  if [ -z "$fail" ]; then step $name ok "3 x ${mb} MB each way with equal sha256"; else step $name fail "$fail"; fi
}

# --- 2. the real platform under Bun ----------------------------------------------------------
platform_check() {
  local t0; t0=$(since)
  (cd /qnicd && QNICD_ON_XEN=1 timeout 300 $R/bun test/xen/harness/platform-check.ts) > /tmp/platform.log 2>&1
  local rc=$?
  while IFS= read -r l; do say "[platform] $l"; done < /tmp/platform.log
  result "platform_check_s=$(awk -v a="$t0" -v b="$(since)" 'BEGIN{printf "%.1f", b-a}')"
  if [ $rc -eq 0 ]; then step platform ok "map, copy statuses, evtchn bind/notify/read/unmask on real Xen"
  else step platform fail "platform-check.ts exited $rc (see [platform] lines)"; fi
}

# --- 3. qnicd as the backend -----------------------------------------------------------------
# One daemon serves every guest of this part, with two workers so that two guests can be on
# different ones. Steps: qnicd (one guest's traffic, as the baseline's), qnicd-reattach (xl
# network-detach and network-attach while the guest runs), qnicd-two-guests, qnicd-destroy.
QPID=""
G2=""; G2DEV=0; G3=""
qalive() { [ -n "$QPID" ] && kill -0 $QPID 2>/dev/null; }
# gntdev_maps: how many grant mappings (rings and any others) the daemon holds.
gntdev_maps() { local n; n=$(grep -c /dev/xen/gntdev /proc/$QPID/maps 2>/dev/null); echo ${n:-0}; }
vifs_has() { http_get /vifs | grep -q "\"$1\""; }
# vif_worker NAME: the worker serving the vif, from /vifs/NAME.
vif_worker() { http_get /vifs/$1 | sed -n 's/.*"worker":\([0-9]*\).*/\1/p'; }

# wait_connected DOMID DEVID SECS: true once both state nodes read 4 (Connected). Sets BS and FS.
wait_connected() {
  local be=/local/domain/0/backend/vif/$1/$2 fe=/local/domain/$1/device/vif/$2 w0; w0=$(now)
  BS=""; FS=""
  while within "$w0" "$3"; do
    BS=$(xenstore-read $be/state 2>/dev/null); FS=$(xenstore-read $fe/state 2>/dev/null)
    [ "$BS" = 4 ] && [ "$FS" = 4 ] && return 0
    qalive || return 1
    sleep 0.2
  done
  return 1
}

# vif_ports DOMID DEVID: dom0's event-channel ports bound to the vif's frontend ports. lsevtchn
# lists dom0's ports with the remote domain and port; the frontend's ports are in its nodes.
vif_ports() {
  local fe=/local/domain/$1/device/vif/$2 k p fports=" "
  for k in event-channel event-channel-tx event-channel-rx; do
    p=$(xenstore-read $fe/$k 2>/dev/null) && fports="$fports$p "
  done
  lsevtchn 0 | sed -n "s/^ *\([0-9]*\): .*Remote Domain $1, Port \([0-9]*\)$/\1 \2/p" |
    while read -r l r; do case "$fports" in *" $r "*) echo $l ;; esac; done | tr '\n' ' '
}
# ports_held DOMID PORT...: which of dom0's PORTs are still bound to DOMID (connected, or left
# waiting after the guest died: a port nobody unbound).
ports_held() {
  local d=$1; shift
  lsevtchn 0 | sed -n "s/^ *\([0-9]*\): .*Remote Domain $d\([^0-9].*\)\{0,1\}$/\1/p" |
    while read -r l; do case " $* " in *" $l "*) echo $l ;; esac; done | tr '\n' ' '
}

# qnicd_start [binary|sources]: starts the daemon (its log appended to /tmp/qnicd.log) and waits
# for /health; sets QPID and health. Also how the restart step starts a successor. binary: the
# executable `npm run build` makes ($R/qnicd, JavaScriptCore bytecode inside: what a production
# host runs); sources: Bun running src/main.ts from the checkout (transpiled at every start).
qnicd_start() {
  qnicd_launch "$@"
  health=""
  local w0; w0=$(now)
  while within "$w0" 60; do
    health=$(http_get /health) && [ -n "$health" ] && break
    qalive || break
    sleep 0.2
  done
  qalive
}
# qnicd_launch [binary|sources]: only starts it (QPID).
qnicd_launch() {
  # QNICD_ARGS (run env): extra daemon options, e.g. to narrow down a failure.
  if [ "${1:-sources}" = binary ]; then
    (cd /qnicd && exec $R/qnicd --platform xen --workers 2 ${QNICD_ARGS:-}) >> /tmp/qnicd.log 2>&1 &
  else
    (cd /qnicd && exec $R/bun src/main.ts --platform xen --workers 2 ${QNICD_ARGS:-}) >> /tmp/qnicd.log 2>&1 &
  fi
  QPID=$!
}

# started_phases: the last start's phases, from its "serving" line (src/startup-clock.ts).
started_phases() { echo "started=\"$(grep ' serving ' /tmp/qnicd.log | tail -1 | sed -n 's/.*started="\([^"]*\)".*/\1/p')\""; }

qnicd_check() {
  if [ ! -f /qnicd/src/main.ts ]; then step qnicd skip "src/main.ts is not there yet"; return; fi
  $XL destroy guest1 >/dev/null 2>&1
  rmmod xen-netback 2>/dev/null
  grep -q '^xen_netback ' /proc/modules && { step qnicd fail "xen-netback could not be unloaded"; return; }
  local t0; t0=$(since)
  # The daemon's log as it happens: a run cut off by the host's timeout still shows what qnicd did.
  : > /tmp/qnicd.log
  tail -n +1 -F /tmp/qnicd.log 2>/dev/null | while IFS= read -r line; do say "[qnicd] $line"; done &
  if ! qnicd_start; then
    step qnicd fail "qnicd exited before answering /health"; return
  fi
  result "qnicd_ready_s=$(awk -v a="$t0" -v b="$(since)" 'BEGIN{printf "%.1f", b-a}') health=$(echo $health | tr -d ' ' | head -c 200)"
  result "qnicd_first_start $(started_phases)"
  start_listeners
  guest_cfg guest2 00:16:3e:00:00:02 auto 90
  forward_console guest2
  local fail=""
  if ! $XL create /tmp/guest2.cfg >/tmp/xl-create2.log 2>&1; then
    step qnicd fail "xl create with qnicd as the backend: $(tail -3 /tmp/xl-create2.log | tr '\n' ' ')"; return
  fi
  G2=$($XL domid guest2)
  local be=/local/domain/0/backend/vif/$G2/0 fe=/local/domain/$G2/device/vif/0
  wait_connected $G2 0 60 || qalive || fail="$fail qnicd died while the vif connected;"
  result "qnicd_states backend=$BS frontend=$FS after_s=$(awk -v a="$t0" -v b="$(since)" 'BEGIN{printf "%.1f", b-a}')"
  [ "$BS" = 4 ] && [ "$FS" = 4 ] || fail="$fail vif not Connected (backend state $BS, frontend state $FS);"
  # What a colleague debugging the data path on real Xen wants to see.
  {
    echo "xenstore backend:"; xenstore-ls -f $be 2>&1 | head -40
    echo "xenstore frontend:"; xenstore-ls -f $fe 2>&1 | head -40
    echo "links:"; ip -d link show vif$G2.0 2>&1; ip -o link show master xenbr0 2>&1
  } > /tmp/qnicd-diag.log
  while IFS= read -r l; do say "[qnicd-diag] $l"; done < /tmp/qnicd-diag.log
  local vifs; vifs=$(http_get /vifs)
  result "qnicd_vifs $(echo $vifs | head -c 300)"
  echo "$vifs" | grep -q "vif$G2.0" || fail="$fail /vifs does not show vif$G2.0;"
  # The data path, measured as the netback baseline is: pings both ways, then TCP both ways
  # compared by sha256 (the guest runs TCP only if its largest pings got through).
  if qalive && wait_guest guest2 300 "GUEST DONE"; then
    evaluate_traffic guest2 qnicd
  else
    fail="$fail the guest did not finish its traffic in 300 s;"
  fi
  say "[qnicd-diag] /vifs/vif$G2.0 after traffic: $(http_get /vifs/vif$G2.0 | head -c 1500)"
  say "[qnicd-diag] $(ip -s -o link show vif$G2.0 2>&1 | head -c 600)"
  if [ -z "$fail" ]; then step qnicd ok "both sides Connected, /vifs shows the vif, pings 56..1472 both ways, ${QNICD_MB:-16} MB TCP each way with equal sha256"; else step qnicd fail "$fail"; fi
}

# xl network-detach of the running guest's vif must leave qnicd holding nothing of it; a vif
# attached again must carry traffic, and the guest sees a new interface it brings up.
qnicd_reattach() {
  if ! qalive || [ -z "$G2" ]; then step qnicd-reattach fail "needs qnicd and guest2 from step qnicd"; return; fi
  local fail="" ports maps d0 gone=0 devid held
  ports=$(vif_ports $G2 0); maps=$(gntdev_maps)
  say "[qnicd-diag] xenbr0 before detach: $(cat /sys/class/net/xenbr0/address)"
  d0=$(now)
  $XL network-detach guest2 0 >/tmp/xl-detach.log 2>&1 || fail="$fail xl network-detach: $(tail -2 /tmp/xl-detach.log | tr '\n' ' ');"
  result "qnicd_detach xl_s=$(elapsed "$d0") xl_said=\"$(tr '\n' ' ' < /tmp/xl-detach.log | head -c 200)\""
  while within "$d0" 30; do
    if [ "$(gntdev_maps)" = 0 ] && [ -z "$(ports_held $G2 $ports)" ] && ! vifs_has vif$G2.0 && ! xenstore-read /local/domain/0/backend/vif/$G2/0/state >/dev/null 2>&1; then gone=1; break; fi
    sleep 0.2
  done
  held=$(ports_held $G2 $ports)
  result "qnicd_detach ports_while_connected=[${ports% }] still_bound=[${held% }] gntdev_mappings_while_connected=$maps after=$(gntdev_maps) vif_forgotten=$gone after_s=$(elapsed "$d0")"
  [ -n "$ports" ] || fail="$fail no dom0 port bound to the vif was seen while connected (the check would prove nothing);"
  [ "$maps" -gt 0 ] || fail="$fail no gntdev mapping seen while connected (the check would prove nothing);"
  [ $gone = 1 ] || fail="$fail after xl network-detach qnicd still holds the vif (ports [${held% }], $(gntdev_maps) mappings, or /vifs lists vif$G2.0);"
  wait_guest guest2 30 "GUEST DETACHED" || fail="$fail the guest's eth0 did not go away;"
  say "[qnicd-diag] xenbr0 after detach: $(cat /sys/class/net/xenbr0/address)"

  d0=$(now)
  # rate= in the vif config: libxl writes B/rate, which step qnicd-rate then checks on this vif.
  if ! $XL network-attach guest2 mac=00:16:3e:00:00:02 bridge=xenbr0 rate=$RATE_XL >/tmp/xl-attach.log 2>&1; then
    step qnicd-reattach fail "$fail xl network-attach: $(tail -2 /tmp/xl-attach.log | tr '\n' ' ')"; return
  fi
  say "[qnicd-diag] xenbr0 after attach: $(cat /sys/class/net/xenbr0/address)"
  G2DEV=$(xenstore-list /local/domain/0/backend/vif/$G2 2>/dev/null | sort -n | tail -1)
  wait_connected $G2 ${G2DEV:-0} 60
  result "qnicd_attach devid=$G2DEV backend=$BS frontend=$FS after_s=$(elapsed "$d0")"
  [ "$BS" = 4 ] && [ "$FS" = 4 ] || fail="$fail reattached vif not Connected (backend state $BS, frontend state $FS);"
  vifs_has vif$G2.$G2DEV || fail="$fail /vifs does not show vif$G2.$G2DEV;"
  if wait_guest guest2 120 "GUEST REDONE"; then
    result "qnicd_reattach_guest $(guest_line guest2 'GUEST REUP')"
    guest_pings guest2 PING2 qnicd_reattach
    ping_guest qnicd_reattach 10.0.0.2
  else
    fail="$fail the guest did not bring the new interface up and ping in 120 s;"
  fi
  {
    echo "/vifs/vif$G2.$G2DEV after reattach traffic: $(http_get /vifs/vif$G2.$G2DEV | head -c 1500)"
    ip -s -o link show vif$G2.$G2DEV 2>&1 | head -c 600; echo
    echo "xenbr0 now: $(cat /sys/class/net/xenbr0/address)"
    echo "bridge ports: $(ip -o link show master xenbr0 2>&1 | awk '{print $2, $9}' | tr '\n' ' ')"
    echo "neighbours: $(ip neigh show dev xenbr0 2>&1 | tr '\n' ' ')"
    echo "qnicd fds: $(ls -l /proc/$QPID/fd 2>/dev/null | awk '{print $9 $10 $11}' | grep -E 'tun|evtchn|gntdev' | tr '\n' ' ')"
  } > /tmp/qnicd-diag2.log
  while IFS= read -r l; do say "[qnicd-diag] $l"; done < /tmp/qnicd-diag2.log
  if [ -z "$fail" ]; then step qnicd-reattach ok "xl network-detach released the vif's ports and mappings; after xl network-attach pings 56..1472 both ways"; else step qnicd-reattach fail "$fail"; fi
}

# The vif's rate= (xl network-attach ... rate=2MB/s@20ms in step qnicd-reattach): libxl's B/rate
# node as qnicd reads it, then a ${QNICD_RATE_MB:-4} MB transfer from the guest (its tx: what the
# limit holds back) through Linux netfront may move no more than the limit allows in the time it
# took, plus netback's 128 KiB burst and one interval; the hold-backs show in /vifs. Then B/rate is
# removed at runtime (the watch) and the same transfer runs unlimited, for comparison (printed).
RATE_XL=2MB/s@20ms
RATE_NODE=40000,20000
RATE_BPS=2000000
qnicd_rate() {
  if ! qalive || [ -z "$G2" ] || [ -z "$G2DEV" ]; then step qnicd-rate fail "needs qnicd and guest2's re-attached vif from step qnicd-reattach"; return; fi
  local fail="" be=/local/domain/0/backend/vif/$G2/$G2DEV vif=vif$G2.$G2DEV ip=10.0.0.2 mb=${QNICD_RATE_MB:-4} node out got secs sha upsha allowed thr
  local bytes=$(( mb * 1048576 ))
  node=$(xenstore-read $be/rate 2>/dev/null)
  result "qnicd_rate node=${node:-none} vifs_rate=\"$(http_get /vifs/$vif | grep -o '"rate":[^}]*}' | head -c 200)\""
  [ "$node" = $RATE_NODE ] || fail="$fail B/rate is \"${node:-absent}\", not $RATE_NODE (libxl's value for rate=$RATE_XL);"
  upsha=$(timeout 120 $R/xfer prep $ip $TPUT_PORT $bytes 2>&1)
  if [ ${#upsha} != 64 ]; then step qnicd-rate fail "$fail the guest's xfer did not prepare ${mb} MB: $upsha"; return; fi
  thr=$(http_get /vifs/$vif | sed -n 's/.*"tx_throttles":\([0-9]*\).*/\1/p')
  out=$(XFER_MARK="qnicd rate limited" timeout 180 $R/xfer get $ip $TPUT_PORT /tmp/rate-up.bin 2>&1)
  got=$(echo "$out" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p'); secs=$(echo "$out" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
  sha=$(sha256sum /tmp/rate-up.bin | cut -c1-64)
  allowed=$(awk -v s=${secs:-0} -v r=$RATE_BPS 'BEGIN{printf "%d", r*s + 131072 + 40000}')
  thr=$(( $(http_get /vifs/$vif | sed -n 's/.*"tx_throttles":\([0-9]*\).*/\1/p') - ${thr:-0} ))
  result "qnicd_rate limited bytes=${got:-0} secs=${secs:-nan} MBps=$(awk -v b=${got:-0} -v s=${secs:-0} 'BEGIN{if(s>0)printf "%.3f", b/1e6/s; else print "nan"}') allowed_bytes=$allowed throttles=$thr sha=$([ "$sha" = "$upsha" ] && echo ok || echo bad)"
  [ "$got" = $bytes ] && [ "$sha" = "$upsha" ] || fail="$fail the limited transfer did not complete intact ($out);"
  [ "${got:-0}" -le "$allowed" ] || fail="$fail $got bytes in $secs s is more than rate=$RATE_XL allows ($allowed with 128 KiB + one interval);"
  [ "$thr" -gt 0 ] || fail="$fail /vifs counted no tx_throttles: the limit never held the guest back;"
  xenstore-rm $be/rate
  sleep 1
  out=$(XFER_MARK="qnicd rate unlimited" timeout 180 $R/xfer get $ip $TPUT_PORT /tmp/rate-up.bin 2>&1)
  got=$(echo "$out" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p'); secs=$(echo "$out" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
  result "qnicd_rate unlimited bytes=${got:-0} secs=${secs:-nan} MBps=$(awk -v b=${got:-0} -v s=${secs:-0} 'BEGIN{if(s>0)printf "%.3f", b/1e6/s; else print "nan"}') vifs_rate=\"$(http_get /vifs/$vif | grep -o '"rate":null' | head -c 50)\""
  rm -f /tmp/rate-up.bin
  if [ -z "$fail" ]; then step qnicd-rate ok "rate=$RATE_XL from the vif config: B/rate $RATE_NODE, a ${mb} MB guest transfer within the limit, hold-backs counted; B/rate removed at runtime"; else step qnicd-rate fail "$fail"; fi
}

# A second guest while the first runs: both Connected, on different workers, both carrying pings.
qnicd_two_guests() {
  if ! qalive || [ -z "$G2" ]; then step qnicd-two-guests fail "needs qnicd and guest2 from step qnicd"; return; fi
  local fail="" t0 w2 w3
  guest_cfg guest3 00:16:3e:00:00:03 ping 90 10.0.0.3
  forward_console guest3
  t0=$(now)
  if ! $XL create /tmp/guest3.cfg >/tmp/xl-create3.log 2>&1; then
    step qnicd-two-guests fail "xl create guest3: $(tail -3 /tmp/xl-create3.log | tr '\n' ' ')"; return
  fi
  G3=$($XL domid guest3)
  wait_connected $G3 0 60
  result "qnicd_guest3_states backend=$BS frontend=$FS after_s=$(elapsed "$t0")"
  [ "$BS" = 4 ] && [ "$FS" = 4 ] || fail="$fail guest3's vif not Connected (backend state $BS, frontend state $FS);"
  w2=$(vif_worker vif$G2.$G2DEV); w3=$(vif_worker vif$G3.0)
  result "qnicd_two_guests workers vif$G2.$G2DEV=${w2:-none} vif$G3.0=${w3:-none}"
  [ -n "$w2" ] && [ -n "$w3" ] && [ "$w2" != "$w3" ] || fail="$fail the two vifs are not on two workers (${w2:-none} and ${w3:-none});"
  if wait_guest guest3 150 "GUEST DONE"; then
    guest_pings guest3 PING qnicd_guest3
    # dom0 pings both guests at the same time, so both workers carry traffic at once.
    $BB ping -c 10 -s 1472 -W 3 10.0.0.2 > /tmp/ping-g2.log 2>&1 &
    local pp=$! recv
    ping_guest qnicd_guest3 10.0.0.3
    wait $pp
    recv=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping-g2.log)
    result "qnicd_guest2_meanwhile_dom0_ping size=1472 sent=10 recv=${recv:-0}"
    [ "${recv:-0}" = 10 ] || fail="$fail dom0->guest2 pings during guest3's lost packets (${recv:-0}/10);"
  else
    fail="$fail guest3 did not finish its pings in 150 s;"
  fi
  if [ -z "$fail" ]; then step qnicd-two-guests ok "two guests Connected on workers $w2 and $w3, pings 56..1472 both ways to the new one while the other is pinged"; else step qnicd-two-guests fail "$fail"; fi
}

# xl destroy must leave qnicd holding nothing of the guests: no grant mapping (gntdev lines in its
# maps, rings included), none of the dom0 ports it bound to them, and /vifs forgets the vifs.
qnicd_destroy() {
  if ! qalive; then step qnicd-destroy fail "qnicd is not running"; return; fi
  local fail="" maps p2="" p3="" d0 gone=0 names=""
  maps=$(gntdev_maps)
  [ -n "$G2" ] && { p2=$(vif_ports $G2 $G2DEV); names="$names vif$G2.$G2DEV"; }
  [ -n "$G3" ] && { p3=$(vif_ports $G3 0); names="$names vif$G3.0"; }
  d0=$(now)
  $XL destroy guest2 >/dev/null 2>&1; $XL destroy guest3 >/dev/null 2>&1
  local n listed
  while within "$d0" 30; do
    listed=""; for n in $names; do vifs_has $n && listed="$listed $n"; done
    if [ "$(gntdev_maps)" = 0 ] && [ -z "$listed" ] && [ -z "$(ports_held ${G2:-x} $p2)$(ports_held ${G3:-x} $p3)" ]; then gone=1; break; fi
    sleep 0.2
  done
  result "qnicd_destroy ports_while_connected=[${p2% }|${p3% }] still_bound=[$(ports_held ${G2:-x} $p2)|$(ports_held ${G3:-x} $p3)] gntdev_mappings_while_connected=$maps after=$(gntdev_maps) vifs_forgotten=$gone after_s=$(elapsed "$d0")"
  [ -n "$names" ] || fail="$fail no guest to destroy;"
  [ -n "$p2$p3" ] || fail="$fail no dom0 port bound to a vif was seen while connected (the check would prove nothing);"
  [ "$maps" -gt 0 ] || fail="$fail no gntdev mapping seen while connected (the check would prove nothing);"
  [ $gone = 1 ] || fail="$fail after xl destroy qnicd still holds guest mappings or ports, or lists$listed;"
  if [ -z "$fail" ]; then step qnicd-destroy ok "after xl destroy of both guests: no gntdev mapping, no port bound to them, /vifs empty of them"; else step qnicd-destroy fail "$fail"; fi
}

# --- restart: qnicd killed or restarted under a transfer, the guest notices nothing -------------
# Step qnicd-queues (after qnicd-restart): a guest with vcpus=2 (guest4) makes Linux netfront
# open two queues (its default is one per vCPU, up to the backend's multi-queue-max-queues: qnicd
# offers min(8, workers) = 2): xenstore must show multi-queue-num-queues=2 and queue-0/queue-1
# with their rings and split event channels, and after 8 TCP transfers each way (each its own flow,
# so netfront's per-flow queue choice and tun's spread them) both queues' counters in /vifs must
# show packets both ways. Then a guest with vcpus=2 booted with xen-netfront max_queues=1 (guest5)
# must connect with one queue (keys at the top of its directory) and carry pings both ways.
QUEUE_FLOWS=8
queue_counters() { # vif: one "q=N tx=.. rx=.." line per queue from /vifs/<vif>
  http_get /vifs/$1 | grep -o '"queue":[0-9]*,"worker":[0-9]*,"counters":{[^}]*}' |
    sed -n 's/"queue":\([0-9]*\),"worker":\([0-9]*\),"counters":{.*"tx_packets":\([0-9]*\).*"rx_packets":\([0-9]*\).*/q=\1 worker=\2 tx_packets=\3 rx_packets=\4/p'
}
qnicd_queues() {
  if ! qalive; then step qnicd-queues fail "needs qnicd"; return; fi
  local fail="" t0 fe n k q i out line tx rx
  guest_cfg guest4 00:16:3e:00:00:04 ping 90 10.0.0.4 2
  forward_console guest4
  t0=$(now)
  if ! $XL create /tmp/guest4.cfg >/tmp/xl-create4.log 2>&1; then
    step qnicd-queues fail "xl create guest4: $(tail -3 /tmp/xl-create4.log | tr '\n' ' ')"; return
  fi
  G4=$($XL domid guest4)
  wait_connected $G4 0 150 # two vCPUs boot slower under TCG
  result "qnicd_queues_states backend=$BS frontend=$FS after_s=$(elapsed "$t0")"
  [ "$BS" = 4 ] && [ "$FS" = 4 ] || fail="$fail guest4's vif not Connected (backend state $BS, frontend state $FS);"
  fe=/local/domain/$G4/device/vif/0
  n=$(xenstore-read $fe/multi-queue-num-queues 2>/dev/null)
  result "qnicd_queues_xenstore max=$(xenstore-read /local/domain/0/backend/vif/$G4/0/multi-queue-max-queues 2>/dev/null) num=${n:-none} dirs=\"$(xenstore-list $fe 2>/dev/null | grep '^queue-' | tr '\n' ' ')\""
  [ "$n" = 2 ] || fail="$fail guest4 wrote multi-queue-num-queues=${n:-nothing}, not 2;"
  for q in 0 1; do
    for k in tx-ring-ref rx-ring-ref event-channel-tx event-channel-rx; do
      xenstore-read $fe/queue-$q/$k >/dev/null 2>&1 || fail="$fail guest4 has no queue-$q/$k;"
    done
  done
  if wait_guest guest4 150 "GUEST DONE"; then
    guest_pings guest4 PING qnicd_queues
    ping_guest qnicd_queues 10.0.0.4
    if [ "$(timeout 60 $R/xfer prep 10.0.0.4 $TPUT_PORT 1048576 2>&1 | wc -c)" -lt 64 ]; then fail="$fail guest4's xfer did not prepare;"; fi
    head -c 1048576 /dev/urandom > /tmp/queues-down.bin
    for i in $(seq $QUEUE_FLOWS); do
      timeout 60 $R/xfer get 10.0.0.4 $TPUT_PORT /tmp/queues-up.bin >/dev/null 2>&1 || fail="$fail flow $i up failed;"
      timeout 60 $R/xfer put 10.0.0.4 $TPUT_PORT /tmp/queues-down.bin >/dev/null 2>&1 || fail="$fail flow $i down failed;"
    done
    rm -f /tmp/queues-up.bin /tmp/queues-down.bin
    out=$(queue_counters vif$G4.0)
    echo "$out" | while IFS= read -r line; do [ -n "$line" ] && result "qnicd_queues_counters $line"; done
    [ "$(echo "$out" | grep -c '^q=')" = 2 ] || fail="$fail /vifs shows $(echo "$out" | grep -c '^q=') queues for vif$G4.0, not 2;"
    for q in 0 1; do
      line=$(echo "$out" | grep "^q=$q ")
      tx=$(echo "$line" | sed -n 's/.*tx_packets=\([0-9]*\).*/\1/p'); rx=$(echo "$line" | sed -n 's/.*rx_packets=\([0-9]*\).*/\1/p')
      [ "${tx:-0}" -gt 0 ] && [ "${rx:-0}" -gt 0 ] || fail="$fail queue $q carried tx_packets=${tx:-0} rx_packets=${rx:-0};"
    done
  else
    fail="$fail guest4 did not finish its pings in 150 s;"
  fi
  $XL destroy guest4 >/dev/null 2>&1; stop_forward guest4
  # Linux netfront told to use one queue, on a guest that has two vCPUs.
  guest_cfg guest5 00:16:3e:00:00:05 ping 90 10.0.0.5 2 max_queues=1
  forward_console guest5
  if ! $XL create /tmp/guest5.cfg >/tmp/xl-create5.log 2>&1; then
    fail="$fail xl create guest5: $(tail -3 /tmp/xl-create5.log | tr '\n' ' ');"
  else
    G5=$($XL domid guest5)
    wait_connected $G5 0 150
    fe=/local/domain/$G5/device/vif/0
    result "qnicd_queues_single states=$BS/$FS num=$(xenstore-read $fe/multi-queue-num-queues 2>/dev/null) top_ring=$(xenstore-read $fe/tx-ring-ref 2>/dev/null) $(guest_line guest5 'GUEST NETFRONT')"
    [ "$BS" = 4 ] && [ "$FS" = 4 ] || fail="$fail guest5's vif not Connected (backend state $BS, frontend state $FS);"
    xenstore-read $fe/tx-ring-ref >/dev/null 2>&1 || fail="$fail guest5 (max_queues=1) has no top-level tx-ring-ref;"
    if wait_guest guest5 150 "GUEST DONE"; then
      guest_pings guest5 PING qnicd_queues_single
      ping_guest qnicd_queues_single 10.0.0.5
    else
      fail="$fail guest5 did not finish its pings in 150 s;"
    fi
    $XL destroy guest5 >/dev/null 2>&1; stop_forward guest5
  fi
  if [ -z "$fail" ]; then step qnicd-queues ok "vcpus=2: two queues negotiated, both carried packets both ways over $QUEUE_FLOWS flows each way; max_queues=1: one queue, pings both ways"; else step qnicd-queues fail "$fail"; fi
}

# Step qnicd-restart (on guest3, after qnicd-two-guests): a ${QNICD_RESTART_MB:-32} MB transfer
# through xfer (dom0 -> guest, then guest -> dom0) with qnicd killed (kill -9) in the middle of the
# first and stopped with SIGTERM in the middle of the second, started again each time: both
# transfers complete with equal sha256, neither state node of the vif ever leaves 4 (polled every
# 0.2 s), and dom0's pings of the guest resume. The gap (seconds from the kill to the first
# answered ping) is printed for each.
# watch_state NODE FILE: for every write to NODE (a xenstore watch: no polling, which under TCG
# forked 10 processes a second beside the restart it watched), appends "<value> at <s>"; the
# watch's first event is its registration. Stopped by killing its children (pkill -P).
watch_state() {
  xenstore-watch $1 | while read -r _; do echo "$(xenstore-read $1 2>/dev/null) at $(since)"; done >> $2
}
# restart_once HOW DIR RUN: kills qnicd (HOW=kill9|sigterm) while a transfer in DIR runs, starts it
# again (RUN: binary|sources, as qnicd_start).
restart_once() {
  local how=$1 dir=$2 run=$3 mb=${QNICD_RESTART_MB:-32} ip=10.0.0.3 out sha ok=bad k0 gap="" w0 expect bytes
  bytes=$(( mb * 1048576 ))
  if [ $dir = down ]; then
    [ "$(stat -c %s /tmp/restart-down.bin 2>/dev/null)" = $bytes ] || head -c $bytes /dev/urandom > /tmp/restart-down.bin
    expect=$(sha256sum /tmp/restart-down.bin | cut -c1-64)
    ( timeout 240 $R/xfer put $ip $TPUT_PORT /tmp/restart-down.bin > /tmp/restart-xfer.out 2>&1 ) &
  else
    expect=$(timeout 120 $R/xfer prep $ip $TPUT_PORT $bytes 2>&1)
    ( timeout 240 $R/xfer get $ip $TPUT_PORT /tmp/restart-up.bin > /tmp/restart-xfer.out 2>&1 ) &
  fi
  local xp=$!
  # Into the transfer: wait until the vif has moved a few MB, so the kill lands mid-stream.
  w0=$(now)
  while within "$w0" 60; do
    [ "$(cat /sys/class/net/vif$G3.0/statistics/$([ $dir = down ] && echo tx_bytes || echo rx_bytes))" -gt $(( RESTART_BASE + 4 * 1048576 )) ] && break
    sleep 0.1
  done
  k0=$(now)
  if [ $how = kill9 ]; then kill -9 $QPID; else kill $QPID; fi
  wait $QPID 2>/dev/null; local rc=$?
  result "qnicd_restart how=$how dir=$dir old_exit=$rc after_s=$(elapsed "$k0")"
  # Waits for the successor's "serving" line (its vifs taken over) without polling: a loop of
  # /health requests forked ~25 processes a second, CPU the successor's start then lacked (dom0 has
  # one emulated CPU; a systemd host waits for READY=1 the same way, without polling).
  local lines; lines=$(wc -l < /tmp/qnicd.log)
  qnicd_launch $run
  # (A process substitution: the shell does not wait for tail, which lingers until its next line.)
  grep -q -m1 ' serving ' < <(timeout 90 tail -n +$((lines + 1)) -F /tmp/qnicd.log 2>/dev/null)
  local t_serving t_first first
  read -r t_serving _ < /proc/uptime
  qalive || { RFAIL="$RFAIL $how: the successor ($run) exited before serving;"; return 1; }
  # The first ping at once, before anything else is forked (a fork and exec takes a few hundred ms
  # on the one emulated CPU: the results printed first cost the gap 2 s), waiting up to 3 s for its
  # answer, whose round trip is printed (with dom0's neighbour entry for the guest, read after it).
  first=$($BB ping -c 1 -W 3 $ip 2>&1)
  read -r t_first _ < /proc/uptime
  [[ $first =~ time=([0-9.]+)\ ms ]] && first="time=${BASH_REMATCH[1]} ms" || first=""
  [ -n "$first" ] && gap=$(awk -v a="$k0" -v b="$t_first" 'BEGIN{printf "%.1f", b-a}')
  result "qnicd_restart how=$how run=$run serving_s=$(awk -v a="$k0" -v b="$t_serving" 'BEGIN{printf "%.1f", b-a}') $(started_phases)"
  result "qnicd_restart how=$how first_ping=\"${first:-no answer in 3 s}\" neighbour=\"$(ip neigh show $ip | head -1)\" answered_s=$(awk -v a="$k0" -v b="$t_first" 'BEGIN{printf "%.1f", b-a}')"
  while [ -z "$gap" ] && within "$k0" 60; do $BB ping -c 1 -W 1 $ip >/dev/null 2>&1 && { gap=$(elapsed "$k0"); break; }; done
  wait $xp
  out=$(cat /tmp/restart-xfer.out)
  if [ $dir = down ]; then sha=$(echo "$out" | sed -n 's/.*sha=\([0-9a-f]*\).*/\1/p'); else sha=$(sha256sum /tmp/restart-up.bin | cut -c1-64); fi
  [ "$sha" = "$expect" ] && ok=ok
  result "qnicd_restart how=$how dir=$dir run=$run transfer=\"$(echo $out | head -c 120)\" sha=$ok ping_gap_s=${gap:-none} adopted=\"$(grep -c 'taken over from an earlier qnicd' /tmp/qnicd.log)\""
  [ $ok = ok ] || RFAIL="$RFAIL $how: the ${mb} MB transfer ($dir) did not complete intact (${out:-no output});"
  [ -n "$gap" ] || RFAIL="$RFAIL $how: dom0's pings of the guest did not resume within 60 s;"
}
qnicd_restart() {
  if ! qalive || [ -z "$G3" ]; then step qnicd-restart fail "needs qnicd and guest3 from step qnicd-two-guests"; return; fi
  RFAIL=""
  # The binary in the page cache, as on a host that has just installed it (a restart after an
  # upgrade): reading its 110 MB from the emulated disk is no part of a restart's gap.
  cat $R/qnicd > /dev/null
  rm -f /tmp/restart-states.be /tmp/restart-states.fe
  watch_state /local/domain/0/backend/vif/$G3/0/state /tmp/restart-states.be & local wb=$!
  watch_state /local/domain/$G3/device/vif/0/state /tmp/restart-states.fe & local wf=$!
  RESTART_BASE=$(cat /sys/class/net/vif$G3.0/statistics/tx_bytes); restart_once kill9 down binary
  RESTART_BASE=$(cat /sys/class/net/vif$G3.0/statistics/rx_bytes); qalive && restart_once sigterm up binary
  sleep 1 # a late write still reaches the watch
  pkill -P $wb; pkill -P $wf; wait $wb $wf 2>/dev/null
  local w left
  for w in be fe; do
    result "qnicd_restart state_${w}_writes=\"$(tr '\n' ' ' < /tmp/restart-states.$w)\""
    [ -s /tmp/restart-states.$w ] || RFAIL="$RFAIL the watch of the $w state node never fired;"
    left=$(grep -v '^4 at ' /tmp/restart-states.$w | head -3 | tr '\n' ' ')
    [ -z "$left" ] || RFAIL="$RFAIL the vif's $w state left 4: $left;"
  done
  vifs_has vif$G3.0 || RFAIL="$RFAIL /vifs of the new qnicd does not show vif$G3.0;"
  rm -f /tmp/restart-down.bin /tmp/restart-up.bin
  if [ -z "$RFAIL" ]; then step qnicd-restart ok "kill -9 and SIGTERM of qnicd mid-transfer, started again: both ${QNICD_RESTART_MB:-32} MB transfers intact, states never left 4, pings resumed"; else step qnicd-restart fail "$RFAIL"; fi
}

# Step qnicd-restarted-throughput (after qnicd-restart, on guest2 as step qnicd-throughput): the
# qnicd that took the vifs over from a restarted one moves ${QNICD_RESTARTED_N:-4} x ${QNICD_TPUT_MB:-32} MB
# guest -> dom0, each sha256-checked, with /vifs around them, so its speed and cost per packet
# print next to the first qnicd's of this boot:
#   QNICD-RESULT restarted_tput dir=up i=N bytes=.. secs=.. mbps=.. sha=ok|bad
#   QNICD-RESULT restarted_tput at=before|after vifs "counters":{...}
qnicd_restarted_tput() {
  local ip=10.0.0.2 vif=vif$G2.$G2DEV mb=${QNICD_TPUT_MB:-32} upsha out sha secs got ok i fail="" t0
  local bytes=$(( mb * 1048576 ))
  if ! qalive || [ -z "$G2" ] || [ ! -e /sys/class/net/$vif ]; then
    step qnicd-restarted-throughput fail "needs the restarted qnicd serving guest2's $vif"; return
  fi
  t0=$(now)
  upsha=$(timeout 120 $R/xfer prep $ip $TPUT_PORT $bytes 2>&1)
  if [ ${#upsha} != 64 ]; then step qnicd-restarted-throughput fail "the guest's xfer did not prepare ${mb} MB: $upsha"; return; fi
  result "restarted_tput tap $(ip -d link show $vif | grep -o 'tun type.*' | head -c 160)"
  result "restarted_tput at=before vifs $(http_get /vifs/$vif | grep -o '"counters":{[^}]*}')"
  for i in $(seq 1 ${QNICD_RESTARTED_N:-4}); do
    ok=bad
    out=$(XFER_MARK="qnicd-restarted up $i" timeout 180 $R/xfer get $ip $TPUT_PORT /tmp/tput-up.bin 2>&1)
    sha=$(sha256sum /tmp/tput-up.bin | cut -c1-64); [ "$sha" = "$upsha" ] && ok=ok
    secs=$(echo "$out" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p')
    got=$(echo "$out" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
    [ "$got" = $bytes ] || ok=bad
    result "restarted_tput dir=up i=$i bytes=${got:-0} secs=${secs:-nan} mbps=$(awk -v b=${got:-0} -v s=${secs:-0} 'BEGIN{if(s>0)printf "%.2f", b/1048576/s; else print "nan"}') sha=$ok"
    [ $ok = ok ] || fail="$fail transfer $i: $(echo "$out" | tail -1 | head -c 200) (sha256 ${sha:-none}, expected $upsha);"
    [ -n "$got" ] || break
  done
  result "restarted_tput at=after vifs $(http_get /vifs/$vif | grep -o '"counters":{[^}]*}')"
  [ -n "${QNICD_RESTARTED_STRACE:-}" ] && tput_strace $vif $ip strace_restarted
  rm -f /tmp/tput-up.bin
  result "restarted_tput_s=$(elapsed "$t0")"
  if [ -z "$fail" ]; then step qnicd-restarted-throughput ok "the restarted qnicd: ${QNICD_RESTARTED_N:-4} x ${mb} MB up with equal sha256"; else step qnicd-restarted-throughput fail "$fail"; fi
}

# Stops the daemon: SIGTERM must end it within 30 s.
qnicd_stop() {
  [ -n "$QPID" ] || return
  local fail=""
  if qalive; then
    kill $QPID
    local k0; k0=$(now)
    while qalive && within "$k0" 30; do sleep 0.2; done
    qalive && { kill -9 $QPID; fail="qnicd did not exit within 30 s of SIGTERM"; }
    wait $QPID; result "qnicd_exit status=$? (after SIGTERM)"
  else
    wait $QPID; local rc=$?; result "qnicd_exit status=$rc (died by itself)"; fail="qnicd died by itself (status $rc)"
  fi
  sleep 0.5; pkill -f "tail -n \+1 -F /tmp/qnicd.log" 2>/dev/null
  if [ -z "$fail" ]; then step qnicd-exit ok "SIGTERM ended qnicd"; else step qnicd-exit fail "$fail"; fi
}

QNICD_STEPS=${QNICD_STEPS:-baseline platform qnicd throughput}
for s in $QNICD_STEPS; do
  case $s in
    baseline)
      NB_DOMID=""; baseline
      has_step throughput && tput_step netback-throughput netback guest1 10.0.0.2 "$NB_DOMID" 0
      $XL destroy guest1 >/dev/null 2>&1 ;;
    platform) platform_check ;;
    qnicd)
      qnicd_check
      has_step throughput && tput_step qnicd-throughput qnicd guest2 10.0.0.2 "$G2" 0
      qnicd_reattach; qnicd_rate; qnicd_two_guests; qnicd_restart
      has_step throughput && qnicd_restarted_tput
      qnicd_queues; qnicd_destroy; qnicd_stop ;;
    throughput) ;; # runs inside baseline and qnicd (above)
  esac
done
