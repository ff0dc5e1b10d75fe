#!/usr/bin/env bash
# floor.sh CORPUSDIR
#
# The storage floor for retraced on a corpus of RPMs: for each RPM, keep only
# what retraced keeps (see SPEC.md, "What the mirror keeps"):
#   - ELF objects (files starting with the magic bytes \x7fELF),
#   - everything under usr/lib/debug and usr/src/debug,
#   - gdb auto-load scripts under usr/share/gdb/auto-load,
#   - symlinks whose target (followed inside the package) is kept,
# put those in a tar per package, compress it with `zstd -19`, and sum the
# compressed sizes. retraced's stored bytes should be within 15% of this.
# (retraced also stores each distinct file once across packages, which this
# floor does not; on a corpus of distinct packages that barely matters.)
#
# Prints RPM bytes, floor bytes, the floor/RPM ratio, and how many packages
# keep no file at all. Per-package rows go to CORPUSDIR/.floor/packages.tsv
# (columns: rpm, rpm_bytes, files, kept_files, kept_bytes_raw, floor_bytes),
# the summary to CORPUSDIR/.floor/summary (KEY=VALUE lines, read by
# compare.sh). A row is reused on the next run while its RPM's size and mtime
# are unchanged, so reruns only redo new packages.
#
# Needs: rpm2cpio, cpio, tar, zstd, python3 (to scan magic bytes and resolve
# symlinks fast; one process per package instead of one `head -c4` per file).
set -euo pipefail

JOBS=${JOBS:-2}
# Prefer the system python: a pyenv shim costs ~2 s per start.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3 || true)}
export PYTHON

# Prints NUL-separated relative paths of the kept files in root $1, then
# writes "files kept kept_bytes_raw" to file $2.
read -r -d '' KEEP_PY <<'EOF' || true
import os, sys, stat
root, statsfile = sys.argv[1], sys.argv[2]
KEEP_DIRS = ("usr/lib/debug/", "usr/src/debug/", "usr/share/gdb/auto-load/")
entries = {}  # relpath -> lstat
for d, dirs, files in os.walk(root):
    for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
        full = os.path.join(d, n)
        entries[os.path.relpath(full, root)] = os.lstat(full)
kept = {}
def is_elf(rel):
    try:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False
for rel, st in entries.items():
    if rel.startswith(KEEP_DIRS):
        kept[rel] = True
    elif stat.S_ISREG(st.st_mode):
        kept[rel] = is_elf(rel)
def resolve(rel, depth=0):
    """The in-package path a symlink finally points at, or None."""
    if depth > 40:
        return None
    target = os.readlink(os.path.join(root, rel))
    if target.startswith("/"):
        path = target.lstrip("/")
    else:
        path = os.path.join(os.path.dirname(rel), target)
    path = os.path.normpath(path)
    if path.startswith(".."):
        return None
    st = entries.get(path)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        return resolve(path, depth + 1)
    return path
for rel, st in entries.items():
    if stat.S_ISLNK(st.st_mode) and rel not in kept:
        t = resolve(rel)
        kept[rel] = t is not None and kept.get(t, False)
out = sorted(r for r, k in kept.items() if k)
raw = sum(entries[r].st_size for r in out if stat.S_ISREG(entries[r].st_mode))
sys.stdout.write("".join(r + "\0" for r in out))
with open(statsfile, "w") as f:
    f.write("%d %d %d\n" % (len(entries), len(out), raw))
EOF
export KEEP_PY

# Worker: one RPM. Prints one packages.tsv row.
floor_one() {
	local rpm=$1
	local work
	work=$(mktemp -d "${TMPDIR:-/var/tmp}/floor.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" RETURN
	mkdir "$work/root"
	(cd "$work/root" && rpm2cpio "$rpm" | cpio -idm --quiet --no-absolute-filenames 2>/dev/null) || {
		echo "floor: extract $rpm failed" >&2
		return 1
	}
	"$PYTHON" -c "$KEEP_PY" "$work/root" "$work/stats" >"$work/kept"
	local files nkept raw fl=0
	read -r files nkept raw <"$work/stats"
	if [[ $nkept -gt 0 ]]; then
		fl=$(tar -C "$work/root" --no-recursion --null -T "$work/kept" \
			--owner=0 --group=0 --numeric-owner -cf - |
			zstd -19 -T1 -q -c | wc -c)
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$rpm")" "$(stat -c %s "$rpm")" \
		"$files" "$nkept" "$raw" "$fl"
}

if [[ ${1:-} == --one ]]; then
	floor_one "$2"
	exit 0
fi

if [[ $# -ne 1 ]]; then
	echo "usage: $0 CORPUSDIR" >&2
	exit 2
fi
CORPUS=$(cd "$1" && pwd)
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
for tool in rpm2cpio cpio tar zstd "$PYTHON"; do
	command -v "$tool" >/dev/null || {
		echo "floor: $tool not found" >&2
		exit 1
	}
done
mkdir -p "$CORPUS/.floor"
cache=$CORPUS/.floor/cache.tsv # packages.tsv row + size + mtime
touch "$cache"

# Which RPMs need work: those whose (name, size, mtime) has no cached row.
find "$CORPUS" -maxdepth 1 -name '*.rpm' -printf '%f\t%s\t%T@\n' | LC_ALL=C sort >"$CORPUS/.floor/rpms"
awk -F'\t' 'FILENAME == ARGV[1] { key[$1 "\t" $7 "\t" $8] = 1; next }
	!(($1 "\t" $2 "\t" $3) in key) { print $1 }' "$cache" "$CORPUS/.floor/rpms" >"$CORPUS/.floor/todo"
ntodo=$(wc -l <"$CORPUS/.floor/todo")
nrpm=$(wc -l <"$CORPUS/.floor/rpms")
echo "floor: $nrpm RPMs in $CORPUS, $ntodo to scan ($JOBS jobs)" >&2

start=$(date +%s)
if [[ $ntodo -gt 0 ]]; then
	sed "s|^|$CORPUS/|" "$CORPUS/.floor/todo" | tr '\n' '\0' |
		xargs -0 -P "$JOBS" -n 1 "$SELF" --one >"$CORPUS/.floor/new.tsv"
fi
touch "$CORPUS/.floor/new.tsv"
# Merge: fresh rows plus still-valid cached rows, for the RPMs present now.
awk -F'\t' -v OFS='\t' '
	FILENAME == ARGV[1] { size[$1] = $2; mtime[$1] = $3; next }
	FILENAME == ARGV[2] { if (($1 in size) && $7 == size[$1] && $8 == mtime[$1]) row[$1] = $1 OFS $2 OFS $3 OFS $4 OFS $5 OFS $6; next }
	{ row[$1] = $0 }
	END { for (r in row) print row[r], size[r], mtime[r] }' \
	"$CORPUS/.floor/rpms" "$cache" "$CORPUS/.floor/new.tsv" | LC_ALL=C sort >"$cache.tmp"
mv "$cache.tmp" "$cache"
rm -f "$CORPUS/.floor/new.tsv"
cut -f1-6 "$cache" >"$CORPUS/.floor/packages.tsv"
end=$(date +%s)

awk -F'\t' -v secs=$((end - start)) '
	{ n++; rpm += $2; files += $3; kept += $4; raw += $5; fl += $6; if ($4 == 0) empty++ }
	END {
		printf "PACKAGES=%.0f\nRPM_BYTES=%.0f\nFLOOR_BYTES=%.0f\nKEPT_RAW_BYTES=%.0f\nFILES=%.0f\nKEPT_FILES=%.0f\nEMPTY_PACKAGES=%.0f\nSECONDS=%.0f\n",
			n, rpm, fl, raw, files, kept, empty, secs
	}' "$CORPUS/.floor/packages.tsv" >"$CORPUS/.floor/summary"

# shellcheck disable=SC1091
. "$CORPUS/.floor/summary"
# shellcheck disable=SC2153 # the summary defines FILES, PACKAGES, ...
awk -v n="$PACKAGES" -v rpm="$RPM_BYTES" -v fl="$FLOOR_BYTES" -v raw="$KEPT_RAW_BYTES" \
	-v files="$FILES" -v kept="$KEPT_FILES" -v empty="$EMPTY_PACKAGES" 'BEGIN {
	mib = 1048576
	printf "packages                 %.0f\n", n
	printf "RPM bytes                %.0f (%.1f MiB)\n", rpm, rpm / mib
	printf "kept files               %.0f of %.0f\n", kept, files
	printf "kept bytes, uncompressed %.0f (%.1f MiB)\n", raw, raw / mib
	printf "floor bytes (zstd -19)   %.0f (%.1f MiB)\n", fl, fl / mib
	printf "floor / RPM              %.3f\n", (rpm ? fl / rpm : 0)
	printf "packages keeping nothing %.0f (%.1f%%)\n", empty, (n ? 100 * empty / n : 0)
}'
