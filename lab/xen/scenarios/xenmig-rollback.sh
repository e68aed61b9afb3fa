#!/bin/sh
# A failure before the switchover: the receiver is killed (SIGKILL) while
# pre-copy is sending memory (the rate is limited so it is still sending),
# 2 s after it said its shell was prepared.
# xenmig must exit 3 and the guest must go on, on the source, untouched.
# The killed receiver's shell (hb--incoming, paused) cannot be destroyed by
# anyone at the time; the next `xenmig receive` on the host must destroy it.
# Retried by lab_attempts when the lab's emulation kills the source.
. /lab/lib.sh
name=hb mode=${XENMIG_MODE:-precopy}
rollback_once() {
	move_begin $name "$mode-rollback" || return 1
	# Not under timeout(1): the kill below must reach xenmig itself.
	xenmig receive --listen 127.0.0.1:8002 --insecure-plaintext --json >/lab/out/rollback-receiver.json 2>/lab/out/rollback-receiver.log &
	rpid=$!
	sleep 2
	t0=$(now_ms)
	timeout 300 xenmig migrate $name 127.0.0.1:8002 --mode "$mode" --bandwidth 8MiB/s --insecure-plaintext --json \
		>/lab/out/rollback-migrate.json 2>/lab/out/rollback-migrate.log &
	mpid=$!
	# Killed once its shell is built and pre-copy has begun: a receiver killed
	# while libxl still builds the shell leaves one it has not marked yet.
	end=$(($(date +%s) + 120))
	until grep -q 'domain shell prepared' /lab/out/rollback-receiver.log || [ "$(date +%s)" -ge $end ]; do sleep 0.2; done
	sleep "${LAB_KILL_AFTER:-2}"
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
	left=$(other_domains $name)
	xl list
	# The admin's next receiver on this host: it destroys the dead receiver's
	# shell before it listens.
	xenmig receive --listen 127.0.0.1:0 --insecure-plaintext --json >/lab/out/cleanup-receiver.json 2>/lab/out/cleanup-receiver.log &
	cpid=$!
	end=$(($(date +%s) + 60))
	until grep -q '"listening"' /lab/out/cleanup-receiver.json 2>/dev/null || [ "$(date +%s)" -ge $end ]; do sleep 0.5; done
	kill $cpid
	wait $cpid
	reaped=$(grep -c 'destroyed a domain shell left by a receiver that is gone' /lab/out/cleanup-receiver.log)
	grep 'destroyed a domain shell' /lab/out/cleanup-receiver.log
	after=$(other_domains $name)
	tf=$(($(triple_faults) - tf0))
	xl list
	err=$(grep -m1 -E 'error|fatal|panic' /lab/out/rollback-migrate.log)
	[ "$tf" = 0 ] || err="a guest triple-faulted during the scenario ($tf in xl dmesg): $err"
	ok=false
	[ $running = true ] && [ $rc = 3 ] && [ $alive = true ] && [ "$(bad_pages)" = 0 ] && [ "$id1" = "$id0" ] &&
		[ "$tf" = 0 ] && [ -z "$after" ] && ok=true
	result mode="$mode-rollback" ok=$ok exit_code=$rc want_exit_code=3 total_ms=$((t1 - t0)) killed_at_ms=$((killed - t0)) migrating_when_killed=$running \
		heartbeat_gap_ms="$(hb_gap "$t0" "$t1")" bad_pages="$(bad_pages)" guest_alive_after=$alive \
		domid_before="$id0" domid_after="${id1:-none}" state_after="$state" triple_faults="$tf" \
		leftover_domains="$left" shells_reaped="$reaped" leftover_after_cleanup="$after" \
		vbd_state="$(vbd_state $name)" xenmig:="$(cat /lab/out/rollback-migrate.json)" error="$err"
	[ $ok = true ]
}
lab_attempts rollback_once
