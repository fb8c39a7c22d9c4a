#!/usr/bin/env bash
# Builds the per-run disk (/dev/vdb in dom0, mounted on /qnicd): the repo's working tree without
# node_modules/.git, the daemon's runtime dependencies, native/ built here (dom0 is bookworm like
# this host, so the .so files load there; dom0 has no compiler), and .xen-run/ with Bun's binary,
# busybox, xfer (xfer.c), the guest kernel and a guest initramfs (busybox + xfer + xen-netfront +
# guest-init.sh).
# Usage: make-run-disk.sh <images dir from build-images.sh> <repo> <out.img> [KEY=VALUE ...]
# (the KEY=VALUE pairs are written to .xen-run/env, read by dom0-run.sh).
set -euo pipefail
images=$1 repo=$2 out=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
kver=$(cat "$images/kver")
stage=$(mktemp -d /tmp/qnicd-xen-run.XXXXXX)
trap 'rm -rf "$stage"' EXIT

tar -C "$repo" --exclude=./node_modules --exclude=./.git -cf - . | tar -C "$stage" -xf -
mkdir -p "$stage/node_modules"
# BUN_BIN: the Bun running the harness (run.ts sets it); it also reads package.json here.
bun_bin=${BUN_BIN:-$(command -v bun || echo "$repo/node_modules/.bin/bun")}
for dep in $("$bun_bin" -e 'const p=require(process.argv[1]);console.log(Object.keys(p.dependencies||{}).filter(d=>d!=="bun").join(" "))' "$repo/package.json"); do
  [ -d "$repo/node_modules/$dep" ] && cp -a "$repo/node_modules/$dep" "$stage/node_modules/"
done
# native/: xendev built from source here; every library newer than its source, so nothing in dom0
# tries to rebuild (it has no gcc).
mkdir -p "$stage/native/build"
gcc -O2 -g -Wall -shared -fPIC -o "$stage/native/build/libxendev.so" "$repo/native/xendev.c" -lpthread
touch "$stage"/native/build/*.so

r="$stage/.xen-run"
mkdir -p "$r"
cp "$repo/node_modules/bun/bin/bun.exe" "$r/bun" 2>/dev/null || cp "$bun_bin" "$r/bun"
chmod +x "$r/bun"
cp "$images/busybox" "$r/busybox"
# qnicd as `npm run build` makes it (bytecode, native libraries inside), what a production host
# runs: the restart step starts one successor from it, the other from the sources.
"$bun_bin" run "$repo/scripts/build-binary.ts" --out "$r/qnicd" >/dev/null
cp "$images/vmlinuz" "$r/vmlinuz"
# The throughput steps' transfer tool, for dom0 and the guest (static: the guest has no libc).
gcc -O2 -Wall -static -o "$r/xfer" "$here/xfer.c"
: > "$r/env"
for kv in "$@"; do printf '%s\n' "$kv" >> "$r/env"; done

# Guest initramfs.
g="$stage/.guest"
mkdir -p "$g"/{bin,dev,proc,sys,tmp,mods}
cp "$images/busybox" "$g/bin/busybox"
cp "$here/guest-init.sh" "$g/init"
cp "$r/xfer" "$g/bin/xfer"
chmod +x "$g/init"
: > "$g/mods/order"
modprobe -d "$images/modules" -S "$kver" --show-depends xen-netfront | while read -r kind path _; do
  [ "$kind" = insmod ] || continue
  name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
  [ -e "$g/mods/$name" ] && continue
  case "$path" in
    *.xz) xz -dc "$path" > "$g/mods/$name" ;;
    *.zst) zstd -qdc "$path" > "$g/mods/$name" ;;
    *.gz) gzip -dc "$path" > "$g/mods/$name" ;;
    *) cp "$path" "$g/mods/$name" ;;
  esac
  echo "$name" >> "$g/mods/order"
done
(cd "$g" && find . | cpio -o -H newc --quiet | gzip -1) > "$r/guest-initrd.gz"
rm -rf "$g"

size_mb=$(( $(du -sm "$stage" | cut -f1) + 256 ))
rm -f "$out"
mkfs.ext4 -q -F -L qnicd-run -d "$stage" "$out" "${size_mb}M"
