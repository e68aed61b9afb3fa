#!/bin/sh
# A failure before the switchover: the receiver is killed (SIGKILL) while
# pre-copy is sending memory (the rate is limited so it is still sending).
# xenmig must exit 3 and the guest must go on, on the source, untouched.
. /lab/lib.sh
name=hb mode=${XENMIG_MODE:-precopy}
guest_ensure $name || { result mode=$mode ok=false error="guest did not start"; exit 1; }
domwatch_start
wait_hb "$(now_ms)" 3 30
id0=$(xl domid $name)
# Not under timeout(1): the kill below must reach xenmig itself.
xenmig receive --listen 127.0.0.1:8002 --insecure-plaintext --json >/lab/out/rollback-receiver.json 2>/lab/out/rollback-receiver.log &
rpid=$!
sleep 2
t0=$(now_ms)
timeout 300 xenmig migrate $name 127.0.0.1:8002 --mode "$mode" --bandwidth 8MiB/s --insecure-plaintext --json \
	>/lab/out/rollback-migrate.json 2>/lab/out/rollback-migrate.log &
mpid=$!
sleep "${LAB_KILL_AFTER:-6}"
# The kill must land while both sides run (a receiver that already failed
# on its own makes this another scenario), or it proves nothing.
running=false
kill -0 $mpid 2>/dev/null && kill -0 $rpid 2>/dev/null && running=true
kill -9 $rpid
killed=$(now_ms)
wait $mpid
rc=$?
t1=$(now_ms)
say "migrate rc=$rc after the receiver was killed at +$((killed - t0)) ms: $(cat /lab/out/rollback-migrate.json)"
tail -n 5 /lab/out/rollback-migrate.log
alive=false
guest_alive_after "$t1" 12 && alive=true
id1=$(xl domid $name 2>/dev/null)
state=$(xl list $name 2>/dev/null | awk 'NR == 2 {print $5}')
others=$(xl list | awk 'NR > 1 && $1 != "Domain-0" && $1 != "'$name'" {printf "%s ", $1}')
xl list
ok=false
[ $running = true ] && [ $rc = 3 ] && [ $alive = true ] && [ "$(bad_pages)" = 0 ] && [ "$id1" = "$id0" ] && ok=true
result mode="$mode-rollback" ok=$ok exit_code=$rc want_exit_code=3 total_ms=$((t1 - t0)) killed_at_ms=$((killed - t0)) migrating_when_killed=$running \
	heartbeat_gap_ms="$(hb_gap "$t0" "$t1")" bad_pages="$(bad_pages)" guest_alive_after=$alive \
	domid_before="$id0" domid_after="${id1:-none}" state_after="$state" leftover_domains="$others" \
	vbd_state="$(vbd_state $name)" xenmig:="$(cat /lab/out/rollback-migrate.json)" \
	error="$(grep -m1 -E 'error|fatal|panic' /lab/out/rollback-migrate.log)"
[ $ok = true ]
