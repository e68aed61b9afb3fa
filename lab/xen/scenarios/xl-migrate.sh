#!/bin/sh
# The baseline: Xen's own `xl migrate` of the running guest to the same host
# (xl runs the "host" argument as its transport with -s ""), as xl's tests do.
. /lab/lib.sh
name=hb
guest_ensure $name || { result mode=xl ok=false error="guest did not start"; exit 1; }
domwatch_start
wait_hb "$(now_ms)" 3 30
vbd0=$(hb_field vbd)
t0=$(now_ms)
xl -v migrate -s "" $name "xl migrate-receive" >/lab/out/xl-migrate.out 2>&1
rc=$?
t1=$(now_ms)
vbdm=$(hb_field vbd)
tail -n 5 /lab/out/xl-migrate.out
alive=false
guest_alive_after "$t1" 12 && alive=true
gap=$(hb_gap "$t0" "$t1")
down=$(dom_downtime "$t0" "$t1")
vbd1=$(hb_field vbd)
vbd=$(vbd_state $name)
xl list
ok=false
[ $rc = 0 ] && [ $alive = true ] && [ "$(bad_pages)" = 0 ] && [ "$vbd" = 4 ] && [ $((vbd1 - vbdm)) -ge 10 ] && ok=true
result mode=xl ok=$ok exit_code=$rc total_ms=$((t1 - t0)) downtime_ms="$down" heartbeat_gap_ms="$gap" \
	bad_pages="$(bad_pages)" guest_alive_after=$alive vbd_state="$vbd" vbd_io_before="$vbd0" vbd_io_at_move="$vbdm" vbd_io_after="$vbd1"
[ $ok = true ]
