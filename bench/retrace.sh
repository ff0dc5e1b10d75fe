#!/usr/bin/env bash
# retrace.sh [RETRACED_BIN]
#
# How long a retrace task takes (the issue "Retrace": create ->
# FINISHED_SUCCESS for a fixture core, at most 2 s median), printed beside
# gdb retracing the same core with DEBUGINFOD_URLS pointing at the same
# server, in the same run.
#
# One `retraced serve` on a fresh data directory, which mirrors the bundled
# fixture repository (the embedded default). Then ROUNDS rounds over every
# fixture core (fixtures/cores/*.core.zst, decompressed):
#   task:  POST /create with a plain tar (coredump, executable), then GET /ID
#          every 20 ms until the status is no longer PENDING; the time from
#          sending the upload to reading FINISHED_SUCCESS. The backtrace is
#          fetched and checked for frames (not timed). Round 1 assembles
#          each package set's sysroot; later rounds find it cached.
#   gdb:   gdb -nx -batch -c CORE with debuginfod on and DEBUGINFOD_URLS set
#          to the server, running the worker's commands (thread apply all
#          -ascending backtrace full, info sharedlibrary, info registers,
#          disassemble); "empty cache" gives every run a new
#          DEBUGINFOD_CACHE_PATH (a developer's first look), "warm cache"
#          reuses one filled by the previous round. Its output is checked
#          for the same frames.
# Printed: the median and the range of each, and the ratios of the gdb
# medians to the task's.
#
# RETRACED_BIN defaults to a fresh `go build -tags liblzma ./cmd/retraced`.
# Environment: ROUNDS=N (5); WORKDIR=DIR for temp dirs (/var/tmp); KEEP=1
# keeps them. Needs gdb, curl, tar, zstd, awk. The server listens on
# 127.0.0.1 only and is stopped on exit; every wait is bounded.
set -euo pipefail

if [[ $# -gt 1 ]]; then
	echo "usage: $0 [RETRACED_BIN]" >&2
	exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
ROUNDS=${ROUNDS:-5}
for tool in gdb curl tar zstd awk; do
	command -v "$tool" >/dev/null || { echo "retrace.sh: $tool is not installed" >&2; exit 1; }
done

# The work directory must be reachable by nobody, gdb's user when the
# server runs as root.
WORK=$(mktemp -d "${WORKDIR:-/var/tmp}/retraced-retrace-bench.XXXXXX")
chmod 755 "$WORK"
SERVER=
cleanup() {
	if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then
		kill -TERM "$SERVER" 2>/dev/null || true
		wait "$SERVER" 2>/dev/null || true
	fi
	if [[ ${KEEP:-} == 1 ]]; then
		echo "kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BIN=${1:-}
if [[ -z $BIN ]]; then
	BIN=$WORK/retraced
	(cd "$ROOT" && go build -tags liblzma -o "$BIN" ./cmd/retraced)
fi

# Both fixture repositories: Debian's layout (repo/) and Fedora's
# (repo-dist/, whose cores need its glibc and libstdc++).
"$BIN" --data "$WORK/data" mirror add fixtures "$ROOT/fixtures/repo" >/dev/null
"$BIN" --data "$WORK/data" mirror add dist "$ROOT/fixtures/repo-dist" >/dev/null
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
"$BIN" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 600); do
	if curl -fsS "$URL/api/v1/mirrors" 2>/dev/null | grep -q '"last_sync": *"' &&
		! curl -fsS "$URL/api/v1/mirrors" 2>/dev/null | grep -q '"last_sync": *null'; then
		break
	fi
	kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
	sleep 0.1
done
curl -fsS "$URL/api/v1/mirrors" | grep -q '"last_sync": *"' || { echo "retrace.sh: the fixture mirror did not sync in 60 s" >&2; exit 1; }

# The cores, each with its crash directory as a tar and the frames its
# backtrace must show (fixtures/cores/NAME.bt.txt's function names).
mkdir -p "$WORK/cores"
CORES=()
for z in "$ROOT"/fixtures/cores/*.core.zst; do
	name=$(basename "$z" .core.zst)
	d=$WORK/cores/$name
	mkdir -p "$d"
	zstd -qdc "$z" >"$d/coredump"
	exe=$(cat "$ROOT"/fixtures/cores/cores*.txt | awk -v f="$name.core.zst" '$1 == f { print $3 }')
	printf '%s' "$exe" >"$d/executable"
	tar -C "$d" -cf "$d/crash.tar" coredump executable
	chmod -R a+rX "$d"
	CORES+=("$name")
done
[[ ${#CORES[@]} -gt 0 ]] || { echo "retrace.sh: no fixture cores" >&2; exit 1; }

# frames NAME: the function names with source lines (the mirrored
# packages' frames, not libc's) a backtrace of core NAME must show.
frames() {
	awk '/^#[0-9]+ .* at [^ ]+:[0-9]+/ { for (i = 1; i <= NF; i++) if ($i == "in") { print $(i + 1); break } }' \
		"$ROOT/fixtures/cores/$1.bt.txt" | sort -u | grep -v '^??$' | head -3
}

# check NAME FILE: FILE has every frame of NAME's backtrace.
check() {
	local f
	for f in $(frames "$1"); do
		grep -q -- "$f" "$2" || { echo "retrace.sh: $1: no frame $f in $2" >&2; sed -n 1,40p "$2" >&2; exit 1; }
	done
}

# task NAME: one retrace task; prints seconds from create to FINISHED_SUCCESS.
task() {
	local d=$WORK/cores/$1 t0 hdr id pw status=PENDING t1
	t0=$EPOCHREALTIME
	hdr=$(curl -sS -o /dev/null -D - -H 'Content-Type: application/x-tar' --data-binary "@$d/crash.tar" "$URL/create" | tr -d '\r')
	id=$(awk -F': ' 'tolower($1) == "x-task-id" { print $2 }' <<<"$hdr")
	pw=$(awk -F': ' 'tolower($1) == "x-task-password" { print $2 }' <<<"$hdr")
	[[ -n $id && -n $pw ]] || { echo "retrace.sh: create refused: $hdr" >&2; exit 1; }
	for _ in $(seq 3000); do
		status=$(curl -sS -o /dev/null -D - -H "X-Task-Password: $pw" "$URL/$id" | tr -d '\r' |
			awk -F': ' 'tolower($1) == "x-task-status" { print $2 }')
		[[ $status == PENDING ]] || break
		sleep 0.02
	done
	t1=$EPOCHREALTIME
	if [[ $status != FINISHED_SUCCESS ]]; then
		echo "retrace.sh: task $id for $1: $status" >&2
		curl -sS -H "X-Task-Password: $pw" "$URL/$id/log" >&2
		exit 1
	fi
	curl -sS -H "X-Task-Password: $pw" "$URL/$id/backtrace" >"$WORK/bt.txt"
	check "$1" "$WORK/bt.txt"
	curl -sS -o /dev/null -X DELETE -H "X-Task-Password: $pw" "$URL/$id"
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# gdbrun NAME CACHE: gdb on core NAME through the server's debuginfod
# protocol; prints its seconds.
gdbrun() {
	local d=$WORK/cores/$1 t0 t1
	t0=$EPOCHREALTIME
	HOME=$WORK DEBUGINFOD_URLS=$URL DEBUGINFOD_CACHE_PATH=$2 DEBUGINFOD_TIMEOUT=30 \
		timeout 120 gdb -nx -batch -iex 'set debuginfod enabled on' \
		-ex 'thread apply all -ascending backtrace full 1024' -ex 'info sharedlibrary' \
		-ex 'info registers' -ex 'disassemble' -c "$d/coredump" >"$WORK/gdb.txt" 2>&1 || true
	t1=$EPOCHREALTIME
	check "$1" "$WORK/gdb.txt"
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

: >"$WORK/task.first" >"$WORK/task.again" >"$WORK/gdb.empty" >"$WORK/gdb.warm"
for r in $(seq "$ROUNDS"); do
	for c in "${CORES[@]}"; do
		if [[ $r -eq 1 ]]; then
			task "$c" >>"$WORK/task.first"
		else
			task "$c" >>"$WORK/task.again"
		fi
		gdbrun "$c" "$WORK/dcache.$r.$c" >>"$WORK/gdb.empty"
		if [[ $r -gt 1 ]]; then
			gdbrun "$c" "$WORK/dcache.$((r - 1)).$c" >>"$WORK/gdb.warm"
		fi
	done
done

# stats FILE: "median min max n".
stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f %d", m, v[1], v[NR], NR }'; }
row() {
	local m lo hi n
	read -r m lo hi n <<<"$(stats "$2")"
	printf '%-56s %7s s   (%s-%s s, n=%s)\n' "$1" "$m" "$lo" "$hi" "$n"
}
median() { stats "$1" | awk '{ print $1 }'; }

echo "retrace of ${#CORES[@]} fixture cores (${CORES[*]}), $ROUNDS rounds, one serve on $URL"
row "task create -> FINISHED_SUCCESS, first (sysroot made)" "$WORK/task.first"
row "task create -> FINISHED_SUCCESS, again (sysroot cached)" "$WORK/task.again"
row "gdb -c CORE via DEBUGINFOD_URLS, empty cache" "$WORK/gdb.empty"
row "gdb -c CORE via DEBUGINFOD_URLS, warm cache" "$WORK/gdb.warm"
TASK=$(median "$WORK/task.again")
echo "gdb empty cache / task again: $(ratio "$(median "$WORK/gdb.empty")" "$TASK")x"
echo "gdb warm cache / task again:  $(ratio "$(median "$WORK/gdb.warm")" "$TASK")x"
awk -v m="$TASK" 'BEGIN { if (m <= 2) print "goal: median task <= 2 s: met (" m " s)"; else print "goal: median task <= 2 s: NOT met (" m " s)" }'
