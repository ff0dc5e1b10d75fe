#!/usr/bin/env bash
# gpgcheck.sh CORPUS BINARY [RUNS]
#
# What signature checking costs a sync: copies the corpus that mkcorpus.sh
# made (CORPUS, a yum repository) to CORPUS-signed once, signs every RPM
# there with rpmsign and a throwaway RSA 3072 key made by gpg (public half
# in CORPUS-signed/key.asc), runs createrepo_c, and then syncs that same
# signed repository into fresh data directories RUNS times each way
# (default 3), alternating: with gpgcheck (`--gpg-key key.asc`) and
# without (`--no-gpgcheck`). Prints each run's wall and CPU seconds and the
# medians.
#
#	bench/gpgcheck.sh /var/tmp/retraced-corpus-small /tmp/retraced 3
set -euo pipefail

CORPUS=${1:?usage: gpgcheck.sh CORPUS BINARY [RUNS]}
BIN=${2:?usage: gpgcheck.sh CORPUS BINARY [RUNS]}
RUNS=${3:-3}
SIGNED=${CORPUS%/}-signed

if [ ! -f "$SIGNED/key.asc" ]; then
	echo "gpgcheck.sh: signing a copy of $CORPUS into $SIGNED" >&2
	rm -rf "$SIGNED"
	mkdir -p "$SIGNED"
	cp "$CORPUS"/*.rpm "$SIGNED/"
	GNUPGHOME=$(mktemp -d)
	export GNUPGHOME
	trap 'gpgconf --homedir "$GNUPGHOME" --kill all 2>/dev/null || true; rm -rf "$GNUPGHOME"' EXIT
	gpg --batch --quiet --passphrase '' --quick-gen-key 'retraced bench <bench@retraced.invalid>' rsa3072 sign never
	gpg --batch --armor --export bench@retraced.invalid >"$SIGNED/key.asc.tmp"
	rpmsign --define "__gpg $(command -v gpg)" --define "_gpg_path $GNUPGHOME" \
		--define "_gpg_name bench@retraced.invalid" --addsign "$SIGNED"/*.rpm >/dev/null 2>&1
	createrepo_c --quiet --workers 2 --no-database "$SIGNED" >/dev/null
	mv "$SIGNED/key.asc.tmp" "$SIGNED/key.asc"
fi
echo "corpus: $(ls "$SIGNED"/*.rpm | wc -l) RPMs, $(du -cm "$SIGNED"/*.rpm | tail -1 | cut -f1) MiB, signed; binary $BIN" >&2

# one MODE: a fresh data directory, add, sync; prints "MODE wall cpu".
one() {
	local mode=$1 data
	data=$(mktemp -d /var/tmp/retraced-gpgbench.XXXXXX)
	local flags=(--gpg-key "$SIGNED/key.asc")
	[ "$mode" = nogpgcheck ] && flags+=(--no-gpgcheck)
	"$BIN" --data "$data" mirror add corpus "$SIGNED" --kind yum "${flags[@]}" >/dev/null
	local tf
	tf=$(mktemp)
	if ! /usr/bin/time -o "$tf" -f '%e %U %S' "$BIN" --data "$data" mirror sync >"$tf.out" 2>&1; then
		cat "$tf.out" >&2 # a failed package still leaves a timing
	fi
	read -r wall user sys <"$tf"
	rm -f "$tf" "$tf.out"
	printf '%s %s %.2f\n' "$mode" "$wall" "$(echo "$user + $sys" | bc)"
	rm -rf "$data"
}

results=$(mktemp)
for i in $(seq "$RUNS"); do
	one gpgcheck | tee -a "$results"
	one nogpgcheck | tee -a "$results"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for mode in gpgcheck nogpgcheck; do
	w=$(awk -v m=$mode '$1==m {print $2}' "$results" | median)
	c=$(awk -v m=$mode '$1==m {print $3}' "$results" | median)
	echo "median $mode: wall ${w} s, cpu ${c} s"
done
rm -f "$results"
