#!/bin/sh
# xenmig post-copy with --balloon: the guest's self-ballooning agent
# (xenmig-balloond, started by the guest's init when lab/xen/run added it)
# squeezes the guest first, so the memory it gives back is neither paged
# out nor sent. The guest's memory checker stamps 16 MiB here (not 3/4 of
# what is available), so the guest has free memory to give back: about
# 35 MiB available, of which the squeeze keeps 20 MiB (guest/balloond.toml).
# Checks: lib.sh's xenmig_move (the disk frontend reconnects and does I/O:
# it needs memory on resume), with 2048 or more gfns (8 MiB) given back
# beyond the 240 the guest's balloon holds from boot (of 33024).
. /lab/lib.sh
LAB_MEMCHECK_MB=16 XENMIG_FLAGS=--balloon MOVE_CHECK='[ "$(jfield ballooned_pages_skipped $j)" -ge 2288 ] 2>/dev/null' xenmig_move postcopy
