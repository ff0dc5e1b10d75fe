#!/usr/bin/env bash
# distributed.sh [CORPUSDIR] [RETRACED_BIN]
#
# retraced on shared storage (issue "Beyond one machine"), measured in one
# run on loopback against retraced on its local default, on the same
# corpus (bench/mkcorpus.sh; default /var/tmp/retraced-corpus-small):
#
#  1. ingest: `mirror sync` of CORPUSDIR into a local data directory
#     (Badger + blobs/) and into PostgreSQL + S3 (a fresh PostgreSQL
#     cluster of Debian's with its default settings, and versitygw, both
#     on loopback); the sync's own time (its summary line) and the
#     process's wall time, ratios; retraced's CPU seconds in each, and
#     the CPU PostgreSQL and versitygw spent during the shared sync (on
#     this machine they share its cores with retraced). Then both syncs
#     again with the servers on CPU 1 and each sync on CPU 0 (taskset):
#     the servers as if on a machine of their own, the node given the
#     same one core in both runs.
#  2. downloads: /buildid/ID/executable of every build-id the index holds,
#     from a local node and from a shared-storage node, cold (each node
#     restarted with its plain-copy cache, DATA/blobs/plain, emptied) and
#     warm (the same batch again); one curl process keeping 8 requests in
#     flight (curl -Z --parallel-max 8 -K list); ratio.
#  3. JSON lookups GET /api/v1/buildid/ID: wrk -t2 -c32 -d$DURATION on one
#     shared-storage node, then on two nodes at once (one wrk each, the two
#     running together); req/s, p99, aggregate ratio. All on the same 2
#     cores: two nodes share them with two wrk processes. Also one node
#     under paced load (bench/lua/ids.lua's WRK_DELAY_MS): the p99 at a
#     rate near the issue's 20,000 req/s rather than at saturation, where
#     a closed loop's p99 is the length of its own queue.
#  4. sizes for the README's estimate: rows, bytes and mean row size per
#     key kind in PostgreSQL (retraced_kv), the table's total size with
#     indexes, and the object count and bytes in the store.
#
# Environment: DURATION (wrk seconds, 10), WORKDIR (/var/tmp), KEEP=1,
# PROFILE=DIR (CPU profiles of the syncs and nodes, DIR/sync-*.prof and
# DIR/serve-*.prof, for go tool pprof).
# Needs: go, curl, wrk, jq, PostgreSQL (/usr/lib/postgresql/*/bin),
# versitygw (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS=${1:-/var/tmp/retraced-corpus-small}
BIN=${2:-}
DURATION=${DURATION:-10}
WORKDIR=${WORKDIR:-/var/tmp}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

log() { printf 'distributed.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}
for tool in curl wrk jq; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y curl wrk jq)"
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $PGBIN/pg_ctl ]] || die "PostgreSQL not found (apt-get install -y postgresql)"
GW=$(command -v versitygw || echo "$(go env GOPATH)/bin/versitygw")
[[ -x $GW ]] || die "versitygw not found (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"
[[ -f $CORPUS/repodata/repomd.xml ]] || die "$CORPUS is not a yum repository (bench/mkcorpus.sh $CORPUS 60)"

WORK=$(mktemp -d "$WORKDIR/retraced-distributed.XXXXXX")
chmod 755 "$WORK" # PostgreSQL may run as nobody
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[[ -n ${PGUSER_RUN:-} ]] && $PGUSER_RUN "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
	[[ ${KEEP:-} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z $BIN ]]; then
	BIN=$WORK/retraced
	(cd "$ROOT" && go build -o "$BIN" ./cmd/retraced) || die "go build failed"
fi

# PostgreSQL: a cluster of our own; as root it runs as nobody.
mkdir -p "$WORK/pg"
PGUSER_RUN=
PGUSER=$(id -un)
if [[ $(id -u) == 0 ]]; then
	chown nobody "$WORK/pg"
	PGUSER_RUN="runuser -u nobody --"
	PGUSER=nobody
fi
$PGUSER_RUN "$PGBIN/initdb" --auth=trust --username="$PGUSER" --encoding=UTF8 -D "$WORK/pg/data" >/dev/null
PGPORT=$(free_port)
$PGUSER_RUN "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w start \
	-o "-p $PGPORT -k $WORK/pg -c listen_addresses=127.0.0.1" >/dev/null
DSN="postgres://$PGUSER@127.0.0.1:$PGPORT/postgres?sslmode=disable"
psqlc() { "$PGBIN/psql" -X -A -t -q "$DSN" -c "$1"; }

# versitygw on a directory of its own, keeping connections alive between
# requests as S3 and every S3 server do (versitygw closes each by default,
# which made every request a new TCP connection).
S3PORT=$(free_port)
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3PORT AWS_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
mkdir -p "$WORK/s3"
"$GW" --access bench --secret bench-secret --region us-east-1 --port "127.0.0.1:$S3PORT" --keep-alive posix "$WORK/s3" >"$WORK/s3.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3PORT/" && break; sleep 0.1; done

shared_conf() { # NODE DATA
	printf 'data = "%s"\n[storage]\nblobs = "s3://retraced/bench"\nindex = "%s"\nnode = "%s"\n' "$2" "$DSN" "$1" >"$WORK/$1.toml"
	echo "$WORK/$1.toml"
}
LOCAL=$WORK/local
A=$(shared_conf node-a "$WORK/a")
B=$(shared_conf node-b "$WORK/b")

now() { date +%s.%N; }
# cpu PID...: CPU seconds (user + system) the processes and their
# waited-for children (PostgreSQL's exited backends) have used so far.
cpu() {
	local t=0 p
	for p in "$@"; do
		[[ -r /proc/$p/stat ]] && t=$((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat")))
	done
	awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
# servers_cpu: CPU seconds of PostgreSQL (the postmaster, its live
# children, and through the postmaster's counts the backends that have
# exited) and versitygw so far. Backends come and go with connections, so
# the set is taken anew at every call.
servers_cpu() {
	local pm
	pm=$(head -1 "$WORK/pg/data/postmaster.pid")
	cpu "$pm" $(pgrep -P "$pm") "${PIDS[0]}"
}
cpu_diff() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# 1. ingest
log "ingest into a local data directory"
"$BIN" --data "$LOCAL" mirror add corpus "$CORPUS" --kind yum >/dev/null
t0=$(now)
RETRACED_CPUPROFILE=${PROFILE:+$PROFILE/sync-local.prof} /usr/bin/time -f '%U %S' -o "$WORK/cpu-local.txt" "$BIN" --data "$LOCAL" mirror sync >"$WORK/sync-local.txt"
T_LOCAL=$(elapsed "$t0")
log "ingest into PostgreSQL + S3"
"$BIN" --config "$A" mirror add corpus "$CORPUS" --kind yum >/dev/null
c0=$(servers_cpu)
t0=$(now)
RETRACED_CPUPROFILE=${PROFILE:+$PROFILE/sync-shared.prof} /usr/bin/time -f '%U %S' -o "$WORK/cpu-shared.txt" "$BIN" --config "$A" mirror sync >"$WORK/sync-shared.txt"
T_SHARED=$(elapsed "$t0")
sleep 0.5 # the sync's backends exit and are counted in the postmaster's
C_SERVERS=$(cpu_diff "$c0" "$(servers_cpu)")
ucpu() { awk '{ printf "%.2f", $1 + $2 }' "$1"; }
C_LOCAL=$(ucpu "$WORK/cpu-local.txt")
C_SHARED=$(ucpu "$WORK/cpu-shared.txt")

# The sync's own time, from its summary line ("... in 851ms" or "in 1.52s"):
# the process's start (connections, bucket and table checks) aside.
took() { sed -n 's/.* in \([0-9.]*\)\(ms\|s\)$/\1 \2/p' "$1" | awk '{ printf "%.2f", ($2 == "ms") ? $1 / 1000 : $1 }'; }
S_LOCAL=$(took "$WORK/sync-local.txt")
S_SHARED=$(took "$WORK/sync-shared.txt")

# 1b. the same ingest with the servers on a core of their own: the syncs
# (local and shared) on CPU 0, PostgreSQL and versitygw on CPU 1, as if
# the servers had a machine of their own and the node the same CPU in both
# runs. Into a second database and prefix, so nothing is there yet.
S_LOCAL_PIN=n/a S_SHARED_PIN=n/a C_SERVERS_PIN=n/a
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
	log "ingest again, the servers on CPU 1 and each sync on CPU 0"
	pin_servers() { # CPUS
		local pm
		pm=$(head -1 "$WORK/pg/data/postmaster.pid")
		for p in $pm $(pgrep -P "$pm") "${PIDS[0]}"; do taskset -a -p -c "$1" "$p" >/dev/null 2>&1 || true; done
	}
	psqlc "CREATE DATABASE pinned" >/dev/null
	printf 'data = "%s"\n[storage]\nblobs = "s3://retraced/pinned"\nindex = "%s"\nnode = "pinned"\n' \
		"$WORK/pinned" "${DSN/\/postgres\?/\/pinned?}" >"$WORK/pinned.toml"
	"$BIN" --data "$WORK/local-pinned" mirror add corpus "$CORPUS" --kind yum >/dev/null
	"$BIN" --config "$WORK/pinned.toml" mirror add corpus "$CORPUS" --kind yum >/dev/null
	pin_servers 1
	taskset -c 0 "$BIN" --data "$WORK/local-pinned" mirror sync >"$WORK/sync-local-pinned.txt"
	c0=$(servers_cpu)
	taskset -c 0 "$BIN" --config "$WORK/pinned.toml" mirror sync >"$WORK/sync-shared-pinned.txt"
	sleep 0.5
	C_SERVERS_PIN=$(cpu_diff "$c0" "$(servers_cpu)")
	pin_servers 0-$(($(nproc) - 1))
	S_LOCAL_PIN=$(took "$WORK/sync-local-pinned.txt")
	S_SHARED_PIN=$(took "$WORK/sync-shared-pinned.txt")
fi

# The build-ids, straight from the shared index's keys (v1/b/<raw id>).
psqlc "SELECT encode(substring(k from 6), 'hex') FROM retraced_kv WHERE k >= 'v1/b/'::bytea AND k < 'v1/b0'::bytea" >"$WORK/ids.txt"
NIDS=$(wc -l <"$WORK/ids.txt")

start_node() { # NAME ARGS...: serve; sets URL_<NAME> and records the pid
	local name=$1
	shift
	RETRACED_CPUPROFILE=${PROFILE:+$PROFILE/serve-$name.prof} \
		"$BIN" "$@" serve --listen 127.0.0.1:0 >>"$WORK/$name.log" 2>&1 &
	local pid=$!
	PIDS+=($pid)
	eval "PID_$name=$pid"
}
wait_url() { # DATA
	for _ in $(seq 300); do
		if [[ -s $1/server.json ]]; then
			local u
			u=$(jq -r '.url // empty' "$1/server.json" 2>/dev/null || true)
			if [[ -n $u ]] && curl -sf -o /dev/null "$u/healthz"; then
				echo "$u"
				return
			fi
		fi
		sleep 0.1
	done
	die "server on $1 did not come up"
}
stop_node() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# 2. downloads, cold then warm, one curl process with 8 in flight.
fetch_all() { # URL -> "seconds ok"
	local url=$1 list=$WORK/curl.list
	: >"$list"
	while read -r id; do
		printf 'url = "%s/buildid/%s/executable"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' "$url" "$id" >>"$list"
	done <"$WORK/ids.txt"
	local t0 out
	t0=$(now)
	out=$(curl -s --no-progress-meter -Z --parallel-max 8 -K "$list")
	printf '%s %s\n' "$(elapsed "$t0")" "$(grep -c '^200$' <<<"$out" || true)"
}
measure_downloads() { # NAME DATA ARGS...
	local name=$1 data=$2
	shift 2
	rm -rf "$data/blobs/plain" "$data/server.json"
	start_node "$name" "$@"
	local url
	url=$(wait_url "$data")
	local pid c0 s0
	pid=$(eval echo "\$PID_$name")
	c0=$(cpu "$pid")
	s0=$(servers_cpu)
	read -r cold cold_ok < <(fetch_all "$url")
	local ccpu scpu
	ccpu=$(cpu_diff "$c0" "$(cpu "$pid")")
	scpu=$(cpu_diff "$s0" "$(servers_cpu)")
	read -r warm warm_ok < <(fetch_all "$url")
	eval "COLD_$name=$cold COLDOK_$name=$cold_ok WARM_$name=$warm WARMOK_$name=$warm_ok COLDCPU_$name=$ccpu COLDSRV_$name=$scpu"
	stop_node "$(eval echo "\$PID_$name")"
}
log "downloads of $NIDS build-ids, local node"
measure_downloads local "$LOCAL" --data "$LOCAL"
log "downloads of $NIDS build-ids, shared-storage node"
measure_downloads shared "$WORK/a" --config "$A"

# 3. lookups on one node, then on two at once.
run_wrk() { # OUT URL
	wrk -t2 -c32 -d"${DURATION}s" --latency -s "$HERE/lua/ids.lua" "$2" -- "$WORK/ids.txt" >"$1" 2>&1
}
wv() { awk -v k="$2" '/^WRK / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v = kv[2] } } END { print (v == "" ? "n/a" : v) }' "$1"; }
rps() { awk -v n="$(wv "$1" requests)" -v d="$(wv "$1" duration_us)" 'BEGIN { if (d + 0 > 0) printf "%.0f", n / (d / 1e6); else print "n/a" }'; }
p99() { awk -v u="$(wv "$1" p99_us)" 'BEGIN { if (u == "n/a") print u; else printf "%.2f", u / 1000 }'; }
rm -f "$WORK/a/server.json" "$WORK/b/server.json" "$LOCAL/server.json"
start_node l --data "$LOCAL"
URL_L=$(wait_url "$LOCAL")
log "lookups: local node (Badger), the reference"
wrk -t2 -c32 -d3s -s "$HERE/lua/ids.lua" "$URL_L" -- "$WORK/ids.txt" >/dev/null 2>&1
run_wrk "$WORK/wrk-local.txt" "$URL_L"
stop_node "$PID_l"
start_node a --config "$A"
URL_A=$(wait_url "$WORK/a")
start_node b --config "$B"
URL_B=$(wait_url "$WORK/b")
log "lookups: warm-up, then one node"
wrk -t2 -c32 -d3s -s "$HERE/lua/ids.lua" "$URL_A" -- "$WORK/ids.txt" >/dev/null 2>&1
wrk -t2 -c32 -d3s -s "$HERE/lua/ids.lua" "$URL_B" -- "$WORK/ids.txt" >/dev/null 2>&1
run_wrk "$WORK/wrk-one.txt" "$URL_A"
log "lookups: one node, paced"
WRK_DELAY_MS=1 wrk -t2 -c64 -d"${DURATION}s" --latency -s "$HERE/lua/ids.lua" "$URL_A" -- "$WORK/ids.txt" >"$WORK/wrk-paced.txt" 2>&1
log "lookups: two nodes at once"
run_wrk "$WORK/wrk-two-a.txt" "$URL_A" &
w1=$!
run_wrk "$WORK/wrk-two-b.txt" "$URL_B" &
w2=$!
wait "$w1" "$w2"
ONE=$(rps "$WORK/wrk-one.txt")
LOC=$(rps "$WORK/wrk-local.txt")
TWO=$(awk -v a="$(rps "$WORK/wrk-two-a.txt")" -v b="$(rps "$WORK/wrk-two-b.txt")" 'BEGIN { printf "%.0f", a + b }')

# 4. sizes
psqlc "ANALYZE retraced_kv" >/dev/null
SIZES=$(psqlc "SELECT kind, count(*), sum(octet_length(k) + octet_length(v)), round(avg(octet_length(k) + octet_length(v))) FROM (
	SELECT k, v, CASE
		WHEN k >= 'v1/b/'::bytea AND k < 'v1/b0'::bytea THEN 'b: build-id -> matches'
		WHEN k >= 'v1/p/'::bytea AND k < 'v1/p0'::bytea THEN 'p: package (JSON, its files)'
		WHEN k >= 'v1/pr/'::bytea AND k < 'v1/pr0'::bytea THEN 'pr: package -> sources'
		WHEN k >= 'v1/sp/'::bytea AND k < 'v1/sp0'::bytea THEN 'sp: membership'
		ELSE 'other: sources, state, counts' END AS kind FROM retraced_kv) r GROUP BY 1 ORDER BY 1")
TABLE=$(psqlc "SELECT pg_total_relation_size('retraced_kv')")
ROWS=$(psqlc "SELECT count(*) FROM retraced_kv")
OBJECTS=$(find "$WORK/s3/retraced" -type f -path '*/sha256/*' | wc -l)
OBJBYTES=$(find "$WORK/s3/retraced" -type f -path '*/sha256/*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
COUNTS=$("$BIN" --config "$A" mirror list --json 2>/dev/null | jq -r '.[0] | "\(.versions) packages"' || echo "n/a")

printf '\nretraced on shared storage (PostgreSQL + S3 on loopback) vs local, corpus %s (%s), %s build-ids\n\n' "$CORPUS" "$COUNTS" "$NIDS"
printf '%-44s %12s %12s %8s\n' "" local shared ratio
printf '%-44s %12s %12s %8s\n' "ingest: the sync's own time, s" "$S_LOCAL" "$S_SHARED" "$(ratio "$S_SHARED" "$S_LOCAL")"
printf '%-44s %12s %12s %8s\n' "ingest: mirror sync process, wall s" "$T_LOCAL" "$T_SHARED" "$(ratio "$T_SHARED" "$T_LOCAL")"
printf '%-44s %12s %12s %8s\n' "ingest: retraced's CPU, s" "$C_LOCAL" "$C_SHARED" "$(ratio "$C_SHARED" "$C_LOCAL")"
printf '%-44s %12s %12s\n' "ingest: PostgreSQL's and versitygw's CPU, s" "-" "$C_SERVERS"
printf '%-44s %12s %12s %8s\n' "ingest, servers on a core of their own, s" "$S_LOCAL_PIN" "$S_SHARED_PIN" "$(ratio "$S_SHARED_PIN" "$S_LOCAL_PIN")"
printf '%-44s %12s %12s\n' "  their CPU meanwhile, s" "-" "$C_SERVERS_PIN"
printf '%-44s %12s %12s %8s\n' "cold /buildid/ID/executable, all ids, s" "$COLD_local" "$COLD_shared" "$(ratio "$COLD_shared" "$COLD_local")"
printf '%-44s %12s %12s %8s\n' "cold: the node's CPU, s" "$COLDCPU_local" "$COLDCPU_shared" "$(ratio "$COLDCPU_shared" "$COLDCPU_local")"
printf '%-44s %12s %12s\n' "cold: PostgreSQL's and versitygw's CPU, s" "-" "$COLDSRV_shared"
printf '%-44s %12s %12s %8s\n' "warm /buildid/ID/executable, all ids, s" "$WARM_local" "$WARM_shared" "$(ratio "$WARM_shared" "$WARM_local")"
printf '%-44s %12s %12s\n' "answered 200 (cold / warm)" "$COLDOK_local/$WARMOK_local" "$COLDOK_shared/$WARMOK_shared"
printf '\nJSON lookups, PostgreSQL index (wrk -t2 -c32 -d%ss per node)\n' "$DURATION"
printf '  local node (Badger), reference: %s req/s, p99 %s ms\n' "$LOC" "$(p99 "$WORK/wrk-local.txt")"
printf '  one node:   %s req/s, p99 %s ms, non-2xx %s; %sx the local node\n' "$ONE" "$(p99 "$WORK/wrk-one.txt")" "$(wv "$WORK/wrk-one.txt" non2xx)" "$(ratio "$ONE" "$LOC")"
printf '  one node, paced (64 connections, each waiting 1 ms after an answer): %s req/s, p99 %s ms\n' "$(rps "$WORK/wrk-paced.txt")" "$(p99 "$WORK/wrk-paced.txt")"
printf '  two nodes:  %s req/s together (A %s, p99 %s ms; B %s, p99 %s ms); %sx one node\n' "$TWO" \
	"$(rps "$WORK/wrk-two-a.txt")" "$(p99 "$WORK/wrk-two-a.txt")" "$(rps "$WORK/wrk-two-b.txt")" "$(p99 "$WORK/wrk-two-b.txt")" "$(ratio "$TWO" "$ONE")"
printf '\nPostgreSQL: %s rows, retraced_kv with its index %s bytes\n' "$ROWS" "$TABLE"
printf '  %-32s %10s %14s %10s\n' kind rows bytes "bytes/row"
while IFS='|' read -r kind n bytes avg; do
	printf '  %-32s %10s %14s %10s\n' "$kind" "$n" "$bytes" "$avg"
done <<<"$SIZES"
printf 'object store: %s objects, %s bytes\n' "$OBJECTS" "$OBJBYTES"
