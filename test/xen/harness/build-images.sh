#!/usr/bin/env bash
# Builds the cached part of the real-Xen testbed from Debian packages (see /work/shared/XEN-TESTBED.md):
#   xen                 the Xen 4.17 hypervisor as an ELF (QEMU's multiboot loader wants the ELF)
#   vmlinuz             the Debian kernel linux-image-amd64 depends on (dom0 and PV domU capable)
#   dom0-initrd.gz      busybox initramfs: loads virtio + ext4, mounts /dev/vda (root) and
#                       /dev/vdb (the per-run disk) and switch_roots into the per-run dom0 script
#   root.img            ext4 dom0 root: debootstrap bookworm minbase + xen-utils-4.17 (security),
#                       strace (the throughput step names qnicd's system calls with it)
#   modules/            the kernel's modules tree (for the guest initramfs built per run)
#   busybox             busybox-static (for the guest initramfs built per run)
# into  ${QNICD_XEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qnicd-xen}/<recipe-hash>/  where the hash
# covers this script and the versions of the packages it uses, so a second run reuses the result.
# Prints the directory on its last stdout line. Needs root (debootstrap, chroot).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base=${QNICD_XEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qnicd-xen}
mkdir -p "$base"
log() { echo "build-images: $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600)

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/{print $2}'; }

# Package lists: refresh once if a package we need has no candidate (fresh machine).
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
if [ -z "$kpkg" ] || [ -z "$(candidate xen-hypervisor-4.17-amd64)" ] || [ "$(candidate xen-hypervisor-4.17-amd64)" = "(none)" ]; then
  log "refreshing apt package lists"
  flock -w 900 /tmp/qnicd-apt.lock apt-get "${apt_opts[@]}" update -qq >&2
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$kpkg" ] || { log "cannot find the kernel package linux-image-amd64 depends on"; exit 1; }

recipe=$( {
  cat "$0"
  for p in "$kpkg" xen-hypervisor-4.17-amd64 xen-utils-4.17 busybox-static; do echo "$p $(candidate "$p")"; done
} | sha256sum | cut -c1-16)
out="$base/$recipe"
if [ -f "$out/DONE" ]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

exec 9>"$base/.lock"
flock -w 1800 9
if [ -f "$out/DONE" ]; then echo "$out"; exit 0; fi

t0=$(date +%s)
work="$base/.build-$recipe"
rm -rf "$base"/.build-*   # unfinished builds of any recipe (we hold the lock)
mkdir -p "$work/debs" "$work/x"
cd "$work"

log "downloading $kpkg, xen-hypervisor-4.17-amd64, busybox-static"
(cd debs && apt-get download "$kpkg" xen-hypervisor-4.17-amd64 busybox-static >&2)
for d in debs/*.deb; do dpkg -x "$d" x; done
kver=${kpkg#linux-image-}
cp "x/boot/vmlinuz-$kver" vmlinuz
xgz=$(ls x/boot/xen-4.17-amd64.gz 2>/dev/null || ls x/boot/xen-4.17*.gz | head -1)
gunzip -c "$xgz" > xen
cp x/bin/busybox busybox
mkdir -p modules/lib/modules
cp -a "x/lib/modules/$kver" modules/lib/modules/
depmod -b modules "$kver"
echo "$kver" > kver

# Resolves modules (and their dependencies, in load order) into plain .ko files in $2, appending
# their names to $2/order. Compressed modules are decompressed: busybox insmod loads plain ones.
collect_modules() {
  local dest=$1; shift
  mkdir -p "$dest"
  local m
  for m in "$@"; do
    # One module per call: modprobe takes further arguments as module parameters.
    modprobe -d "$work/modules" -S "$kver" --show-depends "$m"
  done | while read -r kind path _; do
    [ "$kind" = insmod ] || continue
    local name; name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
    [ -e "$dest/$name" ] && continue
    case "$path" in
      *.xz) xz -dc "$path" > "$dest/$name" ;;
      *.zst) zstd -qdc "$path" > "$dest/$name" ;;
      *.gz) gzip -dc "$path" > "$dest/$name" ;;
      *) cp "$path" "$dest/$name" ;;
    esac
    echo "$name" >> "$dest/order"
  done
}

log "dom0 initramfs"
mkdir -p initrd/{bin,dev,proc,sys,newroot,mods}
cp busybox initrd/bin/busybox
collect_modules initrd/mods virtio_pci virtio_blk ext4
cat > initrd/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
i=0; while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /newroot || { echo "QNICD-PANIC dom0 initramfs: cannot mount /dev/vda"; poweroff -f; }
mkdir -p /newroot/qnicd
mount -t ext4 /dev/vdb /newroot/qnicd || { echo "QNICD-PANIC dom0 initramfs: cannot mount /dev/vdb"; poweroff -f; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/bash /qnicd/test/xen/harness/dom0-run.sh
EOF
chmod +x initrd/init
(cd initrd && find . | cpio -o -H newc --quiet | gzip -1) > dom0-initrd.gz

log "debootstrap of the dom0 root (bookworm minbase + xen-utils-4.17)"
mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]+' | grep -v security | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
secmirror=$(grep -rhE '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]+debian-security/?' | head -1 || true)
secmirror=${secmirror:-http://deb.debian.org/debian-security}
debootstrap --variant=minbase \
  --include=xen-utils-4.17,xenstore-utils,iproute2,busybox,kmod,bridge-utils,procps,coreutils,strace \
  bookworm root "$mirror" >debootstrap.log 2>&1 || { tail -30 debootstrap.log >&2; exit 1; }
cat > root/etc/apt/sources.list <<EOF
deb $mirror bookworm main
deb $secmirror bookworm-security main
EOF
cp /etc/resolv.conf root/etc/resolv.conf
chroot root apt-get "${apt_opts[@]}" update -qq >&2
chroot root apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends xen-utils-4.17 >&2
chroot root apt-get clean
rm -rf root/var/lib/apt/lists/*
# Kernel modules for dom0 (xen-netback, gntdev, evtchn, bridge, tun ...).
mkdir -p root/lib/modules
cp -a "modules/lib/modules/$kver" root/lib/modules/
echo qnicd-dom0 > root/etc/hostname
mkfs.ext4 -q -F -L qnicd-root -d root root.img 2G

rm -rf x debs initrd root debootstrap.log
echo "recipe $recipe, $kpkg, xen $(candidate xen-hypervisor-4.17-amd64), built in $(( $(date +%s) - t0 )) s" > DONE
rm -rf "$out"
mv "$work" "$out"
# Keep the three newest recipes (other checkouts may use older ones); drop the rest.
ls -1dt "$base"/*/ 2>/dev/null | tail -n +4 | while read -r old; do [ -f "$old/DONE" ] && rm -rf "$old"; done
log "built $out in $(( $(date +%s) - t0 )) s"
echo "$out"
