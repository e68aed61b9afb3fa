#!/usr/bin/env bash
# Builds the lab guest's initramfs: busybox, the PV frontends' modules and our
# memory checker (guest/memcheck.c, static) as its last process.
# Output: $GUEST_DIR/initrd (gzip cpio). Cached by the hash of its inputs.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ -f "$GUEST_DIR/done" ] && { log "guest cached: $GUEST_DIR"; exit 0; }
[ -f "$ROOTFS_DIR/done" ] || die "build the rootfs first (parts/rootfs.sh)"
need_pkgs gcc libc6-dev cpio
rm -rf "$GUEST_DIR.tmp" && mkdir -p "$GUEST_DIR.tmp/root"/{bin,dev,proc,sys}
cd "$GUEST_DIR.tmp"
gcc -O2 -static -Wall -Wextra -Werror -o root/memcheck "$LAB_DIR/guest/memcheck.c"
cp "$ROOTFS_DIR/tree/bin/busybox" root/bin/busybox
cp "$LAB_DIR/guest/init" root/init
mkdir -p root/etc/xenmig && cp "$LAB_DIR/guest/balloond.toml" root/etc/xenmig/balloond.toml
cp -a "$ROOTFS_DIR/modules/lib" root/lib
mknod -m 600 root/dev/console c 5 1
(cd root && find . | cpio -o -H newc --quiet) | gzip -1 >initrd
rm -rf root && cd / && rm -rf "$GUEST_DIR" && mv "$GUEST_DIR.tmp" "$GUEST_DIR" && touch "$GUEST_DIR/done"
log "guest built: $GUEST_DIR ($(du -k "$GUEST_DIR/initrd" | cut -f1) KiB)"
