#!/usr/bin/env bash
# deltabound.sh PKGFILE... : the most delta compression can save on the
# versions of one package, whatever retraced does.
#
# PKGFILEs are .deb or .rpm files of one package, oldest first. Their ELF
# files are paired across versions as the mirror pairs them (the same
# path, or the same path with its digits taken out, /bin, /sbin and /lib*
# taken as under /usr, where a merged /usr moved them), and the script
# prints, per version and in all:
#
#   floor   every ELF file alone at zstd -19: what retraced stored before
#           deltas, and what issue 12's goal is measured against
#   chain   the oldest version's files at zstd -19, every later file as
#           zstd -19 --patch-from its file in the version just before
#           (or alone, where that is smaller): deltas at the strongest
#           level, each on the nearest version, with no bound on chains
#           (retraced bounds them at one) and no CPU bound (retraced's
#           compaction has one)
#
# so chain/floor is a floor for the stored-bytes ratio of any delta
# scheme of this kind on these versions.
#
# Needs: zstd, dpkg-deb (for .deb), rpm2cpio and cpio (for .rpm).
set -euo pipefail

if [[ $# -lt 2 ]]; then
	echo "usage: $0 PKGFILE... (two or more versions, oldest first)" >&2
	exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/deltabound.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# unpack FILE DIR
unpack() {
	mkdir -p "$2"
	case $1 in
	*.deb) dpkg-deb -x "$1" "$2" ;;
	*.rpm) (cd "$2" && rpm2cpio "$1" | cpio -idm --quiet 2>/dev/null) ;;
	*)
		echo "deltabound: $1: neither .deb nor .rpm" >&2
		exit 2
		;;
	esac
}
# elves DIR: "PATH KEY" of every regular ELF file (KEY: PATH with digits
# taken out), sorted by PATH.
elves() {
	(cd "$1" && find . -type f -size +0 -print0 | while IFS= read -r -d '' f; do
		if [[ $(head -c 4 "$f" | od -An -c | tr -d ' ') == 177ELF ]]; then
			printf '%s %s\n' "${f#./}" "$(sed -E 's#^(bin|sbin|lib[^/]*)/#usr/\1/#; s/[0-9]+/N/g' <<<"${f#./}")"
		fi
	done | sort)
}
size19() { zstd -19 -q -c --single-thread "$1" | wc -c; }

total_floor=0 total_chain=0 n=0 prev=
printf '%-44s %6s %12s %12s %6s\n' version files floor chain ratio
for pkg in "$@"; do
	n=$((n + 1))
	dir=$WORK/v$n
	unpack "$(realpath "$pkg")" "$dir"
	elves "$dir" >"$WORK/v$n.list"
	floor=0 chain=0 files=0
	while read -r path key; do
		files=$((files + 1))
		f=$dir/$path
		s=$(size19 "$f")
		floor=$((floor + s))
		base=
		if [[ -n $prev ]]; then
			if [[ -f $WORK/$prev/$path ]]; then
				base=$WORK/$prev/$path
			else
				b=$(awk -v k="$key" '$2 == k { print $1; exit }' "$WORK/$prev.list")
				[[ -n $b ]] && base=$WORK/$prev/$b
			fi
		fi
		if [[ -n $base ]]; then
			d=$(zstd -19 -q -c --single-thread --patch-from="$base" "$f" 2>/dev/null | wc -c)
			((d > 0 && d < s)) && s=$d
		fi
		chain=$((chain + s))
	done <"$WORK/v$n.list"
	printf '%-44s %6d %12d %12d %6s\n' "$(basename "$pkg")" "$files" "$floor" "$chain" "$(awk -v a=$chain -v b=$floor 'BEGIN { if (b) printf "%.2f", a / b }')"
	total_floor=$((total_floor + floor))
	total_chain=$((total_chain + chain))
	prev=v$n
done
printf '%-44s %6s %12d %12d %6s\n' "all $n versions" "" "$total_floor" "$total_chain" "$(awk -v a=$total_chain -v b=$total_floor 'BEGIN { if (b) printf "%.2f", a / b }')"
