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
# memory checker stamping 3/4 of what the guest's kernel leaves available, a
# 16 MiB vbd backed by a file (through a loop device).
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
extra = "console=hvc0 quiet memcheck.seed=${LAB_SEED:-24301}"
disk = [ "format=raw,vdev=xvda,access=rw,script=/lab/bin/vbd-hotplug,target=$loop" ]
on_crash = "preserve"
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
guest_start() {
	local name=$1 t
	guest_config "$@"
	hbwatch_start
	t=$(now_ms)
	xl create "/etc/xen/$name.cfg" || return 1
	wait_hb "$t" 1 180 || { say "guest $name: no heartbeat within 180 s"; xl list; return 1; }
	say "guest $name up: first heartbeat $(($(hb_first_after "$t") - t)) ms after xl create"
}

# hb_lines_after T: the heartbeat lines seen after T (ms).
hb_lines_after() { awk -v t="$1" '$1 > t && $3 == "HB"' "$HB"; }
hb_first_after() { hb_lines_after "$1" | awk 'NR == 1 {print $1}'; }

# wait_hb T N TIMEOUT_S: wait until N heartbeats arrived after T.
wait_hb() {
	local t=$1 n=$2 end=$(($(date +%s) + $3))
	while [ "$(hb_lines_after "$t" | wc -l)" -lt "$n" ]; do
		[ "$(date +%s)" -ge "$end" ] && return 1
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
