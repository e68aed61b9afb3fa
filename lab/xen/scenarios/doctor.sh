#!/bin/sh
# xenmig doctor against the running guest: on Debian's hypervisor it must say
# paging is unavailable (ENOSYS) and exit 6; on the mem_paging build it must
# find paging and a pageable guest and exit 0.
. /lab/lib.sh
guest_ensure hb || { result mode=doctor ok=false error="guest did not start: $GUEST_WHY"; exit 1; }
t=$(now_ms)
xenmig doctor hb --json >/lab/out/doctor.out 2>/lab/out/doctor.err
rc=$?
# The report is the first object (an exit-6 run appends an error object).
awk '{print} /^}/ {exit}' /lab/out/doctor.out >/lab/out/doctor.json
ms=$(($(now_ms) - t))
xenmig doctor hb 2>&1 | sed 's/^/  /'
paging=$(grep -o '"paging": *[a-z]*' /lab/out/doctor.json | tr -d ' ' | cut -d: -f2)
pageable=$(grep -o '"pageable": *[a-z]*' /lab/out/doctor.json | tr -d ' ' | cut -d: -f2)
case $LAB_HV in
debian) want_rc=6 want_paging=false ;;
*) want_rc=0 want_paging=true ;;
esac
ok=false
[ "$rc" = "$want_rc" ] && [ "$paging" = "$want_paging" ] && [ "$pageable" = true ] && ok=true
result mode=doctor ok=$ok exit_code="$rc" want_exit_code=$want_rc total_ms=$ms paging="${paging:-null}" \
	guest_pageable="${pageable:-null}" report:="$(tr -d '\n' </lab/out/doctor.json)"
[ $ok = true ]
