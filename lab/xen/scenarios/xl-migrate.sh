#!/bin/sh
# The baseline: Xen's own `xl migrate` of the running guest to the same host
# (xl runs the "host" argument as its transport with -s ""), as xl's tests do.
# The destination domain, built by libxc's restore, is recorded: the lab
# cannot log-dirty it (see README.md, "The triple fault"), so a later
# scenario that moves the guest starts it afresh (guest_ready).
# Retried by lab_attempts when the lab's emulation kills the source.
. /lab/lib.sh
name=hb
xl_once() {
	move_begin $name xl || return 1
	vbd0=$(hb_field vbd)
	t0=$(now_ms)
	xl -v migrate -s "" $name "xl migrate-receive" >/lab/out/xl-migrate.out 2>&1
	rc=$?
	t1=$(now_ms)
	id1=$(xl domid $name 2>/dev/null)
	[ -n "$id1" ] && [ "$id1" != "$id0" ] && mark_restored "$id1"
	vbdm=$(hb_field vbd)
	tail -n 5 /lab/out/xl-migrate.out
	alive=false
	guest_alive_after "$t1" 12 && alive=true
	gap=$(hb_gap "$t0" "$t1")
	down=$(dom_downtime "$t0" "$t1")
	vbd1=$(hb_field vbd)
	vbd=$(vbd_state $name)
	tf=$(($(triple_faults) - tf0))
	[ "$tf" = 0 ] || ran_then_died "$id1" "$t1"
	xl list
	ok=false
	[ $rc = 0 ] && [ $alive = true ] && [ "$(bad_pages)" = 0 ] && [ "$id1" != "$id0" ] && [ "$(xl domid $name 2>/dev/null)" = "$id1" ] &&
		[ "$tf" = 0 ] && [ "$vbd" = 4 ] && [ $((vbd1 - vbdm)) -ge 10 ] && ok=true
	result mode=xl ok=$ok exit_code=$rc total_ms=$((t1 - t0)) downtime_ms="$down" heartbeat_gap_ms="$gap" \
		bad_pages="$(bad_pages)" guest_alive_after=$alive domid_before="$id0" domid_after="${id1:-none}" triple_faults="$tf" \
		vbd_state="$vbd" vbd_io_before="$vbd0" vbd_io_at_move="$vbdm" vbd_io_after="$vbd1"
	[ $ok = true ]
}
lab_attempts xl_once
