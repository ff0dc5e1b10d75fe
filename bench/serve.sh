#!/usr/bin/env bash
# serve.sh [CORPUSDIR] [RETRACED_BIN]
#
# Serving performance of `retraced serve` (the issue "resolver performance"),
# measured in one run on loopback with wrk and curl, against elfutils
# debuginfod serving the same RPMs:
#
#  1. scale: JSON lookups GET /api/v1/buildid/{id} on a synthetic index of
#     10,000 and of SCALE_N (1,000,000) build-ids written by bench/fillindex:
#     wrk -t2 -c32 -d15s, random ids from DATA/ids.txt; req/s, p50, p99,
#     non-2xx, the server's peak RSS (VmRSS sampled every 0.5 s) and VmHWM.
#     (CPU% = the server's CPU time over the run, 200 = both cores.)
#     Both servers run side by side and are measured alternately (A B B A
#     for SCALE_ROUNDS=2) so drift in the machine's load hits both.
#  2. debuginfod protocol, retraced vs debuginfod, on CORPUSDIR (repacked
#     Debian packages, no separate debuginfo: /buildid/ID/executable) and on
#     a copy of fixtures/repo (with -debuginfo packages: /buildid/ID/debuginfo).
#     The ids are those debuginfod indexed (its sqlite db) that both servers
#     answer 200.
#       cold: every id once, two curl workers (one connection each, ids
#             split round-robin), timing the whole batch; each server
#             restarted just before with its caches empty (retraced:
#             DATA/blobs/plain removed; debuginfod: db kept, its fdcache
#             directory emptied). COLD_ROUNDS rounds, the order of the two
#             servers alternating; req/s = all requests / all busy time,
#             busy time being the slower worker's sum of curl's time_total.
#       warm: wrk -t2 -c16 -d15s, random ids from the same list, after a
#             warm-up (every id once, then wrk for WARMUP seconds).
#  3. one table and a verdict per goal:
#       JSON lookups >= 30,000 req/s with p99 < 10 ms (wrk on the same 2 cores)
#       debuginfo cold >= 3x debuginfod's req/s, warm > 1x
#       RSS <= 300 MB at 1M build-ids; 1M latency within 1.5x of 10k (p50, p99)
#
# CORPUSDIR defaults to /var/tmp/retraced-corpus-small (bench/mkcorpus.sh).
# RETRACED_BIN defaults to a fresh `go build ./cmd/retraced` in the temp dir.
#
# Environment:
#   DURATION=S      wrk seconds per measured run (15)
#   WARMUP=S        wrk warm-up seconds before measuring (3)
#   SCALE_N=N       the large index (1000000); SMALL_N (10000)
#   SCALE_CACHE=DIR where the large index is kept between runs, as
#                   DIR/nN (default /var/tmp/retraced-scale-1m); FRESH=1 refills
#   SCALE_ROUNDS=N  measured runs per index size (2)
#   COLD_ROUNDS=N   cold rounds (5)
#   WORKDIR=DIR     temp dirs (default /var/tmp); KEEP=1 keeps them
#   NOSCALE=1 / NODEBUGINFOD=1  skip a part
#
# Needs wrk, curl, jq, debuginfod, sqlite3, awk, go (for fillindex).
# Every loop is bounded; servers listen on 127.0.0.1 only and are stopped
# on exit.
set -euo pipefail

if [[ $# -gt 2 ]]; then
	echo "usage: $0 [CORPUSDIR] [RETRACED_BIN]" >&2
	exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CORPUS=${1:-/var/tmp/retraced-corpus-small}
BIN=${2:-}
FIXREPO=$ROOT/fixtures/repo
LUA=$HERE/lua/ids.lua
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
SMALL_N=${SMALL_N:-10000}
SCALE_N=${SCALE_N:-1000000}
# -v2: written with the v1/pr/ repos keys and flattened after the load.
SCALE_CACHE=${SCALE_CACHE:-/var/tmp/retraced-scale-1m-v2}
SCALE_ROUNDS=${SCALE_ROUNDS:-2}
COLD_ROUNDS=${COLD_ROUNDS:-5}
WORKDIR=${WORKDIR:-/var/tmp}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

log() { printf 'serve.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}
for tool in wrk curl jq awk timeout; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk jq curl)"
done
if [[ ${NODEBUGINFOD:-0} != 1 ]]; then
	for tool in debuginfod sqlite3; do
		command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y debuginfod sqlite3)"
	done
	CORPUS=$(cd "$CORPUS" && pwd) || die "no corpus $CORPUS"
	[[ -d $FIXREPO/repodata ]] || die "no fixture repo at $FIXREPO"
fi

T_START=$(date +%s)
TMP=$(mktemp -d "$WORKDIR/retraced-serve.XXXXXX")
PIDS=() # servers and samplers this script started

# forget PID: drop it from PIDS once it has been waited for (so cleanup
# never signals a recycled pid).
forget() {
	local keep=() p
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}
stop_pid() { # PID: TERM, up to 15 s, then KILL
	local pid=$1 i
	forget "$pid"
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	PIDS=()
	if [[ ${KEEP:-0} == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }
calc() { awk "BEGIN { $1 }"; } # calc 'printf "%.2f", 1/3'

# ------------------------------------------------------------------ binary
if [[ -z $BIN ]]; then
	log "building retraced into $TMP/retraced"
	(cd "$ROOT" && timeout 600 go build -o "$TMP/retraced" ./cmd/retraced) || die "go build failed"
	BIN=$TMP/retraced
fi
[[ -x $BIN ]] || die "retraced binary $BIN not found"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# ------------------------------------------------------- retraced servers
# start_retraced DATA LOG: serve on a free loopback port; sets R_PID and
# R_URL. Ready when /healthz answers and serve's start-up sync of every
# configured source has logged its result (so it does not run under wrk).
# Each start logs to its own file, LOG.N.
NSTART=0
start_retraced() {
	local data=$1 logf=$2.$((++NSTART)) i nsrc
	rm -f "$data/server.json"
	"$BIN" --data "$data" serve --listen 127.0.0.1:0 >>"$logf" 2>&1 &
	R_PID=$!
	PIDS+=("$R_PID")
	R_URL=
	for ((i = 0; i < 600; i++)); do
		kill -0 "$R_PID" 2>/dev/null || {
			tail -20 "$logf" >&2
			die "retraced serve exited early"
		}
		if [[ -s $data/server.json ]]; then
			R_URL=$(jq -r '.url // empty' "$data/server.json" 2>/dev/null || true)
			if [[ -n $R_URL ]] && curl -sf --max-time 2 "$R_URL/healthz" >/dev/null 2>&1; then
				break
			fi
		fi
		R_URL=
		sleep 0.1
	done
	[[ -n $R_URL ]] || die "retraced serve not healthy after 60 s (log $logf)"
	nsrc=$(curl -sf --max-time 5 "$R_URL/api/v1/mirrors" | jq length) || nsrc=1
	for ((i = 0; i < 1200; i++)); do
		[[ $(grep -c 'msg=sync ' "$logf" || true) -ge $nsrc ]] && break
		sleep 0.1
	done
}

# rss_sampler PID OUT SECS: VmRSS (kB) every 0.5 s, at most SECS seconds.
rss_sampler() {
	local pid=$1 out=$2 n=$(($3 * 2))
	while ((n-- > 0)); do
		awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" >>"$out" 2>/dev/null || break
		sleep 0.5
	done
}
hwm_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo n/a; }
max_mb() { awk '$1 > m { m = $1 } END { if (NR) printf "%.0f", m / 1024; else print "n/a" }' "$1"; }

# run_wrk OUT URL THREADS CONNS SECS IDSFILE PATHFMT [PID...]: one wrk run;
# samples the RSS of each PID into OUT.rss.PID.
run_wrk() {
	local out=$1 url=$2 t=$3 c=$4 s=$5 ids=$6 fmt=$7
	shift 7
	local spids=() pid
	for pid in "$@"; do
		: >"$out.rss.$pid"
		rss_sampler "$pid" "$out.rss.$pid" $((s + 30)) &
		spids+=("$!")
		PIDS+=("$!")
	done
	load1 >"$out.load"
	for pid in "$@"; do
		cpu_ticks "$pid" >"$out.cpu0.$pid"
	done
	timeout $((s + 60)) wrk -t"$t" -c"$c" -d"${s}s" --timeout 10s --latency -s "$LUA" "$url" -- "$ids" "$fmt" >"$out" 2>&1 ||
		log "wrk exit $? ($out): $(tail -3 "$out" | tr '\n' ' ')"
	for pid in "$@"; do
		awk -v a="$(cat "$out.cpu0.$pid")" -v b="$(cpu_ticks "$pid")" -v hz="$(getconf CLK_TCK)" -v s="$s" \
			'BEGIN { printf "%.0f", (b - a) / hz / s * 100 }' >"$out.cpu.$pid"
	done
	for pid in "${spids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		forget "$pid"
	done
}
# cpu_ticks PID: user+system clock ticks so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# wv OUT KEY: a value from the WRK line ids.lua prints.
wv() { awk -v k="$2" '/^WRK / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v = kv[2] } } END { print (v == "" ? "n/a" : v) }' "$1"; }
wrk_rps() { awk -v n="$(wv "$1" requests)" -v d="$(wv "$1" duration_us)" 'BEGIN { if (d + 0 > 0) printf "%.0f", n / (d / 1e6); else print "n/a" }'; }
wrk_mbs() { awk -v b="$(wv "$1" bytes)" -v d="$(wv "$1" duration_us)" 'BEGIN { if (d + 0 > 0) printf "%.1f", b / d; else print "n/a" }'; }
wrk_ms() { awk -v u="$(wv "$1" "$2")" 'BEGIN { if (u == "n/a") print u; else printf "%.2f", u / 1000 }'; }
wrk_sockerr() { echo $(($(wv "$1" connect) + $(wv "$1" read) + $(wv "$1" write) + $(wv "$1" timeout))); }

ROWS=$TMP/rows # the table, built as we go
: >"$ROWS"
row() { printf '%-34s %-10s %9s %8s %8s %8s %7s %6s %7s %7s %5s\n' "$@" >>"$ROWS"; }
hdr() { row "$@"; }
section() { printf '\n%s\n' "$*" >>"$ROWS"; }

LOAD_BEGIN=$(loadavg)
log "load average at start: $LOAD_BEGIN"

# ================================================================== 1. scale
declare -A S_RPS S_P50 S_P99 S_NON2XX S_RSS S_HWM S_SOCK S_CPU
if [[ ${NOSCALE:-0} != 1 ]]; then
	# Data dirs: the small one is written afresh, the large one is cached.
	D_SMALL=$TMP/scale-$SMALL_N
	log "fillindex -n $SMALL_N"
	(cd "$ROOT" && timeout 600 go run ./bench/fillindex -data "$D_SMALL" -n "$SMALL_N") >"$TMP/fill-small.log" 2>&1 ||
		die "fillindex -n $SMALL_N failed: $(tail -3 "$TMP/fill-small.log")"
	D_BIG=$SCALE_CACHE/n$SCALE_N
	if [[ ${FRESH:-0} == 1 || ! -f $D_BIG/.fillindex-n || $(cat "$D_BIG/.fillindex-n" 2>/dev/null) != "$SCALE_N" ]]; then
		rm -rf "$D_BIG"
		mkdir -p "$SCALE_CACHE"
		log "fillindex -n $SCALE_N into $D_BIG (cached for later runs; takes a minute or two)"
		(cd "$ROOT" && timeout 1800 go run ./bench/fillindex -data "$D_BIG" -n "$SCALE_N") >"$TMP/fill-big.log" 2>&1 || {
			rm -rf "$D_BIG"
			die "fillindex -n $SCALE_N failed: $(tail -3 "$TMP/fill-big.log")"
		}
		echo "$SCALE_N" >"$D_BIG/.fillindex-n"
	else
		log "reusing $D_BIG (FRESH=1 to refill)"
	fi
	start_retraced "$D_SMALL" "$TMP/serve-small.log"
	PID_SMALL=$R_PID URL_SMALL=$R_URL
	start_retraced "$D_BIG" "$TMP/serve-big.log"
	PID_BIG=$R_PID URL_BIG=$R_URL
	for sz in small big; do
		if [[ $sz == small ]]; then u=$URL_SMALL d=$D_SMALL; else u=$URL_BIG d=$D_BIG; fi
		id=$(head -1 "$d/ids.txt")
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$u/api/v1/buildid/$id")
		[[ $code == 200 ]] || die "scale $sz: GET /api/v1/buildid/$id answered $code"
		log "scale $sz: warm-up ${WARMUP}s"
		run_wrk "$TMP/wrk-scale-$sz-warmup" "$u" 2 32 "$WARMUP" "$d/ids.txt" "/api/v1/buildid/%s"
	done
	# A B B A ...: the order alternates every round.
	order=()
	for ((r = 1; r <= SCALE_ROUNDS; r++)); do
		if ((r % 2)); then order+=("small:$r" "big:$r"); else order+=("big:$r" "small:$r"); fi
	done
	for item in "${order[@]}"; do
		sz=${item%%:*} r=${item##*:}
		if [[ $sz == small ]]; then u=$URL_SMALL d=$D_SMALL p=$PID_SMALL; else u=$URL_BIG d=$D_BIG p=$PID_BIG; fi
		log "scale $sz round $r: wrk -t2 -c32 -d${DURATION}s (load $(loadavg))"
		run_wrk "$TMP/wrk-scale-$sz-$r" "$u" 2 32 "$DURATION" "$d/ids.txt" "/api/v1/buildid/%s" "$p"
	done
	S_HWM[small]=$(hwm_mb "$PID_SMALL")
	S_HWM[big]=$(hwm_mb "$PID_BIG")
	stop_pid "$PID_SMALL"
	stop_pid "$PID_BIG"

	section "1. JSON lookups GET /api/v1/buildid/{id}: wrk -t2 -c32 -d${DURATION}s --latency, random ids (retraced only; wrk shares the 2 cores)"
	hdr "run" "index" "req/s" "p50 ms" "p99 ms" "non-2xx" "sockerr" "load1" "RSS MB" "HWM MB" "CPU%"
	for sz in small big; do
		if [[ $sz == small ]]; then n=$SMALL_N p=$PID_SMALL; else n=$SCALE_N p=$PID_BIG; fi
		sum_rps=0 sum_p50=0 sum_p99=0 sum_cpu=0 non2xx=0 sock=0 cat_rss=$TMP/rss-all-$sz
		: >"$cat_rss"
		for ((r = 1; r <= SCALE_ROUNDS; r++)); do
			f=$TMP/wrk-scale-$sz-$r
			[[ -n $(grep '^WRK ' "$f" || true) ]] || die "wrk run $f printed no result: $(tail -5 "$f")"
			rps=$(wrk_rps "$f") p50=$(wrk_ms "$f" p50_us) p99=$(wrk_ms "$f" p99_us)
			n2=$(wv "$f" non2xx) se=$(wrk_sockerr "$f")
			cat "$f.rss.$p" >>"$cat_rss"
			row "json $sz round $r" "$n" "$rps" "$p50" "$p99" "$n2" "$se" "$(cat "$f.load")" "$(max_mb "$f.rss.$p")" "" "$(cat "$f.cpu.$p")"
			sum_rps=$(calc "print $sum_rps + $rps") sum_p50=$(calc "print $sum_p50 + $p50") sum_p99=$(calc "print $sum_p99 + $p99")
			non2xx=$((non2xx + n2)) sock=$((sock + se)) sum_cpu=$((sum_cpu + $(cat "$f.cpu.$p")))
		done
		S_RPS[$sz]=$(calc "printf \"%.0f\", $sum_rps / $SCALE_ROUNDS")
		S_P50[$sz]=$(calc "printf \"%.2f\", $sum_p50 / $SCALE_ROUNDS")
		S_P99[$sz]=$(calc "printf \"%.2f\", $sum_p99 / $SCALE_ROUNDS")
		S_NON2XX[$sz]=$non2xx S_SOCK[$sz]=$sock S_CPU[$sz]=$((sum_cpu / SCALE_ROUNDS))
		S_RSS[$sz]=$(max_mb "$cat_rss")
		row "json $sz mean of $SCALE_ROUNDS" "$n" "${S_RPS[$sz]}" "${S_P50[$sz]}" "${S_P99[$sz]}" "$non2xx" "$sock" "" "${S_RSS[$sz]}" "${S_HWM[$sz]}" "${S_CPU[$sz]}"
	done
	row "ratio $SCALE_N / $SMALL_N" "" "$(ratio "${S_RPS[big]}" "${S_RPS[small]}")" "$(ratio "${S_P50[big]}" "${S_P50[small]}")" \
		"$(ratio "${S_P99[big]}" "${S_P99[small]}")" "" "" "" "$(ratio "${S_RSS[big]}" "${S_RSS[small]}")" "" ""
fi

# ========================================================= 2. debuginfod protocol
declare -A IDNOTE WPID C_R C_D W_R W_D C_RM C_DM W_RM W_DM NIDS KIND
if [[ ${NODEBUGINFOD:-0} != 1 ]]; then
	NRPM_CORPUS=$(find "$CORPUS" -name '*.rpm' -type f | wc -l)
	[[ $NRPM_CORPUS -gt 0 ]] || die "no .rpm files under $CORPUS"
	# A private copy of the fixture repo: both servers read the same bytes
	# even if someone rebuilds fixtures/ meanwhile.
	cp -a "$FIXREPO" "$TMP/fixtures-repo"
	FIX=$TMP/fixtures-repo
	NRPM=$((NRPM_CORPUS + $(find "$FIX" -name '*.rpm' -type f | wc -l)))
	# Page cache warm for both.
	find "$CORPUS" "$FIX" -name '*.rpm' -type f -print0 | xargs -0 cat >/dev/null

	DDIR=$TMP/debuginfod
	mkdir -p "$DDIR/fdcache"
	DPORT=$(free_port)
	D_URL=http://127.0.0.1:$DPORT
	D_PID=
	# start_debuginfod FIRST: -R both trees; db kept across restarts; its
	# fdcache (extracted files, under TMPDIR) emptied. Ready when the scan
	# is complete, judged from /metrics as compare.sh does; on the first
	# start every RPM must have been scanned, on restarts (db already
	# populated, files unchanged) nothing is rescanned.
	start_debuginfod() {
		local first=$1 i trav travbusy queued done_ pending busy rpms
		rm -rf "$DDIR/fdcache"
		mkdir -p "$DDIR/fdcache"
		(cd "$DDIR" && TMPDIR=$DDIR/fdcache exec debuginfod -R "$CORPUS" -R "$FIX" -d "$DDIR/db.sqlite" \
			-p "$DPORT" -t 0 -g 0 >>"$DDIR/log" 2>&1) &
		D_PID=$!
		PIDS+=("$D_PID")
		for ((i = 0; i < 6000; i++)); do # 0.1 s polls: 10 minutes at most
			kill -0 "$D_PID" 2>/dev/null || {
				tail -20 "$DDIR/log" >&2
				die "debuginfod exited early"
			}
			if curl -sf --max-time 5 "$D_URL/metrics" >"$DDIR/metrics" 2>/dev/null; then
				read -r trav travbusy queued done_ pending busy rpms <<<"$(scan_state "$DDIR/metrics")"
				if scan_settled "$trav" "$travbusy" "$queued" "$done_" "$pending" "$busy" &&
					[[ $first != first || $rpms -ge $NRPM ]]; then
					return 0
				fi
			fi
			sleep 0.1
		done
		die "debuginfod scan not complete after 10 minutes"
	}
	stop_debuginfod() {
		stop_pid "$D_PID"
		rm -rf "$DDIR/fdcache"
	}

	# retraced: a data dir with the same two trees as yum sources.
	RDATA=$TMP/retraced-data
	"$BIN" --data "$RDATA" mirror add corpus "$CORPUS" --kind yum >"$TMP/add.log" 2>&1 || die "mirror add: $(cat "$TMP/add.log")"
	"$BIN" --data "$RDATA" mirror add fixtures "$FIX" --kind yum >>"$TMP/add.log" 2>&1 || die "mirror add: $(cat "$TMP/add.log")"
	log "retraced mirror sync and debuginfod scan of $NRPM RPMs (in parallel; not timed here, see compare.sh)"
	(timeout 1800 "$BIN" --data "$RDATA" mirror sync >"$TMP/sync.log" 2>&1; echo $? >"$TMP/sync.rc") &
	SYNC_PID=$!
	PIDS+=("$SYNC_PID")
	start_debuginfod first
	wait "$SYNC_PID" || true
	forget "$SYNC_PID"
	[[ $(cat "$TMP/sync.rc") == 0 ]] || log "WARNING: retraced mirror sync exit $(cat "$TMP/sync.rc"): $(tail -3 "$TMP/sync.log" | tr '\n' ' ')"
	start_retraced "$RDATA" "$TMP/serve-rpms.log"

	# Candidate ids from debuginfod's db: executables in CORPUSDIR, debuginfo
	# in the fixture repo.
	pfx=$(sqlite3 "$DDIR/db.sqlite" .tables | tr -s ' ' '\n' | sed -n 's/_r_de$//p' | head -1)
	[[ -n $pfx ]] || die "no _r_de table in debuginfod's db"
	q() { # q KINDCOLUMN DIR
		sqlite3 "$DDIR/db.sqlite" "select distinct b.hex from ${pfx}_r_de r
			join ${pfx}_buildids b on r.buildid = b.id join ${pfx}_files f on r.file = f.id
			where r.$1 = 1 and substr(f.name, 1, length('$2/')) = '$2/'" | sort -u
	}
	q executable_p "$CORPUS" >"$TMP/cand.corpus"
	q debuginfo_p "$FIX" >"$TMP/cand.fixtures"
	# Separate debug files in CORPUSDIR too, when it has any: real sizes,
	# inside large payloads, unlike the fixtures' few small ones.
	q debuginfo_p "$CORPUS" >"$TMP/cand.corpusdbg"
	SETS="corpus fixtures"
	[[ -s $TMP/cand.corpusdbg ]] && SETS+=" corpusdbg"
	# curl_batch OUT BASEURL KIND IDSFILE: GET BASE/buildid/ID/KIND for every
	# id on one connection; OUT gets "code bytes seconds url" lines.
	curl_batch() {
		local out=$1 base=$2 kind=$3 ids=$4 cfg=$1.cfg
		awk -v b="$base" -v k="$kind" '{ printf "url = \"%s/buildid/%s/%s\"\noutput = \"/dev/null\"\n", b, $1, k }' "$ids" >"$cfg"
		if [[ -s $cfg ]]; then
			timeout 600 curl -s --max-time 120 -K "$cfg" -w '%{http_code} %{size_download} %{time_total} %{url_effective}\n' >"$out" 2>/dev/null || true
		else
			: >"$out"
		fi
	}
	KIND[corpus]=executable
	KIND[fixtures]=debuginfo
	KIND[corpusdbg]=debuginfo
	for set in $SETS; do
		curl_batch "$TMP/check.$set.r" "$R_URL" "${KIND[$set]}" "$TMP/cand.$set"
		curl_batch "$TMP/check.$set.d" "$D_URL" "${KIND[$set]}" "$TMP/cand.$set"
		ok() { awk '$1 == 200 { n = split($4, p, "/"); print p[n - 1] }' "$1" | sort -u; }
		comm -12 <(ok "$TMP/check.$set.r") <(ok "$TMP/check.$set.d") >"$TMP/ids.$set"
		NIDS[$set]=$(wc -l <"$TMP/ids.$set")
		IDNOTE[$set]="${NIDS[$set]} of the $(wc -l <"$TMP/cand.$set") ${KIND[$set]} ids debuginfod indexed answered 200 by both (retraced $(ok "$TMP/check.$set.r" | wc -l), debuginfod $(ok "$TMP/check.$set.d" | wc -l))"
		miss=$(comm -23 "$TMP/cand.$set" <(ok "$TMP/check.$set.r") | head -5 | paste -sd' ')
		[[ -z $miss ]] || IDNOTE[$set]+="; not 200 from retraced: $miss"
		log "$set: ${IDNOTE[$set]}"
		[[ ${NIDS[$set]} -gt 0 ]] || die "$set: no id both servers answer"
	done
	stop_pid "$R_PID"
	stop_debuginfod

	# --- cold: each round restarts a server with empty caches, then both
	# sets, each id once, two curl workers.
	cold_batch() { # cold_batch NAME BASEURL SET ROUND
		local name=$1 base=$2 set=$3 r=$4 t0 t1 w
		for w in 0 1; do
			awk -v w="$w" 'NR % 2 == w' "$TMP/ids.$set" >"$TMP/cold.$set.ids$w"
		done
		t0=$(now)
		curl_batch "$TMP/cold.$name.$set.$r.0" "$base" "${KIND[$set]}" "$TMP/cold.$set.ids0" &
		local p0=$!
		curl_batch "$TMP/cold.$name.$set.$r.1" "$base" "${KIND[$set]}" "$TMP/cold.$set.ids1" &
		local p1=$!
		wait "$p0" "$p1" || true
		t1=$(now)
		# "requests non200 bytes busy wall": busy is the longer worker's sum
		# of curl's time_total (the batch time without curl's own start-up,
		# which is most of the wall time for a dozen small files).
		awk -v t0="$t0" -v t1="$t1" '
			{ n++; if ($1 != 200) bad++; b += $2; w[FILENAME] += $3 }
			END { for (f in w) if (w[f] > busy) busy = w[f]; printf "%d %d %d %.4f %.4f\n", n, bad, b, busy, t1 - t0 }' \
			"$TMP/cold.$name.$set.$r.0" "$TMP/cold.$name.$set.$r.1" >"$TMP/cold.$name.$set.$r"
	}
	for ((r = 1; r <= COLD_ROUNDS; r++)); do
		if ((r % 2)); then servers="retraced debuginfod"; else servers="debuginfod retraced"; fi
		for srv in $servers; do
			log "cold round $r: $srv (load $(loadavg))"
			if [[ $srv == retraced ]]; then
				rm -rf "$RDATA/blobs/plain"
				start_retraced "$RDATA" "$TMP/serve-rpms.log"
				for set in $SETS; do
					cold_batch retraced "$R_URL" "$set" "$r"
				done
				stop_pid "$R_PID"
			else
				start_debuginfod restart
				for set in $SETS; do
					cold_batch debuginfod "$D_URL" "$set" "$r"
				done
				stop_debuginfod
			fi
		done
	done
	# pooled NAME SET: over all rounds, "req/s MB/s non200 busy_s wall_s
	# per-round-req/s" (req/s = all requests / all busy seconds).
	pooled() {
		for ((r = 1; r <= COLD_ROUNDS; r++)); do
			cat "$TMP/cold.$1.$2.$r"
		done | awk '{ n += $1; bad += $2; b += $3; busy += $4; wall += $5
				rr = rr (NR > 1 ? "/" : "") sprintf("%.0f", ($4 > 0 ? $1 / $4 : 0)) }
			END { if (busy <= 0) busy = 1e-9; printf "%.1f %.2f %d %.3f %.3f %s\n", n / busy, b / busy / 1e6, bad, busy, wall, rr }'
	}

	# --- warm: both servers up, warm-up, then alternating measured runs.
	start_debuginfod restart
	start_retraced "$RDATA" "$TMP/serve-rpms.log"
	for set in $SETS; do
		fmt="/buildid/%s/${KIND[$set]}"
		log "warm-up $set: every id once, then wrk ${WARMUP}s, on each server"
		curl_batch "$TMP/warm-pass.$set.r" "$R_URL" "${KIND[$set]}" "$TMP/ids.$set"
		curl_batch "$TMP/warm-pass.$set.d" "$D_URL" "${KIND[$set]}" "$TMP/ids.$set"
		run_wrk "$TMP/wrk-warm-$set-r-warmup" "$R_URL" 2 16 "$WARMUP" "$TMP/ids.$set" "$fmt"
		run_wrk "$TMP/wrk-warm-$set-d-warmup" "$D_URL" 2 16 "$WARMUP" "$TMP/ids.$set" "$fmt"
	done
	for set in $SETS; do
		fmt="/buildid/%s/${KIND[$set]}"
		if [[ $set == corpus ]]; then worder="r d"; else worder="d r"; fi
		for s in $worder; do
			if [[ $s == r ]]; then u=$R_URL p=$R_PID; else u=$D_URL p=$D_PID; fi
			log "warm $set $s: wrk -t2 -c16 -d${DURATION}s (load $(loadavg))"
			run_wrk "$TMP/wrk-warm-$set-$s" "$u" 2 16 "$DURATION" "$TMP/ids.$set" "$fmt" "$p"
			WPID[$set.$s]=$p
		done
	done
	stop_pid "$R_PID"
	stop_debuginfod

	section "2. debuginfod protocol, same RPMs: $CORPUS ($NRPM_CORPUS RPMs, /buildid/ID/executable) and fixtures/repo (/buildid/ID/debuginfo)"
	printf '%s\n' "   cold: each id once, 2 curl workers, server restarted with empty caches; $COLD_ROUNDS rounds pooled: requests / busy seconds (last column: busy and wall seconds, req/s per round)" \
		"   warm: wrk -t2 -c16 -d${DURATION}s, random ids; p50/p99 from wrk; MB/s counts bodies (cold) or bodies+headers (warm)" \
		"   ids: corpus: ${IDNOTE[corpus]}" "   ids: fixtures: ${IDNOTE[fixtures]}" >>"$ROWS"
	[[ $SETS != *corpusdbg* ]] || echo "   ids: corpusdbg (debug files in the corpus): ${IDNOTE[corpusdbg]}" >>"$ROWS"
	hdr "run" "ids" "req/s" "MB/s" "p50 ms" "p99 ms" "non-200" "load1" "RSS MB" "" "CPU%"
	for set in $SETS; do
		for srv in retraced debuginfod; do
			read -r rps mbs bad busy wall all <<<"$(pooled "$srv" "$set")"
			if [[ $srv == retraced ]]; then C_R[$set]=$rps C_RM[$set]=$mbs; else C_D[$set]=$rps C_DM[$set]=$mbs; fi
			printf '%-34s %-10s %9s %8s %8s %8s %7s   %s\n' "cold ${KIND[$set]} $srv ($set)" "${NIDS[$set]}" "$rps" "$mbs" "" "" "$bad" \
				"busy ${busy}s wall ${wall}s; rounds $all" >>"$ROWS"
		done
		row "cold ${KIND[$set]} retraced/debuginfod ($set)" "" "$(ratio "${C_R[$set]}" "${C_D[$set]}")" "$(ratio "${C_RM[$set]}" "${C_DM[$set]}")" "" "" "" "" "" "" ""
		for s in r d; do
			f=$TMP/wrk-warm-$set-$s
			if [[ $s == r ]]; then srv=retraced p=${WPID[$set.r]}; else srv=debuginfod p=${WPID[$set.d]}; fi
			[[ -n $(grep '^WRK ' "$f" || true) ]] || die "wrk run $f printed no result: $(tail -5 "$f")"
			rps=$(wrk_rps "$f") mbs=$(wrk_mbs "$f")
			if [[ $s == r ]]; then W_R[$set]=$rps W_RM[$set]=$mbs; else W_D[$set]=$rps W_DM[$set]=$mbs; fi
			row "warm ${KIND[$set]} $srv ($set)" "${NIDS[$set]}" "$rps" "$mbs" "$(wrk_ms "$f" p50_us)" "$(wrk_ms "$f" p99_us)" \
				"$(($(wv "$f" non2xx) + $(wrk_sockerr "$f")))" "$(cat "$f.load")" "$(max_mb "$f.rss.$p")" "" "$(cat "$f.cpu.$p")"
		done
		row "warm ${KIND[$set]} retraced/debuginfod ($set)" "" "$(ratio "${W_R[$set]}" "${W_D[$set]}")" "$(ratio "${W_RM[$set]}" "${W_DM[$set]}")" "" "" "" "" "" "" ""
	done
fi

# ================================================================== 3. verdicts
T_END=$(date +%s)
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 >= b + 0) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 <= b + 0) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 < b + 0) }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 > b + 0) }'; }
mk() { if "$@"; then echo met; else echo "NOT MET"; fi; }
VERDICTS=()
if [[ ${NOSCALE:-0} != 1 ]]; then
	for sz in small big; do
		if [[ $sz == small ]]; then n=$SMALL_N; else n=$SCALE_N; fi
		v=met
		ge "${S_RPS[$sz]}" 30000 || v="NOT MET"
		lt "${S_P99[$sz]}" 10 || v="NOT MET"
		[[ ${S_NON2XX[$sz]} == 0 && ${S_SOCK[$sz]} == 0 ]] || v="NOT MET"
		pcs=$(awk -v r="${S_RPS[$sz]}" -v c="${S_CPU[$sz]}" 'BEGIN { if (c > 0) printf "%.0f", r / (c / 100); else print "n/a" }')
		VERDICTS+=("json lookups at $n ids >= 30000 req/s, p99 < 10 ms, all 200: $v (${S_RPS[$sz]} req/s, p99 ${S_P99[$sz]} ms, non-2xx ${S_NON2XX[$sz]}, socket errors ${S_SOCK[$sz]}; the server got ${S_CPU[$sz]}% CPU = $pcs req per server CPU-second)")
	done
	VERDICTS+=("RSS at $SCALE_N ids <= 300 MB: $(mk le "${S_RSS[big]}" 300) (peak VmRSS ${S_RSS[big]} MB under load, VmHWM ${S_HWM[big]} MB; at $SMALL_N: ${S_RSS[small]} MB)")
	r50=$(ratio "${S_P50[big]}" "${S_P50[small]}") r99=$(ratio "${S_P99[big]}" "${S_P99[small]}")
	v=met
	le "$r50" 1.5 || v="NOT MET"
	le "$r99" 1.5 || v="NOT MET"
	VERDICTS+=("latency at $SCALE_N within 1.5x of $SMALL_N: $v (p50 ${S_P50[big]}/${S_P50[small]} ms = ${r50}x, p99 ${S_P99[big]}/${S_P99[small]} ms = ${r99}x)")
fi
if [[ ${NODEBUGINFOD:-0} != 1 ]]; then
	for set in $SETS; do
		rc=$(ratio "${C_R[$set]}" "${C_D[$set]}") rw=$(ratio "${W_R[$set]}" "${W_D[$set]}")
		VERDICTS+=("${KIND[$set]} cold >= 3x debuginfod ($set, ${NIDS[$set]} ids): $(mk ge "$rc" 3) (${C_R[$set]} vs ${C_D[$set]} req/s = ${rc}x)")
		VERDICTS+=("${KIND[$set]} warm ahead of debuginfod ($set): $(mk gt "$rw" 1) (${W_R[$set]} vs ${W_D[$set]} req/s = ${rw}x)")
	done
fi

echo
echo "retraced serve benchmark — $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs; wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'); $(debuginfod --version 2>&1 | head -1)"
echo "binary $BIN; load average at start $LOAD_BEGIN, at end $(loadavg) (a shared machine: compare ratios, not absolutes); run took $((T_END - T_START)) s"
cat "$ROWS"
echo
echo "verdicts"
for v in "${VERDICTS[@]}"; do
	echo "  $v"
done
printf 'RESULT'
if [[ ${NOSCALE:-0} != 1 ]]; then
	printf ' json_rps_small=%s json_rps_big=%s p50_small_ms=%s p50_big_ms=%s p99_small_ms=%s p99_big_ms=%s rss_big_mb=%s' \
		"${S_RPS[small]}" "${S_RPS[big]}" "${S_P50[small]}" "${S_P50[big]}" "${S_P99[small]}" "${S_P99[big]}" "${S_RSS[big]}"
fi
if [[ ${NODEBUGINFOD:-0} != 1 ]]; then
	for set in $SETS; do
		printf ' cold_%s_%s_ratio=%s warm_%s_%s_ratio=%s' "$set" "${KIND[$set]}" "$(ratio "${C_R[$set]}" "${C_D[$set]}")" \
			"$set" "${KIND[$set]}" "$(ratio "${W_R[$set]}" "${W_D[$set]}")"
	done
fi
echo
