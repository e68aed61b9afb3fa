#!/bin/sh
# xenmig post-copy through cutproxy, which closes every connection between
# sender and receiver as soon as the switchover is logged and refuses new
# ones for 2 s: the receiver pauses the guest, the sender reconnects, the
# post-copy finishes. Checks: lib.sh's xenmig_move, with a reconnection.
. /lab/lib.sh
cutproxy -listen 127.0.0.1:8003 -to 127.0.0.1:8002 -down 2s >/lab/out/cutproxy.log 2>&1 &
pid=$!
MOVE_CHECK='[ "$(jfield reconnects $j)" -ge 1 ] 2>/dev/null' xenmig_move postcopy 127.0.0.1:8003 "kill -USR1 $pid"
rc=$?
kill $pid
cat /lab/out/cutproxy.log
exit $rc
