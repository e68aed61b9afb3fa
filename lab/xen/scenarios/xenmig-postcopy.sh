#!/bin/sh
# xenmig post-copy of the running guest to the same host (mem_paging
# hypervisor): the guest resumes on the destination before its memory has
# arrived, with its resume set (the pages its suspend wrote, among them its
# vcpu_info and event-channel control blocks) installed in the downtime.
# Checks: lib.sh's xenmig_move.
. /lab/lib.sh
xenmig_move postcopy
