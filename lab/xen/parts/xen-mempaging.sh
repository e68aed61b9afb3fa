#!/usr/bin/env bash
# Builds Xen 4.17.7 with CONFIG_UNSUPPORTED, CONFIG_MEM_PAGING and
# CONFIG_SHADOW_PAGING, starting from Debian's own configuration (which lacks
# mem_paging). Source: $XEN_SRC, a tarball or a checkout of the Xen Project's
# repository at RELEASE-4.17.7. Output: $MEMPAGING_DIR/xen.elf. About two
# minutes on two cores; cached by the hash of this file, the source and
# Debian's configuration.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ -f "$MEMPAGING_DIR/done" ] && { log "mempaging hypervisor cached: $MEMPAGING_DIR"; exit 0; }
[ -f "$ROOTFS_DIR/done" ] || die "build the rootfs first (parts/rootfs.sh)"
[ -e "$XEN_SRC" ] || die "no Xen source at XEN_SRC=$XEN_SRC: set XEN_SRC to a tarball or checkout of Xen RELEASE-4.17.7 (see lab/xen/README.md)"
need_pkgs gcc make python3 flex bison xz-utils
rm -rf "$MEMPAGING_DIR.tmp" && mkdir -p "$MEMPAGING_DIR.tmp" && cd "$MEMPAGING_DIR.tmp"
if [ -d "$XEN_SRC" ]; then
	cp -a "$XEN_SRC" src
else
	mkdir src && tar -xf "$XEN_SRC" -C src --strip-components=1
fi
cp "$ROOTFS_DIR/xen-debian.config" src/xen/.config
printf 'CONFIG_UNSUPPORTED=y\nCONFIG_MEM_PAGING=y\nCONFIG_SHADOW_PAGING=y\n' >>src/xen/.config
# Xen's build wants the system python (a pyenv shim may shadow it).
export PATH=/usr/bin:$PATH
make -C src/xen olddefconfig >build.log 2>&1
grep -qx 'CONFIG_MEM_PAGING=y' src/xen/.config || die "olddefconfig dropped CONFIG_MEM_PAGING"
log "building Xen with mem_paging (about two minutes)"
make -C src/xen -j"$(nproc)" XEN_VENDORVERSION=-mempaging >>build.log 2>&1 || { tail -30 build.log; die "Xen build failed"; }
zcat src/xen/xen.gz >xen.elf 2>/dev/null || cp src/xen/xen xen.elf
cp src/xen/.config xen.config
rm -rf src && cd / && rm -rf "$MEMPAGING_DIR" && mv "$MEMPAGING_DIR.tmp" "$MEMPAGING_DIR" && touch "$MEMPAGING_DIR/done"
log "mempaging hypervisor built: $MEMPAGING_DIR"
