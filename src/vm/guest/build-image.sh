#!/usr/bin/env bash
# Builds a driver VM's guest from Debian packages only: the kernel of
# linux-image-amd64 (the generic flavour: the cloud kernel has no e1000 or
# e1000e) and an initramfs of busybox-static, the NIC and bridge modules and
# src/vm/guest/init, and ng-carrier (src/vm/guest/carrier.cpp, built static
# by the project's CMake).
#   build-image.sh OUTDIR NG_CARRIER
# OUTDIR gets vmlinuz, initramfs.cpio and version; a second run with the same
# kernel and init does nothing.
set -euo pipefail

OUT=$(realpath -m "${1:?usage: build-image.sh OUTDIR NG_CARRIER}")
CARRIER=${2:?usage: build-image.sh OUTDIR NG_CARRIER}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULES=(e1000e e1000 virtio_net virtio_pci bridge pvpanic_mmio pvpanic_pci)
BUSYBOX=/bin/busybox

die() { printf 'build-image.sh: %s\n' "$*" >&2; exit 1; }

[[ -x $CARRIER ]] || die "$CARRIER is missing: build nicguard first (./run.sh build does)"
[[ -x $BUSYBOX ]] || die "$BUSYBOX is missing: install busybox-static (./run.sh deps does)"
command -v depmod >/dev/null || die "depmod is missing: install kmod"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $pkg ]] || die "apt knows no linux-image-amd64: run 'apt-get update' (./run.sh deps does)"
version=${pkg#linux-image-}
stamp="$version $(cat "$HERE/init" "$0" "$CARRIER" | sha256sum | cut -c1-16)"
if [[ -f $OUT/version && $(cat "$OUT/version") == "$stamp" && -f $OUT/vmlinuz && -f $OUT/initramfs.cpio ]]; then
  exit 0
fi

mkdir -p "$OUT"
work=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >/dev/null 2>"$work/apt.err") ||
  die "downloading $pkg failed: $(tail -1 "$work/apt.err")"
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/kernel"
depmod -b "$work/kernel" "$version"

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,etc,lib/modules}
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
install -m 755 "$HERE/init" "$root/init"
install -m 755 "$CARRIER" "$root/bin/ng-carrier"

moddir="$work/kernel/lib/modules/$version"
: >"$root/etc/ng-modules"
declare -A seen=()
for m in "${MODULES[@]}"; do
  while read -r kind path _; do
    [[ $kind == insmod ]] || continue
    rel=${path#"$moddir"/}
    [[ -n ${seen[$rel]:-} ]] && continue
    seen[$rel]=1
    mkdir -p "$root/lib/modules/$(dirname "$rel")"
    cp "$path" "$root/lib/modules/$rel"
    echo "$rel" >>"$root/etc/ng-modules"
  done < <(modprobe -d "$work/kernel" -S "$version" --show-depends "$m")
done

(cd "$root" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) >"$work/initramfs.cpio"
cp "$work/kernel/boot/vmlinuz-$version" "$work/vmlinuz"
mv "$work/initramfs.cpio" "$work/vmlinuz" "$OUT/"
echo "$stamp" >"$OUT/version"
