package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// ErrSysrootDirBusy reports a sysroot directory another worker (in this
// or another process) holds.
var ErrSysrootDirBusy = errors.New("sysroot directory in use by another worker")

// A sysroot is a directory tree laid out like the crashed system's root,
// holding every file the mirror kept of a set of packages: the binary
// packages a core maps, their -debuginfo and their -debugsource. GDB
// reads it through `set sysroot`, `set debug-file-directory
// SYSROOT/usr/lib/debug` and `set substitute-path /usr/src/debug
// SYSROOT/usr/src/debug`.
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

// sysrootCache owns a sysroot directory. It is safe for concurrent use.
type sysrootCache struct {
	dir    string
	budget int64
	now    func() time.Time
	lock   *os.File

	mu       sync.Mutex
	entries  map[string]*sysrootEntry
	building map[string]chan struct{}
	total    int64
	builds   int // sysroots assembled since open
	trashSeq int
}

type sysrootEntry struct {
	key     string
	size    int64
	lastUse time.Time
	refs    int
}

// openSysrootCache takes dir (creating it), removes what a dead worker
// left, loads the sysroots there and evicts down to budget.
func openSysrootCache(dir string, budget int64, now func() time.Time) (*sysrootCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sysroot directory: %w", err)
	}
	c, stale, err := loadSysrootCache(dir, budget, now)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range stale {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	trash := c.evictLocked()
	c.mu.Unlock()
	errs = append(errs, c.removeTrash(trash))
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("clean sysroot directory: %w", err)
	}
	return c, nil
}

// loadSysrootCache takes the existing directory dir (its .lock) and
// loads the sysroots there, removing nothing. stale lists the entries a dead
// worker left (.tmp-*, .trash-*, .run-*, a sysroot without a readable
// manifest of this layout).
func loadSysrootCache(dir string, budget int64, now func() time.Time) (c *sysrootCache, stale []string, err error) {
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("sysroot directory: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("%s: %w", dir, ErrSysrootDirBusy)
		}
		return nil, nil, fmt.Errorf("lock sysroot directory %s: %w", dir, err)
	}
	c = &sysrootCache{dir: dir, budget: budget, now: now, lock: lock,
		entries: map[string]*sysrootEntry{}, building: map[string]chan struct{}{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("sysroot directory: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, ".tmp-"), strings.HasPrefix(name, ".trash-"), strings.HasPrefix(name, ".run-"):
			stale = append(stale, name)
		case isSysrootKey(name) && e.IsDir():
			m, mtime, err := readSysrootManifest(filepath.Join(dir, name))
			if err != nil || m.Layout != sysrootLayout {
				stale = append(stale, name)
				continue
			}
			c.entries[name] = &sysrootEntry{key: name, size: m.Bytes, lastUse: mtime}
			c.total += m.Bytes
		}
	}
	return c, stale, nil
}

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

// Close records each sysroot's last use (as its manifest's mtime, for the
// next worker's LRU order) and releases the directory.
func (c *sysrootCache) Close() error {
	c.mu.Lock()
	var errs []error
	for _, e := range c.entries {
		p := filepath.Join(c.dir, e.key, sysrootManifestName)
		if err := os.Chtimes(p, e.lastUse, e.lastUse); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	c.mu.Unlock()
	if c.lock != nil {
		errs = append(errs, c.lock.Close()) // closing drops the flock
		c.lock = nil
	}
	return errors.Join(errs...)
}

// sysrootLease is a sysroot held for one retrace.
type sysrootLease struct {
	Key    string
	Path   string
	Reused bool
	// Evict is the failure to remove sysroots evicted to make room.
	Evict error
	once  sync.Once
	c     *sysrootCache
}

// Release ends the lease; the sysroot may then be evicted.
func (l *sysrootLease) Release() error {
	var err error
	l.once.Do(func() {
		c := l.c
		c.mu.Lock()
		if e := c.entries[l.Key]; e != nil {
			e.refs--
			e.lastUse = c.now()
		}
		trash := c.evictLocked()
		c.mu.Unlock()
		err = c.removeTrash(trash)
	})
	return err
}

// acquire returns the sysroot named key, built by build into an empty
// directory if it is not there yet. Concurrent callers for one key share
// one build; a failed build is tried again by the next caller.
func (c *sysrootCache) acquire(ctx context.Context, key string, build func(ctx context.Context, dir string) (*sysrootManifest, error)) (*sysrootLease, error) {
	if !isSysrootKey(key) {
		return nil, fmt.Errorf("bad sysroot key %q", key)
	}
	for {
		c.mu.Lock()
		if e, ok := c.entries[key]; ok {
			e.refs++
			e.lastUse = c.now()
			c.mu.Unlock()
			return &sysrootLease{Key: key, Path: filepath.Join(c.dir, key), Reused: true, c: c}, nil
		}
		if ch, ok := c.building[key]; ok {
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		c.building[key] = ch
		c.mu.Unlock()

		m, err := c.build(ctx, key, build)

		c.mu.Lock()
		delete(c.building, key)
		close(ch)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.entries[key] = &sysrootEntry{key: key, size: m.Bytes, lastUse: c.now(), refs: 1}
		c.total += m.Bytes
		c.builds++
		trash := c.evictLocked()
		c.mu.Unlock()
		// The new sysroot is fine even when an old one could not be
		// removed: the caller logs Evict.
		l := &sysrootLease{Key: key, Path: filepath.Join(c.dir, key), c: c}
		l.Evict = c.removeTrash(trash)
		return l, nil
	}
}

// build assembles a sysroot under .tmp-KEY-*, writes its manifest and
// renames it into place.
func (c *sysrootCache) build(ctx context.Context, key string, build func(ctx context.Context, dir string) (*sysrootManifest, error)) (*sysrootManifest, error) {
	tmp, err := os.MkdirTemp(c.dir, ".tmp-"+key[:16]+"-")
	if err != nil {
		return nil, fmt.Errorf("assemble sysroot: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp) // best effort; the next open removes .tmp-* too
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("assemble sysroot: %w", err)
	}
	m, err := build(ctx, tmp)
	if err != nil {
		return nil, err
	}
	m.Layout = sysrootLayout
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, sysrootManifestName), append(b, '\n'), 0o444); err != nil {
		return nil, fmt.Errorf("assemble sysroot: %w", err)
	}
	final := filepath.Join(c.dir, key)
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("assemble sysroot: %w", err)
	}
	ok = true
	return m, nil
}

// overBudgetLocked lists the least recently used sysroots not in use
// whose removal brings the rest within the budget, oldest first.
func (c *sysrootCache) overBudgetLocked() []*sysrootEntry {
	if c.total <= c.budget {
		return nil
	}
	var idle []*sysrootEntry
	for _, e := range c.entries {
		if e.refs == 0 {
			idle = append(idle, e)
		}
	}
	slices.SortFunc(idle, func(a, b *sysrootEntry) int {
		if c := a.lastUse.Compare(b.lastUse); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	var over []*sysrootEntry
	total := c.total
	for _, e := range idle {
		if total <= c.budget {
			break
		}
		over = append(over, e)
		total -= e.size
	}
	return over
}

// evictLocked takes least recently used sysroots not in use out of the
// cache until the rest fit the budget, and moves them aside. It returns
// what to remove once c.mu is released.
func (c *sysrootCache) evictLocked() []string {
	var trash []string
	for _, e := range c.overBudgetLocked() {
		trash = append(trash, c.dropLocked(e))
	}
	return trash
}

// dropLocked takes e out of the cache and moves its directory aside (a
// rename, so that a new build of the same key does not meet it). It
// returns the path to remove once c.mu is released.
func (c *sysrootCache) dropLocked(e *sysrootEntry) string {
	c.trashSeq++
	dst := filepath.Join(c.dir, fmt.Sprintf(".trash-%s-%d", e.key[:16], c.trashSeq))
	src := filepath.Join(c.dir, e.key)
	if err := os.Rename(src, dst); err != nil {
		dst = src // remove it where it is
	}
	delete(c.entries, e.key)
	c.total -= e.size
	return dst
}

// collectable lists, as gc items, the sysroots not in use beyond the
// budget, least recently used first.
func (c *sysrootCache) collectable() []gc.Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	var items []gc.Item
	for _, e := range c.overBudgetLocked() {
		items = append(items, gc.Item{Kind: KindSysroot, Name: e.key, Bytes: e.size})
	}
	return items
}

// collect removes the sysroots named by keys that are cached and not in
// use; one in use or already gone is left alone.
func (c *sysrootCache) collect(keys []string) error {
	c.mu.Lock()
	var trash []string
	for _, k := range keys {
		if e := c.entries[k]; e != nil && e.refs == 0 {
			trash = append(trash, c.dropLocked(e))
		}
	}
	c.mu.Unlock()
	return c.removeTrash(trash)
}

func (c *sysrootCache) removeTrash(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stats reports what the cache holds, for the log and tests.
func (c *sysrootCache) stats() (sysroots int, total int64, builds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.total, c.builds
}

// sysrootPlan is what goes into one sysroot, in creation order.
type sysrootPlan struct {
	packages []string
	dirs     []string // relative paths
	files    []sysrootPlanFile
	links    []sysrootPlanLink
	skipped  []string // "NEVRA PATH: why"
}

type sysrootPlanFile struct {
	rel  string
	blob blob.Digest
	size int64
}

type sysrootPlanLink struct {
	rel    string
	target string // relative, inside the sysroot
}

// planSysroot lists every file of pkgs, the first package (in NEVRA
// order) winning when two ship one path.
//
// aliases maps paths the core names (absolute) to the paths where a
// package ships the same file (by build-id): a library the crashed system
// had at /usr/lib/x86_64-linux-gnu/libc.so.6 that the mirror holds as
// /usr/lib64/libc.so.6. Each becomes a symbolic link, where no package
// put anything, so that gdb finds every object at the path the core
// gives, as debuginfod clients find it by build-id.
func planSysroot(pkgs []*index.Package, aliases map[string]string) *sysrootPlan {
	pl := &sysrootPlan{}
	sorted := slices.Clone(pkgs)
	slices.SortFunc(sorted, func(a, b *index.Package) int { return strings.Compare(a.NEVRA.String(), b.NEVRA.String()) })
	type entry struct {
		pkg string
		f   index.File
		rel string
	}
	seen := map[string]bool{}
	links := map[string]bool{}
	var all []entry
	for _, p := range sorted {
		n := p.NEVRA.String()
		pl.packages = append(pl.packages, n)
		for _, f := range p.Files {
			rel, ok := sysrootRel(f.Path)
			if !ok {
				pl.skipped = append(pl.skipped, fmt.Sprintf("%s %q: not a clean absolute path", n, f.Path))
				continue
			}
			if seen[rel] {
				continue
			}
			seen[rel] = true
			all = append(all, entry{pkg: n, f: f, rel: rel})
			if f.Mode&fs.ModeSymlink != 0 {
				links[rel] = true
			}
		}
	}
	underLink := func(rel string) bool {
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if links[d] {
				return true
			}
		}
		return false
	}
	for _, e := range all {
		if underLink(e.rel) {
			pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: below a symbolic link", e.pkg, e.f.Path))
			continue
		}
		switch {
		case e.f.Mode&fs.ModeSymlink != 0:
			t, ok := sysrootLinkTarget(e.rel, e.f.Link)
			if !ok {
				pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: bad link target %q", e.pkg, e.f.Path, e.f.Link))
				continue
			}
			pl.links = append(pl.links, sysrootPlanLink{rel: e.rel, target: t})
		case e.f.Mode.IsDir():
			pl.dirs = append(pl.dirs, e.rel)
		case e.f.Mode.IsRegular():
			if e.f.Blob.IsZero() {
				pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: no content stored", e.pkg, e.f.Path))
				continue
			}
			pl.files = append(pl.files, sysrootPlanFile{rel: e.rel, blob: e.f.Blob, size: e.f.Size})
		default:
			pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: mode %v", e.pkg, e.f.Path, e.f.Mode))
		}
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if !seen[d] && !links[d] {
			pl.links = append(pl.links, sysrootPlanLink{rel: d, target: "usr/" + d})
		}
	}
	linkTargets := map[string]string{}
	for _, l := range pl.links {
		linkTargets[l.rel] = path.Join(path.Dir(l.rel), l.target)
	}
	resolve := lexicalResolver(linkTargets)
	for _, from := range slices.Sorted(maps.Keys(aliases)) {
		rel, ok1 := sysrootRel(from)
		to, ok2 := sysrootRel(aliases[from])
		if !ok1 || !ok2 {
			pl.skipped = append(pl.skipped, fmt.Sprintf("alias %q -> %q: not a clean absolute path", from, aliases[from]))
			continue
		}
		// Placed through the links on its way (lib -> usr/lib), never
		// over anything planned.
		rel = path.Join(resolve(path.Dir(rel)), path.Base(rel))
		if seen[rel] || linkTargets[rel] != "" || resolve(rel) == to {
			continue
		}
		t, err := filepath.Rel(path.Dir(rel), to)
		if err != nil {
			continue
		}
		seen[rel] = true
		pl.links = append(pl.links, sysrootPlanLink{rel: rel, target: t})
		linkTargets[rel] = to
	}
	pl.links = append(pl.links, autoLoadLinks(pl.files, linkTargets, seen)...)
	return pl
}

// lexicalResolver follows the planned symbolic links (link -> target,
// both relative to the sysroot) through a path, as the sysroot will lay
// them out: the path itself and the directories on its way (lib64 ->
// usr/lib64), at most 16 links deep.
func lexicalResolver(links map[string]string) func(rel string) string {
	step := func(rel string) (string, bool) {
		if t, ok := links[rel]; ok {
			return t, true
		}
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if t, ok := links[d]; ok {
				return path.Join(t, strings.TrimPrefix(rel, d+"/")), true
			}
		}
		return rel, false
	}
	return func(rel string) string {
		for range 16 {
			next, ok := step(rel)
			if !ok {
				break
			}
			rel = next
		}
		return rel
	}
}

// gdb auto-load scripts, as packages ship them: for an object file
// /usr/lib64/libX.so.1.0.0, /usr/share/gdb/auto-load/usr/lib64/libX.so.1.0.0-gdb.py
// (or -gdb.gdb, -gdb.scm).
const autoLoadDir = "usr/share/gdb/auto-load/"

var autoLoadSuffixes = []string{"-gdb.py", "-gdb.gdb", "-gdb.scm"}

// autoLoadLinks places each auto-load script of the sysroot beside its
// object file as well (OBJFILE-gdb.py, a symbolic link to the script),
// and beside each symbolic link that leads to that object file.
//
// GDB looks for an object file's script in two places: beside the file
// itself, under the name its real path has, and under each
// "auto-load scripts-directory" with the object file's whole path
// appended. With "set sysroot S" that whole path is S/usr/lib64/...,
// so the second place becomes S/usr/share/gdb/auto-loadS/usr/lib64/...,
// which never exists: pretty-printers never load. Beside the object file
// is where GDB finds them. When GDB cannot resolve the object's real path
// (a sysroot reached through /proc/self/fd), it looks beside the name the
// core gave, usually the soname link: hence the links' names too.
//
// files are the sysroot's regular files; links maps each symbolic link to
// its target, both relative to the sysroot; taken holds every path
// already planned, and the new links never replace one.
func autoLoadLinks(files []sysrootPlanFile, links map[string]string, taken map[string]bool) []sysrootPlanLink {
	resolve := lexicalResolver(links)
	scripts := map[string][]string{} // object file -> its scripts
	for _, f := range files {
		rest, ok := strings.CutPrefix(f.rel, autoLoadDir)
		if !ok {
			continue
		}
		for _, suf := range autoLoadSuffixes {
			if obj, ok := strings.CutSuffix(rest, suf); ok && obj != "" {
				scripts[resolve(obj)] = append(scripts[resolve(obj)], f.rel)
			}
		}
	}
	if len(scripts) == 0 {
		return nil
	}
	names := map[string][]string{} // object file -> names that lead to it
	for obj := range scripts {
		names[obj] = append(names[obj], obj)
	}
	for l := range links {
		if obj := resolve(l); obj != l {
			if _, ok := scripts[obj]; ok {
				names[obj] = append(names[obj], l)
			}
		}
	}
	var out []sysrootPlanLink
	for obj, ss := range scripts {
		for _, name := range names[obj] {
			for _, script := range ss {
				rel := name + script[strings.LastIndexByte(script, '-'):]
				if taken[rel] || strings.HasPrefix(resolve(path.Dir(rel)), autoLoadDir) {
					continue
				}
				if _, isLink := links[path.Dir(rel)]; isLink {
					continue // placed through the real directory
				}
				t, err := filepath.Rel(path.Dir(rel), script)
				if err != nil {
					continue
				}
				taken[rel] = true
				out = append(out, sysrootPlanLink{rel: rel, target: t})
			}
		}
	}
	slices.SortFunc(out, func(a, b sysrootPlanLink) int { return strings.Compare(a.rel, b.rel) })
	return out
}

// sysrootRel turns a package path into a path relative to the sysroot,
// refusing anything but a clean absolute path below /.
func sysrootRel(p string) (string, bool) {
	if len(p) < 2 || len(p) > 4096 || p[0] != '/' || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return "", false
	}
	rel := p[1:]
	for _, el := range strings.Split(rel, "/") {
		if el == ".." || el == "." || el == "" {
			return "", false
		}
	}
	return rel, true
}

// sysrootLinkTarget resolves a link's target lexically against the
// sysroot's root (an absolute target, or ".." past the root, stays inside
// as in a chroot) and writes it relative to the link's directory.
func sysrootLinkTarget(rel, target string) (string, bool) {
	if target == "" || len(target) > 4096 || strings.ContainsRune(target, 0) {
		return "", false
	}
	dir := path.Dir("/" + rel)
	abs := path.Clean(target)
	if !path.IsAbs(target) {
		abs = path.Join(dir, target)
	}
	t, err := filepath.Rel(dir, abs)
	if err != nil {
		return "", false
	}
	return t, true
}

// assembleSysroot lays pl out in the empty directory root, taking file
// contents from pool.
func assembleSysroot(ctx context.Context, root string, pl *sysrootPlan, pool BlobSource, now time.Time) (*sysrootManifest, error) {
	m := &sysrootManifest{Packages: pl.packages, Skipped: slices.Clone(pl.skipped), Built: now.UTC()}
	made := map[string]bool{".": true}
	var mkdir func(rel string) error
	mkdir = func(rel string) error {
		if made[rel] {
			return nil
		}
		if err := mkdir(path.Dir(rel)); err != nil {
			return err
		}
		p := filepath.Join(root, rel)
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// 0755 whatever the umask: GDB may run as another user.
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
		made[rel] = true
		return nil
	}
	// A path that is a file in one package and a directory in another
	// cannot be both: directories are made first, and the file is
	// skipped.
	skip := func(rel string, err error) error {
		switch {
		case errors.Is(err, fs.ErrExist):
			m.Skipped = append(m.Skipped, fmt.Sprintf("/%s: another package's directory or file is there", rel))
		case errors.Is(err, syscall.ENOTDIR):
			m.Skipped = append(m.Skipped, fmt.Sprintf("/%s: another package's file is where its directory goes", rel))
		default:
			return fmt.Errorf("assemble sysroot: /%s: %w", rel, err)
		}
		return nil
	}
	for _, d := range pl.dirs {
		if err := mkdir(d); err != nil {
			if err := skip(d, err); err != nil {
				return nil, err
			}
		}
	}
	var files []sysrootPlanFile
	for _, f := range pl.files {
		if err := mkdir(path.Dir(f.rel)); err != nil {
			if err := skip(f.rel, err); err != nil {
				return nil, err
			}
			continue
		}
		files = append(files, f)
	}
	var links []sysrootPlanLink
	for _, l := range pl.links {
		if err := mkdir(path.Dir(l.rel)); err != nil {
			if err := skip(l.rel, err); err != nil {
				return nil, err
			}
			continue
		}
		links = append(links, l)
	}

	// Regular files, in parallel: a plain copy made on first use is a
	// decompression.
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan sysrootPlanFile)
	workers := max(2, min(8, runtime.GOMAXPROCS(0)))
	for range workers {
		wg.Go(func() {
			for f := range jobs {
				copied, err := placeSysrootFile(pool, f, filepath.Join(root, f.rel))
				mu.Lock()
				switch {
				case err != nil:
					if err := skip(f.rel, err); err != nil && firstErr == nil {
						firstErr = err
					}
				default:
					m.Files++
					m.Bytes += f.size
					if copied {
						m.Copied++
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, f := range files {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(root, l.rel)); err != nil {
			if err := skip(l.rel, err); err != nil {
				return nil, err
			}
			continue
		}
		m.Links++
	}
	return m, nil
}

// placeSysrootFile hard-links the plain copy of f to dst, or copies it
// when linking is impossible. It reports whether it copied.
func placeSysrootFile(pool BlobSource, f sysrootPlanFile, dst string) (bool, error) {
	var lerr error
	for range 2 { // a plain copy may be removed (gc) between Plain and Link
		src, err := pool.Plain(f.blob)
		if err != nil {
			return false, err
		}
		lerr = os.Link(src, dst)
		if lerr == nil {
			return false, nil
		}
		if errors.Is(lerr, fs.ErrExist) {
			return false, lerr
		}
		if errors.Is(lerr, fs.ErrNotExist) {
			continue
		}
		return true, copySysrootFile(src, dst)
	}
	return false, lerr
}

// copySysrootFile copies src to a new, read-only dst. io.Copy between
// files uses copy_file_range, which shares extents where the file system
// can (reflink).
func copySysrootFile(src, dst string) error {
	return copyNew(src, dst, 0o444, func(out *os.File) error { return out.Chmod(0o444) })
}

// copyNew copies src to dst, which must not exist, created with mode
// (before the umask); then finish adjusts the copy before it is closed.
// io.Copy between files uses copy_file_range.
func copyNew(src, dst string, mode os.FileMode, finish func(*os.File) error) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close() // read-only
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := finish(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
