package worker

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/retraced/retraced/gc"
)

// KindSysroot is the gc item kind of a cached sysroot, or of what a dead
// worker left in the sysroot directory.
const KindSysroot gc.Kind = "sysroot"

var (
	_ gc.Owner = (*Worker)(nil)
	_ gc.Owner = (*Sysroots)(nil)
)

// Plan lists the cached sysroots not in use beyond the budget, least
// recently used first (gc.Owner). The worker evicts those itself when a
// retrace releases its sysroot, so this is usually empty.
func (w *Worker) Plan(ctx context.Context, _ time.Time) ([]gc.Item, error) {
	return w.cache.collectable(), nil
}

// Delete removes planned sysroots; one in use again, or already gone, is
// left alone.
func (w *Worker) Delete(ctx context.Context, items []gc.Item) error {
	return w.cache.collect(sysrootKeys(items))
}

func sysrootKeys(items []gc.Item) []string {
	var keys []string
	for _, it := range items {
		if it.Kind == KindSysroot && isSysrootKey(it.Name) {
			keys = append(keys, it.Name)
		}
	}
	return keys
}

// Sysroots is a sysroot directory that no Worker has open (retraced gc
// while serve is not running): it plans the sysroots beyond Budget and
// what a dead worker left, as a Worker opening the directory would
// remove them, and deletes them. Each call takes the directory's lock,
// failing with ErrSysrootDirBusy while a Worker has it.
type Sysroots struct {
	Dir string
	// Budget bounds the sysroots' bytes (default DefaultSysrootBudget).
	Budget int64
}

func (s *Sysroots) open() (*sysrootCache, []string, error) {
	budget := s.Budget
	if budget <= 0 {
		budget = DefaultSysrootBudget
	}
	return loadSysrootCache(s.Dir, budget, time.Now)
}

// Plan lists what a dead worker left, then the sysroots beyond the
// budget, least recently used first. A missing directory holds nothing.
func (s *Sysroots) Plan(ctx context.Context, _ time.Time) ([]gc.Item, error) {
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	c, stale, err := s.open()
	if err != nil {
		return nil, err
	}
	var items []gc.Item
	for _, name := range stale {
		items = append(items, gc.Item{Kind: KindSysroot, Name: name, Bytes: gc.TreeSize(filepath.Join(s.Dir, name))})
	}
	items = append(items, c.collectable()...)
	return items, c.Close()
}

// Delete removes planned sysroots and leftovers; what is gone already is
// not an error.
func (s *Sysroots) Delete(ctx context.Context, items []gc.Item) error {
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c, stale, err := s.open()
	if err != nil {
		return err
	}
	var errs []error
	for _, it := range items {
		if it.Kind == KindSysroot && slices.Contains(stale, it.Name) {
			errs = append(errs, os.RemoveAll(filepath.Join(s.Dir, it.Name)))
		}
	}
	errs = append(errs, c.collect(sysrootKeys(items)), c.Close())
	return errors.Join(errs...)
}
