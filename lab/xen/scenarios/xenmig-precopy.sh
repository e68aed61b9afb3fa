#!/bin/sh
# xenmig pre-copy of the running guest to the same host, over loopback
# (plain TCP: loopback only). Checks: lib.sh's xenmig_move.
. /lab/lib.sh
xenmig_move "${XENMIG_MODE:-precopy}"
