# Helpers for scenario scripts, in dom0: `. /lab/lib.sh`.
# Times are dom0 wall-clock milliseconds (now_ms); heartbeats are read from
# /lab/out/hb.txt, which hbwatch fills from xenconsoled's guest logs.
export PATH=/lab/bin:/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
HB=/lab/out/hb.txt
RESULTS=/lab/out/results.jsonl

now_ms() { date +%s%3N; }
say() { echo "[$(date -u +%H:%M:%S.%3N)] $*"; }

# guest_config NAME [MB] [EXTRA_CFG]: the lab guest's xl file at
# /etc/xen/NAME.cfg (xenmig looks for it there): PVH, the Debian kernel, our
# memory checker stamping 3/4 of what the guest's kernel leaves available
# (or LAB_MEMCHECK_MB MiB), a 16 MiB vbd backed by a file (through a loop
# device). A triple fault is a reboot to Xen: on_reboot = "destroy" keeps xl
# from starting the guest again under a new domid in the middle of a
# scenario, where it would pass for someone else (README, "The triple fault").
guest_config() {
	local name=$1 mb=${2:-128} extra=${3:-} loop
	mkdir -p /etc/xen /lab/disks
	if [ ! -f "/lab/disks/$name.img" ]; then
		dd if=/dev/zero of="/lab/disks/$name.img" bs=1M count=16 2>/dev/null
		losetup -f "/lab/disks/$name.img"
	fi
	loop=$(losetup -j "/lab/disks/$name.img" | cut -d: -f1)
	cat >"/etc/xen/$name.cfg" <<CFG
name = "$name"
type = "pvh"
memory = $mb
maxmem = $mb
vcpus = 1
kernel = "/lab/guest/vmlinuz"
ramdisk = "/lab/guest/initrd"
extra = "console=hvc0 quiet memcheck.seed=${LAB_SEED:-24301}${LAB_MEMCHECK_MB:+ memcheck.mb=$LAB_MEMCHECK_MB}"
disk = [ "format=raw,vdev=xvda,access=rw,script=/lab/bin/vbd-hotplug,target=$loop" ]
on_crash = "preserve"
on_reboot = "destroy"
$extra
CFG
}

# hbwatch_start: follow the guests' consoles into $HB (once per boot).
# Background processes must not hold the scenario's output open: run's
# wrapper tees it and waits for its end.
hbwatch_start() {
	[ -f /run/hbwatch.pid ] && return 0
	: >"$HB"
	hbwatch /var/log/xen/console "$HB" </dev/null >/dev/null 2>&1 &
	echo $! >/run/hbwatch.pid
}

# guest_start NAME [MB] [EXTRA_CFG]: create the guest and wait for its first
# heartbeat (the lab's TCG guest boots in about 20 s).
# A guest the lab's emulation kills while it boots (a triple fault: gone,
# as on_reboot says; nothing else touches a booting guest) is created
# again until boot_deadline passes: LAB_BOOT_SECONDS (600) from the first
# create, or from guest_ready's call when guest_ready started this one (one
# bound for both, not one each). A count was not enough: the deaths come in
# runs on a loaded machine, and CI runs lost three, then five boots in a
# row. Fails when the time is spent, or when a guest that lives sends no
# heartbeat in 180 s.
guest_start() {
	local name=$1 t n=1 boot_end=${boot_end:-$(boot_deadline)}
	guest_config "$@"
	hbwatch_start
	while :; do
		t=$(now_ms)
		xl create "/etc/xen/$name.cfg" || return 1
		wait_hb "$t" 1 180 "$name" && break
		if xl domid "$name" >/dev/null 2>&1; then
			GUEST_WHY="no heartbeat within 180 s of xl create"
			say "guest $name: $GUEST_WHY"
			xl list
			return 1
		fi
		boot_spent "$name" "died booting $n times" && return 1
		say "guest $name died booting ($(triple_faults) triple faults in xl dmesg): creating it again"
		n=$((n + 1))
	done
	say "guest $name up: first heartbeat $(($(hb_first_after "$t") - t)) ms after xl create"
}

# boot_deadline: the time (s since the epoch) until which a guest that dies
# while it boots is started again: LAB_BOOT_SECONDS (600) from now.
boot_deadline() { echo $(($(date +%s) + ${LAB_BOOT_SECONDS:-600})); }

# boot_spent NAME WHAT: true, with GUEST_WHY set and said, once boot_end
# (the caller's boot_deadline) has passed; WHAT is what the guest did.
boot_spent() {
	[ "$(date +%s)" -ge "$boot_end" ] || return 1
	GUEST_WHY="$2 in ${LAB_BOOT_SECONDS:-600} s (the lab's triple fault): raise LAB_BOOT_SECONDS"
	say "guest $1 $GUEST_WHY; $(triple_faults) triple faults in xl dmesg"
}

# hb_lines_after T: the heartbeat lines seen after T (ms).
hb_lines_after() { awk -v t="$1" '$1 > t && $3 == "HB"' "$HB"; }
hb_first_after() { hb_lines_after "$1" | awk 'NR == 1 {print $1}'; }

# wait_hb T N TIMEOUT_S [NAME]: wait until N heartbeats arrived after T;
# fail at the timeout, or as soon as domain NAME is gone.
wait_hb() {
	local t=$1 n=$2 end=$(($(date +%s) + $3))
	while [ "$(hb_lines_after "$t" | wc -l)" -lt "$n" ]; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		[ -z "$4" ] || xl domid "$4" >/dev/null 2>&1 || return 1
		sleep 0.5
	done
}

# hb_gap T1 T2: the longest silence (ms) between consecutive heartbeats
# from the last one before T1 to the first one after T2.
hb_gap() {
	awk -v a="$1" -v b="$2" '$3 == "HB" {
		if ($1 <= a) { prev = $1; next }
		if (prev != "" && $1 - prev > gap) gap = $1 - prev
		prev = $1
		if ($1 > b) exit
	} END { print gap + 0 }' "$HB"
}

# hb_field NAME: the value of NAME= in the last heartbeat (e.g. badpages, vbd).
hb_field() { awk -v k="$1=" '$3 == "HB" { for (i = 4; i <= NF; i++) if (index($i, k) == 1) v = substr($i, length(k) + 1) } END { print v }' "$HB"; }

# bad_pages: the checker's count of wrong pages since boot (its last heartbeat).
bad_pages() { local v; v=$(hb_field badpages); echo "${v:-0}"; }

# guest_alive_after T SECONDS: the heartbeat goes on for SECONDS after T: a
# heartbeat arrives SECONDS or more after T (waiting up to SECONDS+30 s from
# now: on a loaded machine the guest's second can stretch), with at least
# SECONDS/3 heartbeats since T.
guest_alive_after() {
	local t=$1 s=$2 end
	end=$(($(now_ms) + (s + 30) * 1000))
	while :; do
		if [ -n "$(awk -v t="$((t + s * 1000))" '$1 >= t && $3 == "HB" {print; exit}' "$HB")" ]; then
			[ "$(hb_lines_after "$t" | wc -l)" -ge $((s / 3)) ]
			return
		fi
		[ "$(now_ms)" -lt "$end" ] || return 1
		sleep 1
	done
}

# vbd_state NAME: the guest's disk frontend state in xenstore (4 = connected).
vbd_state() {
	local id
	id=$(xl domid "$1" 2>/dev/null) || { echo none; return; }
	xenstore-read "/local/domain/$id/device/vbd/51712/state" 2>/dev/null || echo none
}

# result KEY=VALUE... KEY:=JSON...: one JSON object on $RESULTS (and
# stdout), with scenario and hypervisor first. VALUEs that are numbers, true,
# false or null are written bare, others as strings; KEY:=JSON is inserted
# as it is (an object from a tool's --json output).
result() {
	local line="{" sep="" k v
	for kv in scenario="$SCENARIO" hypervisor="$LAB_HV" "$@"; do
		case ${kv%%=*} in
		*:) k=${kv%%:=*} v=$(printf '%s' "${kv#*:=}" | tr '\n\r' '  '); [ -n "$v" ] || v=null ;;
		*)
			k=${kv%%=*} v=${kv#*=}
			if ! printf '%s' "$v" | grep -Eqx 'true|false|null|-?[0-9]+(\.[0-9]+)?'; then
				v=\"$(printf '%s' "$v" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t\r' '   ')\"
			fi
			;;
		esac
		line="$line$sep\"$k\":$v" sep=","
	done
	printf '%s}\n' "$line" | tee -a "$RESULTS"
}

# domwatch_start: record every 200 ms which domains exist and their state
# (xl list) in /lab/out/dom.txt: "<ms> <name> <state>".
domwatch_start() {
	[ -f /run/domwatch.pid ] && return 0
	(while :; do
		t=$(now_ms)
		xl list 2>/dev/null | awk -v t="$t" 'NR > 1 && $1 != "Domain-0" {print t, $1, $5}'
		sleep 0.2
	done) </dev/null >>/lab/out/dom.txt 2>/dev/null &
	echo $! >/run/domwatch.pid
}

# dom_downtime T1 T2: the longest time (ms) between T1 and T2 during which
# no domain ran (every one paused, suspended, dying or absent), from
# /lab/out/dom.txt: the guest's downtime as dom0 sees it, within ~200 ms.
dom_downtime() {
	awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b {
		if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 }
		if ($3 !~ /[psdc]/) alive[$1] = 1
	} END {
		for (i = 0; i < n; i++) {
			t = order[i]
			if (!(t in alive)) { if (start == "") start = (i > 0 ? order[i - 1] : t) }
			else if (start != "") { if (t - start > best) best = t - start; start = "" }
		}
		if (start != "" && order[n - 1] - start > best) best = order[n - 1] - start
		print best + 0
	}' /lab/out/dom.txt
}

# guest_ensure NAME: start the guest unless it is already running.
guest_ensure() { xl domid "$1" >/dev/null 2>&1 || guest_start "$@"; }

# xen_log: Xen's console since boot (`xl dmesg`), which every count of
# triple faults below reads. Its ring must hold the whole boot: with the
# default 16 KiB, a few triple-fault dumps pushed the older ones out, and
# counts taken before and after a move went backwards (-1) and hid deaths
# from lab_attempts. The lab boots Xen with conring_size=4M; should the
# ring still have wrapped (the log no longer holds the first line Xen
# prints, its version), this says so on stderr: the counts are then not to
# be trusted.
xen_log() {
	xl dmesg >/run/xen-log 2>&1
	grep -q '^(XEN) Xen version' /run/xen-log ||
		say "Xen's console ring has wrapped: triple-fault counts miss the oldest (raise conring_size in lab/xen/run)" >&2
	cat /run/xen-log
}

# triple_faults: how many guest triple faults Xen has logged since boot.
triple_faults() { xen_log | grep -c 'Triple fault'; }

# xen_rip_doms: the domids whose triple-fault dump gives Xen's own code as
# the guest's RIP (cs e008, e.g. e008:ffff82d0402044f5): QEMU's emulation
# of the SVM world switch wrote the host's state where the guest's belongs,
# which nothing in the guest's memory can cause (README, "The triple fault").
xen_rip_doms() {
	xen_log | awk '/Triple fault/ { d = $2; sub(/^d/, "", d); sub(/v.*/, "", d); want = 1; next }
		want && $2 == "RIP:" { if ($3 ~ /^e008:/) print d; want = 0 }' | sort -un
}

# exit_rip_doms: the domids whose triple-fault dump gives a guest RIP right
# after an instruction that exits to the hypervisor (rdtsc, wrmsr to the
# x2APIC EOI, in from the PIT, ...: /lab/guest/exit-rips, from the guest
# kernel), with interrupts off (RFLAGS.IF clear): the guest's next
# instruction (e.g. a shift) cannot fault and no interrupt can be
# delivered, so the fault came on the emulated return from the exit, as
# with Xen's RIP above. Every guest-RIP death of 2026-12-03's runs (booting
# guests and post-copy destinations, 5 of 5) was of this kind.
exit_rip_doms() {
	[ -s /lab/guest/exit-rips ] || return 0
	xen_log | awk '/Triple fault/ { d = $2; sub(/^d/, "", d); sub(/v.*/, "", d); want = 1; next }
		want && $2 == "RIP:" { rip = $3; next }
		want && $2 == "RFLAGS:" { want = 0
			if (rip !~ /^0010:/) next
			sub(/^0010:\[</, "", rip); sub(/>\]$/, "", rip)
			v = index("0123456789abcdef", tolower(substr($3, length($3) - 2, 1))) - 1 # bits 8-11
			if (int(v / 2) % 2 == 0) print d, rip # IF (0x200) clear
		}' |
		while read -r d rip; do grep -qx "$rip" /lab/guest/exit-rips && echo "$d"; done | sort -un
}

# triple_fault_doms N: the domids of the last N triple faults Xen logged,
# ascending, each once, each followed by a space.
triple_fault_doms() {
	xen_log | grep 'Triple fault' | tail -n "$1" | sed 's/.*(XEN) d\([0-9]*\)v[0-9]* Triple fault.*/\1/' | sort -un | tr '\n' ' '
}

# restored ID: domain ID is a migration's destination (libxc's restore for
# xl migrate, a xenmig shell for xenmig), recorded by mark_restored.
mark_restored() { echo "$1" >>/run/lab-restored; }
restored() { grep -qx "$1" /run/lab-restored 2>/dev/null; }

# guest_ready NAME SECS: the guest to move, in a known state: it runs (a
# crashed or shut-down one is destroyed and started again), it was built by
# `xl create` from the config guest_config writes now (a scenario's
# LAB_MEMCHECK_MB included), not restored by a migration, and its heartbeat
# has gone on for SECS s since this call. In this lab a restored guest
# under HAP log-dirty may triple-fault within seconds (QEMU's emulated
# nested paging; see README.md, "The triple fault"): first seen only in
# domains xl migrate restored, then once in a xenmig destination migrated
# again. So every move starts from a fresh guest. A failed scenario's
# debris (NAME--incoming, NAME--migratedaway: its result named them) is
# destroyed, or every later move of NAME would be refused. Prints what it
# did; fails if the guest does not come up (GUEST_WHY says why).
guest_ready() {
	local name=$1 secs=$2 id st t cfg d boot_end
	for d in "$name--incoming" "$name--migratedaway"; do
		if id=$(xl domid "$d" 2>/dev/null); then
			say "destroying $d (dom $id), left by an earlier scenario"
			xl destroy "$d"
		fi
	done
	if id=$(xl domid "$name" 2>/dev/null); then
		st=$(xl list "$name" | awk 'NR == 2 {print $5}')
		cfg=$(cat "/etc/xen/$name.cfg" 2>/dev/null)
		guest_config "$name"
		case $st in
		*c* | *s*) say "guest $name (dom $id) is $st: destroying it and starting it again"; xl destroy "$name" ;;
		*) if restored "$id"; then
			say "guest $name (dom $id) was restored by a migration: starting it afresh"
			xl destroy "$name"
		elif [ "$cfg" != "$(cat "/etc/xen/$name.cfg")" ]; then
			say "guest $name (dom $id) runs another config: starting it afresh"
			xl destroy "$name"
		fi ;;
		esac
	fi
	# A guest the emulation kills meanwhile is started again; guest_start's
	# boots share this deadline.
	boot_end=$(boot_deadline)
	while :; do
		guest_ensure "$name" || return 1
		t=$(now_ms)
		if wait_hb "$t" "$secs" $((secs * 3 + 30)) "$name"; then
			say "guest $name (dom $(xl domid "$name")) ready: $secs heartbeats in $(($(now_ms) - t)) ms"
			return 0
		fi
		if xl domid "$name" >/dev/null 2>&1; then
			GUEST_WHY="heartbeat not steady for $secs s"
			say "guest $name: $GUEST_WHY"
			return 1
		fi
		boot_spent "$name" "died before it was ready, still," && return 1
		say "guest $name died before it was ready ($(triple_faults) triple faults in xl dmesg)"
	done
}

# scratch_create NAME [MB]: a PVH domain created paused that never runs (no
# disk): memory for tests that write it (self-test, benchmarks).
scratch_create() {
	mkdir -p /etc/xen
	cat >"/etc/xen/$1.cfg" <<CFG
name = "$1"
type = "pvh"
memory = ${2:-128}
maxmem = ${2:-128}
vcpus = 1
kernel = "/lab/guest/vmlinuz"
ramdisk = "/lab/guest/initrd"
CFG
	xl create -p "/etc/xen/$1.cfg"
}

# jfield KEY FILE: the number KEY holds in a JSON file (first match), or null.
jfield() { local v; v=$(grep -o "\"$1\": *[0-9.]*" "$2" | head -1 | cut -d: -f2 | tr -d ' '); echo "${v:-null}"; }

# lab_attempts FUNC [ARGS]: run a scenario's body FUNC, which writes one
# result, up to LAB_MOVE_TRIES times in all (5): again, on a fresh guest,
# when it failed because the lab's emulated SVM killed a guest (see
# README, "The triple fault": it kills guests nothing touches, booting
# ones too, and once a destination that had run for seconds). That is:
# every domain that triple-faulted during the attempt was the source or
# older (FUNC writes the source's domid, once it is ready, with
# attempt_source; a destination always gets a higher domid), or one FUNC
# found ran well before it died (ran_then_died), or one whose dump shows
# the emulation's own signature (xen_rip_doms: Xen's RIP; exit_rip_doms:
# a guest RIP just after an exit, interrupts off), and FUNC did not veto the
# retry (attempt_no_retry: xenmig must have rolled back cleanly). The
# result says so (lab_retry); failed attempts' results stay in
# /lab/out/attempts.jsonl.
lab_attempts() {
	# Names of their own: FUNC sees these (dash scopes dynamically).
	local la_results=$RESULTS la_first=/lab/out/attempt.jsonl la_rc la_n=1 la_tf0 la_tf la_src la_died la_d la_lab
	LAB_RETRY=""
	while :; do
		rm -f /lab/out/no-retry /lab/out/attempt-source /lab/out/attempt-ran
		la_tf0=$(triple_faults)
		RESULTS=$la_first
		: >"$la_first"
		"$@"
		la_rc=$? RESULTS=$la_results
		la_tf=$(($(triple_faults) - la_tf0)) la_src=$(cat /lab/out/attempt-source 2>/dev/null) la_died="" la_lab=false
		if [ $la_rc != 0 ] && [ $la_tf -gt 0 ] && [ -n "$la_src" ] && [ ! -f /lab/out/no-retry ]; then
			la_died=$(triple_fault_doms "$la_tf")
			la_died=${la_died% }
			la_lab=true
			for la_d in $la_died; do
				[ "$la_d" -le "$la_src" ] || grep -qx "$la_d" /lab/out/attempt-ran 2>/dev/null ||
					xen_rip_doms | grep -qx "$la_d" || exit_rip_doms | grep -qx "$la_d" || la_lab=false
			done
		fi
		if [ $la_lab = false ] || [ $la_n -ge "${LAB_MOVE_TRIES:-5}" ]; then
			cat "$la_first" >>"$RESULTS"
			[ ! -f /lab/out/no-retry ] || say "not retried: $(cat /lab/out/no-retry)"
			return $la_rc
		fi
		cat "$la_first" >>/lab/out/attempts.jsonl
		say "attempt $la_n: dom $la_died triple-faulted (the source is dom $la_src): a lab emulation fault, not the scenario's (README, \"The triple fault\"); trying again on a fresh guest"
		LAB_RETRY="${LAB_RETRY:+$LAB_RETRY; }attempt $la_n: source dom $la_src, dom $la_died triple-faulted"
		la_n=$((la_n + 1))
	done
}

# attempt_source ID: the domid lab_attempts' current attempt moves.
attempt_source() { echo "$1" >/lab/out/attempt-source; }

# move_begin NAME MODE: the start of an attempt that moves NAME: the guest
# ready (else a failed result of MODE), domains watched, the source told to
# lab_attempts, and for the caller id0 (the source's domid) and tf0 (the
# triple faults so far).
move_begin() {
	guest_ready "$1" 5 || { result mode="$2" ok=false error="guest not ready: $GUEST_WHY"; return 1; }
	domwatch_start
	id0=$(xl domid "$1")
	attempt_source "$id0"
	tf0=$(triple_faults) || : # grep -c: none counted is status 1
}

# other_domains NAME: the domains other than dom0 and NAME, space-separated.
other_domains() { xl list | awk -v n="$1" 'NR > 1 && $1 != "Domain-0" && $1 != n {printf "%s ", $1}'; }

# ran_then_died ID T: if domain ID triple-faulted during this attempt
# after it had run well since T (ms): 5 heartbeats or more, and zero bad
# pages, lab_attempts may count its death as the lab's. A move that broke
# the guest shows at once, or as bad pages.
ran_then_died() {
	local n
	[ -n "$1" ] && xen_log | grep -q "(XEN) d$1v[0-9]* Triple fault" || return 0
	n=$(hb_lines_after "$2" | wc -l)
	if [ "$n" -ge 5 ] && [ "$(bad_pages)" = 0 ]; then
		echo "$1" >>/lab/out/attempt-ran
		say "dom $1 ran $n heartbeats after the move, 0 bad pages, then triple-faulted"
	fi
}

# attempt_no_retry WHY: this attempt must not be retried.
attempt_no_retry() { echo "$*" >/lab/out/no-retry; }

# xenmig_move MODE [ADDR [HOOK]]: move the running guest hb with xenmig to
# this host in MODE, with XENMIG_FLAGS added to the migrate command (the
# receiver listens on 127.0.0.1:8002; the sender dials ADDR, by default the
# receiver), run HOOK in the background as soon as the sender logs the
# switchover, then check the guest and write the result. ok: both sides
# exit 0 and MOVE_CHECK, a shell test of the scenario's on the result file
# $j, holds; the guest runs on under a new domid with zero bad pages, its
# heartbeat on for 12 s, its disk frontend connected and doing I/O; the
# live NAME is the domain the receiver reported; no paged-out page, no
# leftover domain (NAME--incoming, NAME--migratedaway) and no triple fault
# in xl dmesg. The guest moved is one guest_ready found fit.
# Attempts are retried by lab_attempts.
xenmig_move() { lab_attempts xenmig_move_once "$@"; }

# xenmig_move_once MODE [ADDR [HOOK]]: one attempt of xenmig_move. If the
# source triple-faulted but xenmig did not roll back cleanly (both sides
# exit 3, nothing left; the receiver's exit does not count if the sender
# never reached it), it vetoes a retry; a destination that died after
# running well is reported to lab_attempts (ran_then_died).
xenmig_move_once() {
	local mode=$1 addr=${2:-127.0.0.1:8002} hook=$3 name=hb j=/lab/out/migrate.json
	local rpid hpid="" rc rrc t0 t1 id0 id1 got tf0 tf tfdoms vbdm vbd1 vbd alive=false paged left err why ok=false end
	move_begin $name "$mode" || return 1
	timeout 600 xenmig receive --listen 127.0.0.1:8002 --insecure-plaintext --json >/lab/out/receiver.json 2>/lab/out/receiver.log &
	rpid=$!
	sleep 2
	t0=$(now_ms)
	: >/lab/out/migrate.log
	if [ -n "$hook" ]; then
		(while ! grep -q "domain resumed on the destination" /lab/out/migrate.log 2>/dev/null; do sleep 0.05; done
		say "switchover seen: $hook"; eval "$hook") &
		hpid=$!
	fi
	# shellcheck disable=SC2086 # XENMIG_FLAGS: more migrate flags, split
	timeout 600 xenmig migrate $name "$addr" --mode "$mode" $XENMIG_FLAGS --insecure-plaintext --json >/lab/out/migrate.json 2>/lab/out/migrate.log
	rc=$?
	t1=$(now_ms)
	[ -z "$hpid" ] || kill "$hpid" 2>/dev/null
	vbdm=$(hb_field vbd)
	# A receiver the sender never reached listens on: 60 s, then it goes.
	end=$(($(date +%s) + 60))
	while kill -0 $rpid 2>/dev/null && [ "$(date +%s)" -lt $end ]; do sleep 0.5; done
	kill $rpid 2>/dev/null
	wait $rpid
	rrc=$?
	say "migrate rc=$rc receiver rc=$rrc: $(cat /lab/out/migrate.json)"
	tail -n 5 /lab/out/migrate.log /lab/out/receiver.log
	guest_alive_after "$t1" 12 && alive=true
	id1=$(xl domid $name 2>/dev/null)
	vbd1=$(hb_field vbd)
	vbd=$(vbd_state $name)
	paged=$(xenmig list --json 2>/dev/null | tr '{' '\n' | grep "\"Name\":\"$name\"" | grep -o '"PagedPages":[0-9]*' | cut -d: -f2)
	left=$(xl list | awk -v n="$name" '$1 == n "--incoming" || $1 == n "--migratedaway" {print $1}' | tr '\n' ' ')
	got=$(grep '"received"' /lab/out/receiver.json | grep -o '"domid": *[0-9]*' | tr -dc 0-9)
	[ -z "$got" ] || mark_restored "$got" # the next move starts from a fresh guest (guest_ready)
	tf=$(($(triple_faults) - tf0)) tfdoms=""
	[ "$tf" = 0 ] || { tfdoms=$(triple_fault_doms "$tf"); ran_then_died "$got" "$t1"; }
	err=$(grep -i -m1 -E 'error|fatal|panic' /lab/out/migrate.log /lab/out/receiver.log)
	[ "$tf" = 0 ] || err="a guest triple-faulted during the move ($tf in xl dmesg, domains $tfdoms): $err"
	xl list
	why=""
	[ "$rc" = 0 ] || why="$why migrate exit $rc;"
	[ "$rrc" = 0 ] || why="$why receiver exit $rrc;"
	[ $alive = true ] || why="$why heartbeat stopped;"
	[ "$(bad_pages)" = 0 ] || why="$why $(bad_pages) bad pages;"
	[ "$id1" != "$id0" ] || why="$why still dom $id0;"
	[ "$id1" = "$got" ] || why="$why live dom ${id1:-none} is not the received ${got:-none};"
	[ "$tf" = 0 ] || why="$why $tf triple faults;"
	[ "$vbd" = 4 ] || why="$why vbd frontend state $vbd;"
	[ $((vbd1 - vbdm)) -ge 10 ] || why="$why vbd I/O $vbdm -> $vbd1;"
	[ "${paged:-x}" = 0 ] || why="$why paged pages ${paged:-unknown};"
	[ -z "$left" ] || why="$why left: $left;"
	[ -z "$MOVE_CHECK" ] || eval "$MOVE_CHECK" || why="$why failed: $MOVE_CHECK;"
	[ -n "$why" ] || ok=true
	[ $ok = true ] || say "failed:$why"
	case " $tfdoms" in
	*" $id0 "*) # the source died: xenmig must have rolled back
		# (a receiver the sender never reached has nothing to roll back)
		if [ "$rc" != 3 ] || [ -n "$left" ] ||
			{ grep -q 'incoming migration' /lab/out/receiver.log && [ "$rrc" != 3 ]; }; then
			attempt_no_retry "the source triple-faulted, but xenmig did not roll back cleanly (exit $rc, receiver $rrc, left: ${left:-none})"
		fi ;;
	esac
	result mode="$mode" ok=$ok exit_code=$rc receiver_exit_code=$rrc total_ms=$((t1 - t0)) \
		downtime_ms="$(jfield downtime_ms $j)" preparation_ms="$(jfield preparation_ms $j)" \
		network_faults="$(jfield network_faults $j)" fault_p50_us="$(jfield fault_p50_us $j)" \
		fault_p99_us="$(jfield fault_p99_us $j)" pages_sent="$(jfield pages_sent $j)" \
		early_pages="$(jfield early_pages $j)" resume_pages="$(jfield resume_pages $j)" \
		reconnects="$(jfield reconnects $j)" ballooned_pages_skipped="$(jfield ballooned_pages_skipped $j)" \
		dom0_downtime_ms="$(dom_downtime "$t0" "$t1")" \
		heartbeat_gap_ms="$(hb_gap "$t0" "$t1")" bad_pages="$(bad_pages)" guest_alive_after=$alive \
		domid_before="$id0" domid_received="${got:-none}" domid_after="${id1:-none}" triple_faults="$tf" \
		vbd_state="$vbd" vbd_io_at_move="$vbdm" vbd_io_after="$vbd1" paged_after="${paged:-null}" \
		triple_fault_domains="$tfdoms" lab_retry="${LAB_RETRY:-}" \
		leftover="$left" xenmig:="$(cat $j)" error="${why:+failed:$why }$err"
	[ $ok = true ]
}
