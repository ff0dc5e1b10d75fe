# bench/lib.sh: helpers shared by compare.sh and serve.sh (sourced).

PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3 || true)}

# free_port: a TCP port on 127.0.0.1 nobody listens on.
free_port() {
	if [[ -n $PYTHON ]]; then
		"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
	else
		local p
		for p in $(seq 18000 18999); do
			if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
				echo "$p"
				return
			fi
		done
	fi
}

# ratio A B: A/B to two decimals, n/a when either is missing or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# scan_state METRICSFILE: from one debuginfod /metrics answer, "TRAV
# TRAVBUSY QUEUED DONE PENDING BUSY RPMS" (see README, "When is debuginfod
# done?"), in one awk so that polls stay cheap on a busy machine.
scan_state() {
	awk '
		function v(k) { return (k in m) ? m[k] : 0 }
		{ m[substr($0, 1, length($0) - length($NF) - 1)] = $NF + 0 }
		END {
			print v("thread_work_total{role=\"traverse\"}"), v("thread_busy{role=\"traverse\"}"),
				v("traversed_total{type=\"file\"}"), v("thread_work_total{role=\"scan\"}"),
				v("thread_work_pending{role=\"scan\"}"), v("thread_busy{role=\"scan\"}"),
				v("scanned_files_total{source=\".rpm archive\"}")
		}' "$1"
}

# scan_settled TRAV TRAVBUSY QUEUED DONE PENDING BUSY: a traversal has
# finished and every file it queued has been scanned.
scan_settled() {
	[[ $1 -ge 1 && $2 -eq 0 && $3 -gt 0 && $4 -eq $3 && $5 -eq 0 && $6 -eq 0 ]]
}
