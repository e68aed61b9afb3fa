#!/bin/sh
# xenmig hybrid (one pre-copy round, then post-copy) of the running guest to
# the same host (mem_paging hypervisor). Checks: lib.sh's xenmig_move.
. /lab/lib.sh
xenmig_move hybrid
