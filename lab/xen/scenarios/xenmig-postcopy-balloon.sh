#!/bin/sh
# xenmig post-copy with --balloon: the guest's self-ballooning agent
# (xenmig-balloond, started by the guest's init when lab/xen/run added it)
# squeezes the guest first, so the memory it gives back is neither paged
# out nor sent. Checks: lib.sh's xenmig_move, with 128 or more gfns given
# back beyond the 240 the guest's balloon holds from boot (of 33024): the
# squeeze takes what the guest's free memory allows, 498 to 1300 gfns in
# the lab's runs.
. /lab/lib.sh
XENMIG_FLAGS=--balloon MOVE_CHECK='[ "$(jfield ballooned_pages_skipped $j)" -ge 368 ]' xenmig_move postcopy
