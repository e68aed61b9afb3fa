#!/bin/sh
# The lab's first step: is dom0 itself sound under load? With the guest
# running, the C and the Go self-tests (lab/xen/dom0/selftest.c,
# lab/xen/selftest) run side by side for LAB_SELFTEST_SECONDS (default 60):
# buffer copies checked by hash, a checked malloc churn and Go heap, TCP
# streams through loopback, the toolstack run again and again, patterns
# written into a paused scratch domain through foreign mappings and read
# back. Any error, or a bad page in the guest's own checker, means the lab is
# not to be trusted.
. /lab/lib.sh
secs=${LAB_SELFTEST_SECONDS:-60}
guest_ensure hb || { result mode=selftest ok=false error="guest did not start: $GUEST_WHY"; exit 1; }
# A domain that never runs: nothing but the self-test writes its memory.
scratch_create selftest-scratch 128 || { result mode=selftest ok=false error="scratch domain not created"; exit 1; }
t=$(now_ms)
selftest "$secs" 32 >/lab/out/selftest-c.json 2>/lab/out/selftest-c.err &
cpid=$!
selftest-go -duration "${secs}s" -mb 32 -domain selftest-scratch >/lab/out/selftest-go.json 2>/lab/out/selftest-go.err
grc=$?
wait $cpid
crc=$?
say "C: rc=$crc $(cat /lab/out/selftest-c.json) $(head -c 400 /lab/out/selftest-c.err)"
say "Go: rc=$grc $(cat /lab/out/selftest-go.json) $(head -c 400 /lab/out/selftest-go.err)"
xl destroy selftest-scratch
alive=false
guest_alive_after "$t" 5 && alive=true
# A guest the lab's emulation killed meanwhile (a triple fault; README, "The
# triple fault") says nothing about dom0: the self-test is dom0's.
killed=false
[ $alive = true ] || [ "$(triple_faults)" = 0 ] || xl domid hb >/dev/null 2>&1 || killed=true
bad=$(bad_pages)
ok=false
[ "$crc" = 0 ] && [ "$grc" = 0 ] && [ "$bad" = 0 ] && { [ $alive = true ] || [ $killed = true ]; } && ok=true
result mode=selftest ok=$ok seconds="$secs" c_rc="$crc" go_rc="$grc" bad_pages="$bad" guest_alive_after=$alive guest_triple_faulted=$killed \
	c="$(cat /lab/out/selftest-c.json)" go="$(cat /lab/out/selftest-go.json)" \
	errors="$(cat /lab/out/selftest-c.err /lab/out/selftest-go.err | head -c 300)"
[ $ok = true ]
