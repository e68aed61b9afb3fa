#!/usr/bin/env bash
# Optional: QEMU from Debian's bookworm-backports (10.0), unpacked under the
# cache rather than installed, so the system's QEMU 7.2 stays as it is.
# `lab/xen/run --qemu backports` uses it. Output: $QEMU_BPO_DIR/root/usr/bin/.
# Adds the bookworm-backports suite to apt's sources if it is missing
# (backports are never chosen by default: priority 100).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

[ -f "$QEMU_BPO_DIR/done" ] && { log "backports QEMU cached: $QEMU_BPO_DIR"; exit 0; }
if ! apt-cache policy | grep -q "$SUITE-backports"; then
	log "adding $SUITE-backports to apt's sources"
	cat >/etc/apt/sources.list.d/$SUITE-backports.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -q >/dev/null
fi
rm -rf "$QEMU_BPO_DIR.tmp" && mkdir -p "$QEMU_BPO_DIR.tmp/debs" && cd "$QEMU_BPO_DIR.tmp"
(cd debs && chown _apt . 2>/dev/null; apt-get download -q qemu-system-x86/$SUITE-backports \
	qemu-system-common/$SUITE-backports qemu-system-data/$SUITE-backports seabios/$SUITE-backports >/dev/null)
for d in debs/*.deb; do dpkg-deb -x "$d" root; done
missing=$(ldd root/usr/bin/qemu-system-x86_64 | awk '/not found/ {print $1}')
[ -z "$missing" ] || die "backports QEMU needs libraries not installed here: $missing"
root/usr/bin/qemu-system-x86_64 --version | head -1 >version.txt
rm -rf debs && cd / && rm -rf "$QEMU_BPO_DIR" && mv "$QEMU_BPO_DIR.tmp" "$QEMU_BPO_DIR" && touch "$QEMU_BPO_DIR/done"
log "backports QEMU: $(cat "$QEMU_BPO_DIR/version.txt")"
