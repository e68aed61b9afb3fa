# Shared by lab/xen/build, run and test. Sourced, not executed.
# Everything heavy lives in $XENLAB_CACHE, keyed by a hash of its inputs.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)
XENLAB_CACHE=${XENLAB_CACHE:-/var/cache/xenmig-lab}
# The Xen 4.17.7 hypervisor source (a tarball or a checkout) for the
# mem_paging build; see README.md for where to get it.
# Default: the project's shared folder beside the clone (../shared/xen/), or
# beside the worktrees' parent for a git worktree under /work/wt/.
if [ -z "${XEN_SRC:-}" ]; then
	for d in "$REPO_DIR/../shared/xen" "$REPO_DIR/../../shared/xen"; do
		if [ -f "$d/xen-4.17.7-hypervisor-src.tar.xz" ]; then
			XEN_SRC=$(cd "$d" && pwd)/xen-4.17.7-hypervisor-src.tar.xz
			break
		fi
	done
	XEN_SRC=${XEN_SRC:-$REPO_DIR/../shared/xen/xen-4.17.7-hypervisor-src.tar.xz}
fi
SUITE=${XENLAB_SUITE:-bookworm}
export PATH="/usr/local/go/bin:$PATH"

log() { printf '[xenlab %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# key NAME FILES...: a short hash of the named files' contents and the name.
key() {
	local name=$1; shift
	{ echo "$name"; cat "$@"; } | sha256sum | cut -c1-16
}

# need_pkgs PKG...: install missing Debian packages (CI is a fresh machine).
need_pkgs() {
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	[ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

# Each cached part is keyed by the hash of the script that builds it (and
# whatever else it reads), so changing a part's script rebuilds only it.
ROOTFS_KEY=$(key rootfs-$SUITE "$LAB_DIR/parts/rootfs.sh")
ROOTFS_DIR=$XENLAB_CACHE/rootfs-$ROOTFS_KEY
GUEST_KEY=$(key guest "$LAB_DIR/parts/guest.sh" "$LAB_DIR"/guest/* <(echo "$ROOTFS_KEY"))
GUEST_DIR=$XENLAB_CACHE/guest-$GUEST_KEY
MEMPAGING_KEY=$(key mempaging "$LAB_DIR/parts/xen-mempaging.sh" <(echo "$ROOTFS_KEY"; sha256sum "$XEN_SRC" 2>/dev/null || echo "$XEN_SRC"))
MEMPAGING_DIR=$XENLAB_CACHE/xen-mempaging-$MEMPAGING_KEY
QEMU_BPO_KEY=$(key qemu-bpo "$LAB_DIR/parts/qemu-backports.sh")
QEMU_BPO_DIR=$XENLAB_CACHE/qemu-backports-$QEMU_BPO_KEY
