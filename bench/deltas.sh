#!/usr/bin/env bash
# deltas.sh CORPUSDIR [RETRACED_BIN]
#
# Issue 12's numbers on a multi-version corpus (mkcorpus-versions.sh), in
# one run:
#
#   bytes fetched          the RPMs' bytes (mirror list --json)
#   per-file floor         every kept file alone at zstd -19: the same sync
#                          compacted as retraced did before deltas
#                          (compact_level = 19, compact_deltas = false, the
#                          zstd binary), on a copy of the data directory
#   stored after sync      S2 blobs, as the sync leaves them
#   stored after compaction deltas where they pay, whole blobs at
#                          compact_level (LEVEL, default 9), of it as deltas
#   sync CPU, compaction CPU, the floor's compaction CPU
#                          user + system seconds of the process and its
#                          children (xz, zstd), /usr/bin/time
#   cold /buildid/X/executable
#                          every executable build-id of the compacted data
#                          directory through `retraced serve`, the plain
#                          copies removed first (and again between the two
#                          groups): those stored as deltas, then those
#                          whole; mean time per request and per MB
#
# Goals (issue 12): stored after compaction <= 0.4 x floor; compaction CPU
# <= 3 x sync CPU; cold fetch of a delta within 2x of a whole blob's.
#
# Environment: LEVEL (compact_level, default 9), WORKDIR (default
# /var/tmp), KEEP=1 keeps the data directories, FLOOR=BYTES takes the
# floor from an earlier run on the same corpus instead of compacting a
# copy at zstd -19 (most of the run's time; it does not depend on the
# delta pipeline), and prints no "before" CPU.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
	echo "usage: $0 CORPUSDIR [RETRACED_BIN]" >&2
	exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
CORPUS=$(cd "$1" && pwd)
BIN=${2:-$HERE/../bin/retraced}
LEVEL=${LEVEL:-9}
WORKDIR=${WORKDIR:-/var/tmp}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
for tool in curl jq /usr/bin/time go; do
	command -v "$tool" >/dev/null || {
		echo "deltas: $tool not found" >&2
		exit 1
	}
done
[[ -x $BIN ]] || {
	echo "deltas: no retraced binary at $BIN (make build)" >&2
	exit 1
}
WORK=$(mktemp -d "$WORKDIR/retraced-deltas.XXXXXX")
SERVE_PID=
cleanup() {
	[[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "deltas: kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# cpu CMD...: runs CMD, its output to $WORK/log; prints "CPU WALL" seconds.
cpu() {
	/usr/bin/time -f '%U %S %e' -o "$WORK/time" "$@" >>"$WORK/log" 2>&1
	awk '{ printf "%.2f %.2f\n", $1 + $2, $3 }' "$WORK/time"
}
# field DATADIR NAME: a number of the source's mirror list --json.
field() { "$BIN" --data "$1" mirror list --json | jq -r ".[0].$2"; }

D=$WORK/data
printf '[mirror]\ncompact_level = %s\ncompact_deltas = true\n' "$LEVEL" >"$WORK/deltas.toml"
printf '[mirror]\ncompact_level = 19\ncompact_deltas = false\n' >"$WORK/floor.toml"
"$BIN" --data "$D" mirror add bench "$CORPUS" --kind yum >>"$WORK/log"
nrpm=$(find "$CORPUS" -name '*.rpm' | wc -l)
echo "deltas: syncing $nrpm RPMs from $CORPUS into $D"
read -r sync_cpu sync_wall < <(cpu "$BIN" --data "$D" --config "$WORK/deltas.toml" mirror sync bench)
fetched=$(field "$D" bytes_fetched)
stored_sync=$(field "$D" bytes_stored)
packages=$(field "$D" packages)
versions=$(field "$D" versions)
[[ -n ${FLOOR:-} ]] || cp -a "$D" "$WORK/floor"
echo "deltas: compacting (compact_level $LEVEL, deltas)"
read -r comp_cpu comp_wall < <(cpu "$BIN" --data "$D" --config "$WORK/deltas.toml" mirror sync bench --compact)
stored=$(field "$D" bytes_stored)
delta=$(field "$D" bytes_delta)
if [[ -n ${FLOOR:-} ]]; then
	echo "deltas: the floor from FLOOR: $FLOOR bytes"
	floor=$FLOOR floor_cpu=n/a
else
	echo "deltas: compacting the copy as before deltas (zstd -19 per file): the floor"
	read -r floor_cpu floor_wall < <(cpu "$BIN" --data "$WORK/floor" --config "$WORK/floor.toml" mirror sync bench --compact)
	floor=$(field "$WORK/floor" bytes_stored)
fi

# Cold fetches.
go build -o "$WORK/blobforms" "$HERE/blobforms"
"$WORK/blobforms" -data "$D" >"$WORK/forms"
port=$(free_port)
"$BIN" --data "$D" serve --listen "127.0.0.1:$port" >>"$WORK/log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 300); do
	curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
# fetch FORM: "N MEAN_MS MS_PER_MB" over every id stored in FORM.
fetch() {
	rm -rf "$D/blobs/plain"
	awk -v f="$1" '$2 == f { print $1, $3 }' "$WORK/forms" | while read -r id size; do
		t=$(curl -s -o /dev/null -w '%{time_total} %{http_code}' "http://127.0.0.1:$port/buildid/$id/executable")
		echo "$t $size"
	done | awk '$2 == 200 { n++; t += $1; b += $3 } $2 != 200 { bad++ }
		END { if (n == 0) print 0, "n/a", "n/a", bad + 0; else printf "%d %.2f %.2f %d\n", n, 1000 * t / n, 1000 * t / (b / 1048576), bad + 0 }'
}
read -r nd mean_d permb_d bad_d < <(fetch delta)
read -r nw mean_w permb_w bad_w < <(fetch whole)

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo
echo "corpus: $nrpm RPMs, $packages package names, $versions versions ($CORPUS)"
printf '%-34s %14s\n' "bytes fetched" "$(mib "$fetched")"
printf '%-34s %14s  %s\n' "per-file floor (zstd -19 each)" "$(mib "$floor")" "$([[ -n ${FLOOR:-} ]] && echo "(FLOOR, given)")"
printf '%-34s %14s  %s x floor\n' "stored after sync (S2)" "$(mib "$stored_sync")" "$(ratio "$stored_sync" "$floor")"
printf '%-34s %14s  %s x floor  (goal <= 0.4)\n' "stored after compaction" "$(mib "$stored")" "$(ratio "$stored" "$floor")"
printf '%-34s %14s  %s of it\n' "  of which deltas" "$(mib "$delta")" "$(ratio "$delta" "$stored")"
printf '%-34s %14s  %s x fetched\n' "  ratio to fetched" "" "$(ratio "$stored" "$fetched")"
printf '%-34s %12s s  (wall %s s)\n' "sync CPU" "$sync_cpu" "$sync_wall"
printf '%-34s %12s s  %s x sync  (goal <= 3)\n' "compaction CPU (level $LEVEL, deltas)" "$comp_cpu" "$(ratio "$comp_cpu" "$sync_cpu")"
[[ -n ${FLOOR:-} ]] ||
	printf '%-34s %12s s  %s x sync\n' "compaction CPU before (zstd -19)" "$floor_cpu" "$(ratio "$floor_cpu" "$sync_cpu")"
printf '%-34s %5s ids  %8s ms mean  %8s ms/MB  (%s failed)\n' "cold executable, deltas" "$nd" "$mean_d" "$permb_d" "$bad_d"
printf '%-34s %5s ids  %8s ms mean  %8s ms/MB  (%s failed)\n' "cold executable, whole blobs" "$nw" "$mean_w" "$permb_w" "$bad_w"
printf '%-34s %14s  (goal <= 2)\n' "  delta / whole, per MB" "$(ratio "$permb_d" "$permb_w")"
