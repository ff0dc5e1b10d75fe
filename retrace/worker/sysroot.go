package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A sysroot is a directory tree laid out like the crashed system's root,
// holding every file the mirror kept of a set of packages: the binary
// packages a core maps, their -debuginfo and their -debugsource. GDB
// reads it through `set sysroot`, `set debug-file-directory
// SYSROOT/usr/lib/debug` and `set substitute-path /usr/src/debug
// SYSROOT/usr/src/debug`.
//
// A sysroot is planned (sysroot_plan.go: planSysroot decides every entry
// from the packages' file lists), laid out (sysroot_assemble.go:
// assembleSysroot) and kept (sysroot_cache.go: sysrootCache, leases and
// eviction); this file holds what they share: the layout, the key and
// the manifest.
//
// # Layout of the sysroot directory
//
//	.lock                  flock: one worker owns the directory
//	KEY/                   one assembled sysroot; KEY is sysrootKey of its package set
//	KEY/.sysroot.json      its manifest (packages, file count, bytes); mtime = last use
//	.tmp-KEY-*/            a sysroot being assembled (renamed to KEY/ when complete)
//	.trash-KEY-*/          an evicted sysroot being removed
//	.run-*/                one GDB run: the core, a link to the executable, GDB's HOME
//
// A sysroot is complete once it has its name: it is built under .tmp-*
// and renamed. Entries left by a worker that died (.tmp-*, .trash-*,
// .run-*, a KEY/ without a readable manifest) are removed when the next
// worker opens the directory.
//
// # How files get there
//
// Regular files are hard links to the blob pool's plain (uncompressed,
// read-only, 0444) copies: no RPM is unpacked and no byte is copied.
// Where a link is impossible (another file system, an inode at its link
// limit) the file is copied, with copy_file_range, which reflinks on file
// systems that can. Symbolic links are recreated with their targets made
// relative and resolved lexically inside the sysroot (as in a chroot), so
// no link leads out of it to the host's files; an entry below another
// symbolic link of the set is skipped rather than written through it.
// Directories are 0755, so that GDB running as an unprivileged user can
// read everything.
//
// The top-level links of a merged /usr (bin, sbin, lib, lib64 -> usr/...),
// which Fedora's filesystem package owns and no build-id leads to, are
// added when no package of the set ships those paths: cores name shared
// libraries by the loader's paths, /lib64/ld-linux-x86-64.so.2 for one.
//
// The host's files never go in: a library the mirror does not have (the
// host's libc in the fixture cores) stays missing, GDB says so, and the
// frames in it have no symbols. That is the honest answer; the program's
// own frames still get names and lines from its debuginfo.
//
// # Cache
//
// Sysroots are keyed by their package set and kept for the next core that
// needs the same set. They are evicted whole, least recently used first,
// when their sizes add up to more than the budget; a sysroot in use by a
// retrace is never evicted (the budget may be exceeded while it is).
// The worker evicts as retraces end; gc sees the same plan through the
// Worker, a gc owner (serve registers it), and `retraced gc` without a
// server through [Sysroots], which also collects a dead worker's
// leftovers.
// Sizes count the bytes of the regular files, as if they were not shared
// with the pool.
const (
	sysrootManifestName = ".sysroot.json"
	sysrootLayout       = 2 // bump when the way sysroots are built changes (2: auto-load links, aliases)
)

// sysrootKey names the sysroot of a package set: the SHA-256 of the
// layout version and the sorted NEVRAs.
func sysrootKey(pkgs []string) string {
	s := slices.Clone(pkgs)
	slices.Sort(s)
	s = slices.Compact(s)
	h := sha256.New()
	fmt.Fprintf(h, "retraced sysroot v%d\n", sysrootLayout)
	for _, p := range s {
		h.Write([]byte(p + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isSysrootKey(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil && strings.ToLower(name) == name
}

// sysrootManifest is KEY/.sysroot.json.
type sysrootManifest struct {
	Layout   int       `json:"layout"`
	Packages []string  `json:"packages"`
	Files    int       `json:"files"`
	Links    int       `json:"links"`
	Bytes    int64     `json:"bytes"`
	Copied   int       `json:"copied,omitempty"` // files copied, not linked
	Skipped  []string  `json:"skipped,omitempty"`
	Built    time.Time `json:"built"`
}

// readSysrootManifest reads the manifest of the sysroot at root, and its
// mtime: the sysroot's last use.
func readSysrootManifest(root string) (*sysrootManifest, time.Time, error) {
	p := filepath.Join(root, sysrootManifestName)
	f, err := os.Open(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close() // read-only
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	m := new(sysrootManifest)
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(m); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", p, err)
	}
	return m, st.ModTime(), nil
}
