#!/usr/bin/env bash
# Builds dom0's root file system from Debian packages and packs it as one
# uncompressed cpio (decompressing under TCG is slow), plus the kernel and
# Debian's Xen hypervisor. Output: $ROOTFS_DIR/{dom0.cpio,vmlinuz,xen-debian.elf,
# xen-debian.config,modules/,manifest.txt}. Cached by the hash of this file.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ -f "$ROOTFS_DIR/done" ] && { log "rootfs cached: $ROOTFS_DIR"; exit 0; }
need_pkgs mmdebstrap cpio xz-utils kmod
rm -rf "$ROOTFS_DIR.tmp" && mkdir -p "$ROOTFS_DIR.tmp"
cd "$ROOTFS_DIR.tmp"

# dom0's user space: the Xen toolstack and a shell. mount is not Essential
# in bookworm; util-linux's losetup (in mount) backs the guest's vbd.
log "mmdebstrap $SUITE (about a minute)"
mmdebstrap --variant=essential \
	--include=mount,xen-utils-4.17,xenstore-utils,busybox-static,kmod,procps,iproute2 \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	"$SUITE" tree >mmdebstrap.log 2>&1 || { tail -20 mmdebstrap.log; die "mmdebstrap failed"; }

# The kernel (dom0 and guest share it) and the hypervisor, unpacked from
# their .debs: installing linux-image in the tree would build an initrd.
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
mkdir -p debs && (cd debs && chown _apt . 2>/dev/null; apt-get download -q "$kpkg" xen-hypervisor-4.17-amd64 >/dev/null)
mkdir -p kpkg xpkg
dpkg-deb -x debs/${kpkg}_*.deb kpkg
dpkg-deb -x debs/xen-hypervisor-4.17-amd64_*.deb xpkg
kver=$(ls kpkg/lib/modules)
cp kpkg/boot/vmlinuz-$kver vmlinuz
zcat xpkg/boot/xen-4.17-amd64.gz >xen-debian.elf
cp xpkg/boot/xen-4.17-amd64.config xen-debian.config

# Modules: dom0 needs the Xen device interfaces and backends, a disk for
# results (virtio), loop for file-backed vbds and e1000/bridge for a lab
# network; the guest needs its PV frontends. Copy them with their dependencies.
depmod -b kpkg "$kver"
copy_mods() { # copy_mods DEST MODULE...
	local dest=$1; shift
	for m in "$@"; do
		modprobe -d kpkg -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
	done | sort -u | while read -r f; do
		rel=${f#*/kpkg/}; mkdir -p "$dest/$(dirname "$rel")"; cp "$f" "$dest/$rel"
	done
	cp kpkg/lib/modules/$kver/modules.order kpkg/lib/modules/$kver/modules.builtin* "$dest/lib/modules/$kver/"
	depmod -b "$dest" "$kver"
}
copy_mods tree xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback xen-netback \
	loop virtio_pci virtio_blk virtio_net e1000 bridge tun
copy_mods guestmods xen-blkfront xen-netfront
mv guestmods modules

# Directories the daemons expect; /init comes with each run's small cpio.
mkdir -p tree/var/run/xen tree/var/lib/xen tree/var/log/xen/console tree/run/xen tree/lab
rm -rf tree/var/cache/apt/* tree/var/lib/apt/lists/*

log "packing dom0.cpio"
(cd tree && find . | cpio -o -H newc --quiet) >dom0.cpio
{
	echo "suite $SUITE"
	echo "kernel $kpkg $kver"
	for p in xen-utils-4.17 busybox-static; do
		echo "$p $(chroot tree dpkg-query -W -f='${Version}' $p)"
	done
	echo "xen-hypervisor-4.17-amd64 $(dpkg-deb -f debs/xen-hypervisor-4.17-amd64_*.deb Version)"
	echo "dom0.cpio $(du -m dom0.cpio | cut -f1) MB"
} >manifest.txt
rm -rf kpkg xpkg debs
mkdir -p "$XENLAB_CACHE" && rm -rf "$ROOTFS_DIR" && mv "$ROOTFS_DIR.tmp" "$ROOTFS_DIR"
touch "$ROOTFS_DIR/done"
log "rootfs built: $ROOTFS_DIR"; cat "$ROOTFS_DIR/manifest.txt" >&2
