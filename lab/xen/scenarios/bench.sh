#!/bin/sh
# Per-call costs of the real hypervisor (xenctrl's live benchmarks, run in
# dom0 from the test binary): foreign-map batches and a log-dirty peek on the
# running guest; populate on a paused scratch domain; on the mem_paging
# hypervisor nominate+evict, load and one ring round trip. Calib* benchmarks
# (a getpid, a 4 KiB copy) give TCG's slow-down against the host, where the
# same binary runs them too (lab/xen/test). Informative: ok means they ran.
. /lab/lib.sh
guest_ensure hb || { result mode=bench ok=false error="guest did not start: $GUEST_WHY"; exit 1; }
scratch_create bench-scratch 128 || { result mode=bench ok=false error="scratch domain not created"; exit 1; }
export XENMIG_TEST_DOMAIN=hb XENMIG_BENCH_SCRATCH=bench-scratch
[ "$LAB_HV" = mempaging ] && export XENMIG_TEST_PAGING=1
t=$(now_ms)
xenctrl.test -test.run '^$' -test.bench 'LiveReadPages|LiveDirtyLog|Calib' \
	-test.benchtime "${LAB_BENCHTIME:-1s}" >/lab/out/bench.txt 2>&1
rc=$?
# The first populate after boot took seconds in the lab (one iteration in 1 s
# of benchtime said nothing of the steady cost): a fixed count of 20.
xenctrl.test -test.run '^$' -test.bench 'LivePopulate' -test.benchtime 20x >>/lab/out/bench.txt 2>&1 || rc=$?
# Paging pages b.N gfns at once: a fixed count.
xenctrl.test -test.run '^$' -test.bench 'LivePaging' -test.benchtime 500x >>/lab/out/bench.txt 2>&1 || rc=$?
cat /lab/out/bench.txt
xl destroy bench-scratch
# "BenchmarkLiveReadPages/64-2  100  123456 ns/op ..." -> "LiveReadPages/64": 123.456 (µs)
us=$(awk '/^Benchmark/ && $4 == "ns/op" {
	n = $1; sub(/^Benchmark/, "", n); sub(/-[0-9]+$/, "", n)
	printf "%s\"%s\":%.3f", sep, n, $3 / 1000; sep = ","
}' /lab/out/bench.txt)
ok=false
[ $rc = 0 ] && ok=true
result mode=bench ok=$ok total_ms=$(($(now_ms) - t)) us_per_op:="{$us}" \
	error="$(grep -m1 -E 'FAIL|panic|--- SKIP' /lab/out/bench.txt)"
[ $ok = true ]
