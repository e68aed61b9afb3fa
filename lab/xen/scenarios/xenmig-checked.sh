#!/bin/sh
# The move again, by a xenmig built to catch what the lab's environment was
# once blamed for: the race detector and cgocheck2 (lab/xen/test builds it
# as /lab/bin/xenmig-checked), with glibc's heap checks (MALLOC_CHECK_=3).
# Pre-copy on Debian's hypervisor, post-copy on the mem_paging one. A data
# race stops xenmig at once (GORACE halt_on_error, exit 66), as does a Go
# pointer wrongly passed to C or a corrupted heap, and the move fails.
# Checks: lib.sh's xenmig_move, and no race report in either log.
. /lab/lib.sh
mkdir -p /run/checked && ln -sf /lab/bin/xenmig-checked /run/checked/xenmig
export PATH="/run/checked:$PATH" MALLOC_CHECK_=3 GORACE="halt_on_error=1 exitcode=66"
mode=precopy
[ "$LAB_HV" = mempaging ] && mode=postcopy
MOVE_CHECK='! grep -q "DATA RACE" /lab/out/migrate.log /lab/out/receiver.log'
xenmig_move $mode
