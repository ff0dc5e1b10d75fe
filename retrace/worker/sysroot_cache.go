package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/retraced/retraced/gc"
)

// ErrSysrootDirBusy reports a sysroot directory another worker (in this
// or another process) holds.
var ErrSysrootDirBusy = errors.New("sysroot directory in use by another worker")

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
	// bytes is the size of the files the retrace assembled (0 when
	// reused), for the task's statistics.
	bytes int64
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
