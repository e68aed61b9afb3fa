#!/bin/sh
# Post-copy asked of a hypervisor without mem_paging (Debian's): both sides
# must stop with exit 6 and doctor's message (CONFIG_MEM_PAGING) before the
# guest is suspended; the guest goes on, on the source, same domid, and no
# domain is left behind.
. /lab/lib.sh
name=hb
refused_once() {
	move_begin $name postcopy || return 1
	timeout 300 xenmig receive --listen 127.0.0.1:8002 --insecure-plaintext --json >/lab/out/refused-receiver.json 2>/lab/out/refused-receiver.log &
	rpid=$!
	sleep 2
	t0=$(now_ms)
	timeout 300 xenmig migrate $name 127.0.0.1:8002 --mode postcopy --insecure-plaintext --json \
		>/lab/out/refused-migrate.json 2>/lab/out/refused-migrate.log
	rc=$?
	t1=$(now_ms)
	wait $rpid
	rrc=$?
	say "migrate rc=$rc receiver rc=$rrc in $((t1 - t0)) ms"
	tail -n 3 /lab/out/refused-migrate.log /lab/out/refused-receiver.log
	alive=false
	guest_alive_after "$t1" 12 && alive=true
	id1=$(xl domid $name 2>/dev/null)
	left=$(other_domains $name)
	tf=$(($(triple_faults) - tf0))
	xl list
	doctor=false
	grep -q CONFIG_MEM_PAGING /lab/out/refused-migrate.log && doctor=true
	suspended=false
	grep -q 'domain suspended' /lab/out/refused-migrate.log && suspended=true
	why=""
	[ "$rc" = 6 ] || why="$why migrate exit $rc, want 6;"
	[ "$rrc" = 6 ] || why="$why receiver exit $rrc, want 6;"
	[ $doctor = true ] || why="$why the sender's error does not name CONFIG_MEM_PAGING;"
	[ $suspended = false ] || why="$why the guest was suspended;"
	[ $alive = true ] || why="$why heartbeat stopped;"
	[ "$(bad_pages)" = 0 ] || why="$why $(bad_pages) bad pages;"
	[ "$id1" = "$id0" ] || why="$why dom ${id1:-none}, want $id0;"
	[ "$tf" = 0 ] || why="$why $tf triple faults;"
	[ -z "$left" ] || why="$why left: $left;"
	ok=false
	[ -n "$why" ] || ok=true
	[ $ok = true ] || say "failed:$why"
	result mode=postcopy ok=$ok exit_code=$rc receiver_exit_code=$rrc want_exit_code=6 total_ms=$((t1 - t0)) \
		doctor_message=$doctor suspended=$suspended heartbeat_gap_ms="$(hb_gap "$t0" "$t1")" bad_pages="$(bad_pages)" \
		guest_alive_after=$alive domid_before="$id0" domid_after="${id1:-none}" triple_faults="$tf" \
		leftover_domains="$left" error="${why:+failed:$why }$(grep -m1 -i error /lab/out/refused-migrate.log)"
	[ $ok = true ]
}
lab_attempts refused_once
