#!/usr/bin/env bash
# compare.sh CORPUSDIR [RETRACED_BIN]
#
# Ingest one directory of RPMs (a yum repo made by mkcorpus.sh) with elfutils
# debuginfod (-R, the anchor) and with retraced, in one run, and print the
# times, their ratio, and retraced's bytes stored against the floor computed
# by floor.sh.
#
#   debuginfod  time from exec until its first scan of CORPUSDIR is complete,
#               read from its /metrics (see "completion" below);
#   retraced    wall time of `retraced --data TMP mirror sync bench` after
#               `mirror add bench CORPUSDIR --kind yum`.
# Then, not part of the sync's time, `mirror sync bench --compact`: the
# compaction serve runs in the background after each sync (zstd -19), timed
# on its own, and the bytes stored after it.
# Goals: debuginfod/retraced >= 2.0, stored/floor <= 1.15 (after compaction).
#
# RETRACED_BIN defaults to bin/retraced beside this directory; `none` (or a
# missing binary) runs the debuginfod half only.
#
# Environment:
#   JOBS=N        debuginfod scan concurrency (-c), default nproc
#   TIMEOUT=S     give up on debuginfod after S seconds (default 7200)
#   KEEP=1        keep the temp dirs (debuginfod db, retraced data dir)
#   WORKDIR=DIR   where temp dirs go (default /var/tmp); same disk for both
#   NOFLOOR=1     skip floor.sh
#   NOCOMPACT=1   skip the compaction
#
# Completion of debuginfod's scan. debuginfod has one traverse thread that
# walks the source paths once (-t 0: no rescans) and queues every regular
# file; -c scanner threads take files off that queue, open .rpm files, and
# index their ELF build-ids. Its /metrics expose:
#   thread_work_total{role="traverse"}   traversals finished
#   thread_busy{role="traverse"}         traversal in progress
#   traversed_total{type="file"}         files queued by the traversal
#   thread_work_total{role="scan"}       files fully processed by scanners
#                                        (incremented after the file's rows
#                                        are in sqlite)
#   thread_work_pending{role="scan"}     queue length
#   thread_busy{role="scan"}             scanners working right now
#   scanned_files_total{source=".rpm archive"}  RPMs scanned
# The scan is done when a traversal has finished, every queued file has been
# processed (work_total{scan} == traversed_total{file}), nothing is pending or
# busy, and the number of RPMs scanned equals the number of .rpm files under
# CORPUSDIR. If everything but the RPM count holds for 10 s, the run stops
# with a warning (an RPM debuginfod could not read). Polled every 0.1 s.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
	echo "usage: $0 CORPUSDIR [RETRACED_BIN|none]" >&2
	exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
CORPUS=$(cd "$1" && pwd)
BIN=${2:-$HERE/../bin/retraced}
JOBS=${JOBS:-$(nproc)}
TIMEOUT=${TIMEOUT:-7200}
WORKDIR=${WORKDIR:-/var/tmp}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

for tool in debuginfod curl awk; do
	command -v "$tool" >/dev/null || {
		echo "compare: $tool not found" >&2
		exit 1
	}
done
if [[ $BIN != none ]]; then
	if [[ -x $BIN ]]; then
		BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
	else
		echo "compare: retraced binary $BIN not found; running debuginfod only" >&2
		BIN=none
	fi
fi

# Bash 5's $EPOCHREALTIME saves a fork per poll; date(1) otherwise.
if [[ -n ${EPOCHREALTIME:-} ]]; then
	now() { echo "${EPOCHREALTIME/,/.}"; }
else
	now() { date +%s.%N; }
fi
isecs() { echo $((${2%.*} - ${1%.*})); } # whole seconds between two now()s
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { printf 'compare: %s\n' "$*" >&2; }

TMP=$(mktemp -d "$WORKDIR/retraced-compare.XXXXXX")
DPID=
cleanup() {
	if [[ -n $DPID ]] && kill -0 "$DPID" 2>/dev/null; then
		kill "$DPID" 2>/dev/null || true
		wait "$DPID" 2>/dev/null || true
	fi
	if [[ ${KEEP:-0} == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The corpus: every .rpm debuginfod will see (it walks the tree recursively).
NRPM=$(find "$CORPUS" -name '*.rpm' -type f | wc -l)
RPM_BYTES=$(find "$CORPUS" -name '*.rpm' -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}')
[[ $NRPM -gt 0 ]] || {
	echo "compare: no .rpm files under $CORPUS" >&2
	exit 1
}
log "corpus $CORPUS: $NRPM RPMs, $RPM_BYTES bytes"

# Floor (cached by floor.sh in CORPUSDIR/.floor).
FLOOR_BYTES=
if [[ ${NOFLOOR:-0} != 1 ]]; then
	log "floor: $HERE/floor.sh $CORPUS"
	"$HERE/floor.sh" "$CORPUS" >"$TMP/floor.out"
	# shellcheck disable=SC1091
	FLOOR_BYTES=$(. "$CORPUS/.floor/summary" && echo "$FLOOR_BYTES")
fi

# Both tools start with the corpus in the page cache: read it once before each.
warm() {
	find "$CORPUS" -name '*.rpm' -type f -print0 | xargs -0 cat >/dev/null
}

# ---------------------------------------------------------------- debuginfod

# metric NAME{LABELS}: value of one exact series from $TMP/metrics (0 if absent).
metric() {
	awk -v k="$1" 'index($0, k " ") == 1 { v = $NF } END { print v + 0 }' "$TMP/metrics"
}

warm
PORT=${PORT:-$(free_port)}
mkdir -p "$TMP/debuginfod"
log "debuginfod -R $CORPUS -c $JOBS -t 0 -g 0 on port $PORT"
# -t 0: traverse once, no rescans. -g 0: no periodic grooming (one groom of
# the empty db runs at start, taking milliseconds). -c: scanner threads.
T0=$(now)
(cd "$TMP/debuginfod" && exec debuginfod -R "$CORPUS" -d "$TMP/debuginfod/db.sqlite" \
	-p "$PORT" -c "$JOBS" -t 0 -g 0 >"$TMP/debuginfod/log" 2>&1) &
DPID=$!

D_DONE=
D_WARN=
D_TRAV= # first poll that saw the traversal under way
almost_since=
last_report=0
while :; do
	if ! kill -0 "$DPID" 2>/dev/null; then
		echo "compare: debuginfod exited early; its log:" >&2
		tail -20 "$TMP/debuginfod/log" >&2
		exit 1
	fi
	t=$(now)
	if [[ $(isecs "$T0" "$t") -ge $TIMEOUT ]]; then
		echo "compare: debuginfod not done after ${TIMEOUT}s" >&2
		exit 1
	fi
	if curl -sf --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$TMP/metrics" 2>/dev/null; then
		read -r trav travbusy queued done_ pending busy rpms <<<"$(scan_state "$TMP/metrics")"
		el=$(secs "$T0" "$t")
		printf '%s trav=%s travbusy=%s queued=%s done=%s pending=%s busy=%s rpms=%s\n' \
			"$el" "$trav" "$travbusy" "$queued" "$done_" "$pending" "$busy" "$rpms" \
			>>"$TMP/debuginfod/trace"
		[[ -n $D_TRAV || $queued -eq 0 ]] || D_TRAV=$t
		if scan_settled "$trav" "$travbusy" "$queued" "$done_" "$pending" "$busy"; then
			if [[ $rpms -eq $NRPM ]]; then
				D_DONE=$t
				break
			fi
			almost_since=${almost_since:-$t}
			if [[ $(isecs "$almost_since" "$t") -ge 10 ]]; then
				D_DONE=$almost_since
				D_WARN="debuginfod scanned $rpms of $NRPM RPMs"
				break
			fi
		else
			almost_since=
		fi
		el=$(isecs "$T0" "$t")
		if [[ $el -ge $((last_report + 10)) ]]; then
			last_report=$el
			log "debuginfod ${el}s: $rpms/$NRPM RPMs scanned, $done_/$queued files, $pending pending"
		fi
	fi
	sleep 0.1
done
D_SECS=$(secs "$T0" "$D_DONE")
D_IDLE=$(secs "$T0" "${D_TRAV:-$D_DONE}")
# Cross-check the completion condition against the database itself: how many
# RPMs have their "scanned" row committed at this moment.
D_DBRPMS=
if command -v sqlite3 >/dev/null; then
	pfx=$(sqlite3 "$TMP/debuginfod/db.sqlite" .tables 2>/dev/null | tr -s ' ' '\n' |
		sed -n 's/_file_mtime_scanned$//p' | head -1)
	if [[ -n $pfx ]]; then
		D_DBRPMS=$(sqlite3 "$TMP/debuginfod/db.sqlite" "select count(distinct f.name) from
			${pfx}_file_mtime_scanned s join ${pfx}_files f on s.file = f.id
			where s.sourcetype = 'R' and f.name like '%.rpm'" 2>/dev/null || true)
	fi
fi
D_CPU=$(awk '{ printf "%.2f", ($14 + $15) / '"$(getconf CLK_TCK)"' }' "/proc/$DPID/stat" 2>/dev/null || echo "?")
D_RPMS=$rpms
D_BUILDIDS=$(metric 'found_executable_total{source=".rpm archive"}')
D_DEBUGINFO=$(metric 'found_debuginfo_total{source=".rpm archive"}')
kill "$DPID" 2>/dev/null || true
wait "$DPID" 2>/dev/null || true
DPID=
D_DB_BYTES=$(du -sb "$TMP/debuginfod" | cut -f1)
log "debuginfod done in ${D_SECS}s ($D_RPMS RPMs per /metrics, ${D_DBRPMS:-?} in its db; traversal began after ~${D_IDLE}s; cpu ${D_CPU}s)${D_WARN:+; WARNING: $D_WARN}"

# ------------------------------------------------------------------ retraced
R_SECS='' R_CPU='' R_FETCHED='' R_STORED='' R_PACKAGES='' R_VERSIONS='' R_DATA_BYTES='' R_RESULT=''
C_SECS='' C_CPU='' C_STORED='' C_DATA_BYTES=''
R_CHECK=
if [[ $BIN != none ]]; then
	DATA=$TMP/retraced-data
	"$BIN" --data "$DATA" mirror add bench "$CORPUS" --kind yum >"$TMP/add.out" 2>&1 || {
		echo "compare: retraced mirror add failed:" >&2
		cat "$TMP/add.out" >&2
		exit 1
	}
	warm
	log "$BIN --data $DATA mirror sync bench"
	T1=$(now)
	set +e
	/usr/bin/time -f '%U %S' -o "$TMP/sync.time" "$BIN" --data "$DATA" mirror sync bench >"$TMP/sync.out" 2>&1
	rc=$?
	set -e
	T2=$(now)
	R_SECS=$(secs "$T1" "$T2")
	R_CPU=$(awk 'END { printf "%.2f", $1 + $2 }' "$TMP/sync.time" 2>/dev/null || echo "?")
	log "retraced sync exit $rc in ${R_SECS}s: $(tail -1 "$TMP/sync.out")"
	if [[ $rc -ne 0 ]]; then
		R_RESULT="sync exit $rc"
		tail -20 "$TMP/sync.out" >&2
	fi
	# counts: "bytes_fetched bytes_stored packages versions" of source bench.
	counts() {
		if ! "$BIN" --data "$DATA" mirror list --json >"$TMP/list.json" 2>"$TMP/list.err"; then
			log "mirror list --json failed: $(cat "$TMP/list.err")"
			return
		fi
		if command -v jq >/dev/null; then
			jq -r '.[] | select(.name == "bench") | "\(.bytes_fetched) \(.bytes_stored) \(.packages) \(.versions)"' "$TMP/list.json"
		else
			"$PYTHON" -c '
import json, sys
for s in json.load(open(sys.argv[1])):
    if s["name"] == "bench":
        print(s["bytes_fetched"], s["bytes_stored"], s["packages"], s["versions"])' "$TMP/list.json"
		fi
	}
	read -r R_FETCHED R_STORED R_PACKAGES R_VERSIONS <<<"$(counts)"
	if [[ -z $R_RESULT ]] && command -v jq >/dev/null; then
		R_RESULT=$(jq -r '.[] | select(.name == "bench") | .last_result' "$TMP/list.json")
	fi
	R_DATA_BYTES=$(du -sb "$DATA" | cut -f1)

	# Cross-check, not timed: every build-id debuginfod found must be known to
	# retraced.
	if command -v sqlite3 >/dev/null && [[ -f $TMP/debuginfod/db.sqlite ]]; then
		if [[ -n ${pfx:-} ]]; then
			sqlite3 "$TMP/debuginfod/db.sqlite" "select distinct b.hex from ${pfx}_r_de r
				join ${pfx}_buildids b on r.buildid = b.id" | sort -u >"$TMP/ids.debuginfod"
			xargs -n 500 "$BIN" --data "$DATA" lookup <"$TMP/ids.debuginfod" 2>/dev/null |
				awk '{print $1}' | sort -u >"$TMP/ids.retraced" || true
			R_CHECK="$(comm -12 "$TMP/ids.debuginfod" "$TMP/ids.retraced" | wc -l) of $(wc -l <"$TMP/ids.debuginfod")"
			comm -23 "$TMP/ids.debuginfod" "$TMP/ids.retraced" | head -5 >"$TMP/ids.missing"
		fi
	fi

	# Compaction, timed on its own: the sync (repomd unchanged) is one
	# request, the rest is recompressing every stored file with zstd -19.
	if [[ ${NOCOMPACT:-0} != 1 && $rc -eq 0 ]]; then
		log "$BIN --data $DATA mirror sync bench --compact"
		T3=$(now)
		/usr/bin/time -f '%U %S' -o "$TMP/compact.time" "$BIN" --data "$DATA" mirror sync bench --compact >"$TMP/compact.out" 2>&1 ||
			log "compaction failed: $(tail -3 "$TMP/compact.out")"
		C_SECS=$(secs "$T3" "$(now)")
		C_CPU=$(awk 'END { printf "%.2f", $1 + $2 }' "$TMP/compact.time" 2>/dev/null || echo "?")
		log "compaction in ${C_SECS}s: $(tail -1 "$TMP/compact.out")"
		read -r _ C_STORED _ _ <<<"$(counts)"
		C_DATA_BYTES=$(du -sb "$DATA" | cut -f1)
	fi
fi

# -------------------------------------------------------------------- report
mib() { awk -v b="$1" 'BEGIN { if (b == "") print "n/a"; else printf "%.1f MiB", b / 1048576 }'; }
na() { if [[ -n $1 ]]; then echo "$1"; else echo "n/a"; fi; }

SPEED=$(ratio "$D_SECS" "$R_SECS")
STORE_SYNC=$(ratio "$R_STORED" "$FLOOR_BYTES")
STORE=$(ratio "${C_STORED:-$R_STORED}" "$FLOOR_BYTES")
goal() { # goal VALUE OP LIMIT
	[[ $1 == n/a ]] && { echo ""; return; }
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { ok = (op == ">=") ? v >= l : v <= l; print ok ? "ok" : "MISSED" }'
}
echo
echo "corpus      $CORPUS: $NRPM RPMs, $(mib "$RPM_BYTES"); page cache warmed (all RPMs read once) before each tool"
echo "machine     $(nproc) CPUs; debuginfod $(debuginfod --version 2>&1 | head -1 | awk '{print $NF}') -c $JOBS"
printf '%-34s %14s  %s\n' "measure" "value" "note"
printf '%-34s %14s  %s\n' "debuginfod scan (s)" "$D_SECS" "cpu ${D_CPU}s; ${D_RPMS} RPMs (${D_DBRPMS:-?} in db); $D_BUILDIDS executable + $D_DEBUGINFO debuginfo ELF files; db $(mib "$D_DB_BYTES"); incl. ~${D_IDLE}s before its first traversal"
printf '%-34s %14s  %s\n' "retraced sync (s)" "$(na "$R_SECS")" "${R_CPU:+cpu ${R_CPU}s, }${R_RESULT:-}"
printf '%-34s %14s  %s\n' "speed debuginfod/retraced" "$SPEED" "goal >= 2.0 $(goal "$SPEED" '>=' 2.0)"
printf '%-34s %14s  %s\n' "RPM bytes" "$RPM_BYTES" "$(mib "$RPM_BYTES")"
printf '%-34s %14s  %s\n' "retraced bytes fetched" "$(na "$R_FETCHED")" "$(mib "$R_FETCHED")"
printf '%-34s %14s  %s\n' "retraced bytes stored after sync" "$(na "$R_STORED")" "$(mib "$R_STORED") (stored/floor $STORE_SYNC); data dir on disk $(mib "$R_DATA_BYTES")"
if [[ -n $C_SECS ]]; then
	printf '%-34s %14s  %s\n' "retraced compaction (s)" "$C_SECS" "cpu ${C_CPU}s, after the sync, not part of its time"
	printf '%-34s %14s  %s\n' "retraced bytes stored, compacted" "$(na "$C_STORED")" "$(mib "$C_STORED"); data dir on disk $(mib "$C_DATA_BYTES")"
fi
printf '%-34s %14s  %s\n' "floor bytes (kept files, zstd -19)" "$(na "$FLOOR_BYTES")" "$(mib "$FLOOR_BYTES")"
printf '%-34s %14s  %s\n' "stored/floor" "$STORE" "goal <= 1.15 $(goal "$STORE" '<=' 1.15)${C_SECS:+ (compacted)}"
if [[ -n $R_PACKAGES ]]; then
	printf '%-34s %14s  %s\n' "retraced packages/versions" "$R_PACKAGES/$R_VERSIONS" "corpus has $NRPM RPMs"
fi
if [[ -n $R_CHECK ]]; then
	printf '%-34s %14s  %s\n' "debuginfod build-ids in retraced" "$R_CHECK" "$(tr '\n' ' ' <"$TMP/ids.missing")"
fi
[[ -z $D_WARN ]] || echo "WARNING: $D_WARN"
echo "RESULT debuginfod_s=$D_SECS retraced_s=$(na "$R_SECS") speed=$SPEED rpm_bytes=$RPM_BYTES stored_bytes=$(na "$R_STORED") compacted_bytes=$(na "$C_STORED") compact_s=$(na "$C_SECS") floor_bytes=$(na "$FLOOR_BYTES") stored_over_floor=$STORE"
