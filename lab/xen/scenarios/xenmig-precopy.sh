#!/bin/sh
# xenmig pre-copy of the running guest to the same host, over loopback
# (plain TCP: loopback only). The guest must come out with zero bad pages,
# its heartbeat going on for 10 s and more on the destination, and its disk
# frontend connected and doing I/O; the domain moved must be the one that
# ran before, and no guest may have triple-faulted meanwhile.
. /lab/lib.sh
name=hb mode=${XENMIG_MODE:-precopy}
guest_ready $name 5 || { result mode=$mode ok=false error="guest not ready"; exit 1; }
domwatch_start
id0=$(xl domid $name)
tf0=$(triple_faults)
vbd0=$(hb_field vbd)
timeout 300 xenmig receive --listen 127.0.0.1:8002 --insecure-plaintext --json >/lab/out/receiver.json 2>/lab/out/receiver.log &
rpid=$!
sleep 2
t0=$(now_ms)
timeout 300 xenmig migrate $name 127.0.0.1:8002 --mode "$mode" --insecure-plaintext --json >/lab/out/migrate.json 2>/lab/out/migrate.log
rc=$?
t1=$(now_ms)
vbdm=$(hb_field vbd)
wait $rpid
rrc=$?
say "migrate rc=$rc receiver rc=$rrc: $(cat /lab/out/migrate.json)"
tail -n 5 /lab/out/migrate.log /lab/out/receiver.log
alive=false
guest_alive_after "$t1" 12 && alive=true
id1=$(xl domid $name 2>/dev/null)
state=$(xl list $name 2>/dev/null | awk 'NR == 2 {print $5}')
received=$(grep -o '"domid": *[0-9]*' /lab/out/receiver.json | tr -dc 0-9)
tf=$(($(triple_faults) - tf0))
vbd1=$(hb_field vbd)
vbd=$(vbd_state $name)
xl list
json=$(cat /lab/out/migrate.json)
dt=$(printf '%s' "$json" | grep -o '"downtime_ms": *[0-9.]*' | tr -d ' ' | cut -d: -f2)
err=$(grep -i -m1 -E 'error|fatal|panic' /lab/out/migrate.log /lab/out/receiver.log)
[ "$tf" = 0 ] || err="a guest triple-faulted during the scenario ($tf in xl dmesg): $err"
ok=false
[ $rc = 0 ] && [ $alive = true ] && [ "$(bad_pages)" = 0 ] && [ "$id1" != "$id0" ] && [ "$id1" = "$received" ] &&
	[ "$tf" = 0 ] && [ "$vbd" = 4 ] && [ $((vbd1 - vbdm)) -ge 10 ] && ok=true
result mode="$mode" ok=$ok exit_code=$rc receiver_exit_code=$rrc total_ms=$((t1 - t0)) downtime_ms="${dt:-null}" \
	dom0_downtime_ms="$(dom_downtime "$t0" "$t1")" heartbeat_gap_ms="$(hb_gap "$t0" "$t1")" \
	bad_pages="$(bad_pages)" guest_alive_after=$alive domid_before="$id0" domid_received="${received:-none}" \
	domid_after="${id1:-none}" state_after="$state" triple_faults="$tf" \
	vbd_state="$vbd" vbd_io_at_move="$vbdm" vbd_io_after="$vbd1" xenmig:="$json" error="$err"
[ $ok = true ]
