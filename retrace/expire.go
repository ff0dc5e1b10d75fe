package retrace

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/retraced/retraced/gc/plan"
)

// KindTask is the gc item kind of an expired task.
const KindTask plan.Kind = "task"

var (
	_ plan.Owner = (*Server)(nil)
	_ plan.Owner = (*Tasks)(nil)
)

// expired lists the tasks under dir that finished more than
// cfg.DeleteAfter before now (failed ones after cfg.DeleteFailedAfter,
// when that is sooner), as gc items owned by owner.
func expired(dir string, cfg Config, now time.Time, owner plan.Owner) ([]plan.Item, error) {
	if cfg.DeleteAfter <= 0 {
		return nil, nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-cfg.DeleteAfter)
	failedCutoff := cutoff
	if d := cfg.DeleteFailedAfter; d > 0 && d < cfg.DeleteAfter {
		failedCutoff = now.Add(-d)
	}
	var items []plan.Item
	for _, e := range ents {
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		t := task{id: e.Name(), dir: filepath.Join(dir, e.Name())}
		st, err := t.readState()
		if err != nil || !st.Status.Finished() {
			continue
		}
		if st.Finished.Before(cutoff) || (st.Status == StatusFailure && st.Finished.Before(failedCutoff)) {
			items = append(items, plan.Item{Kind: KindTask, Name: t.id, Bytes: plan.TreeSize(t.dir), Owner: owner})
		}
	}
	return items, nil
}

// Plan lists the finished tasks past their retention, by the server's
// clock (plan.Owner).
func (s *Server) Plan(ctx context.Context, _ time.Time) ([]plan.Item, error) {
	return s.expired(ctx)
}

// expired lists the server's tasks past their retention.
func (s *Server) expired(ctx context.Context) ([]plan.Item, error) {
	if s.shared == nil {
		return expired(s.dir, s.cfg, s.cfg.Now(), s)
	}
	if s.cfg.DeleteAfter <= 0 {
		return nil, nil
	}
	now := s.cfg.Now()
	cutoff := now.Add(-s.cfg.DeleteAfter)
	failedCutoff := cutoff
	if d := s.cfg.DeleteFailedAfter; d > 0 && d < s.cfg.DeleteAfter {
		failedCutoff = now.Add(-d)
	}
	ts, err := s.shared.Expired(ctx, cutoff, failedCutoff)
	if err != nil {
		return nil, err
	}
	items := make([]plan.Item, 0, len(ts))
	for _, t := range ts {
		items = append(items, plan.Item{Kind: KindTask, Name: t.ID, Bytes: t.Bytes, Owner: s})
	}
	return items, nil
}

// Delete removes planned tasks; one already gone is not an error, and
// items of other kinds are not the server's.
func (s *Server) Delete(ctx context.Context, items []plan.Item) error {
	var errs []error
	for _, it := range items {
		if it.Kind != KindTask {
			continue
		}
		if err := s.remove(it.Name); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Expire removes the tasks past their retention and returns how many it
// removed.
func (s *Server) Expire() (int, error) {
	items, err := s.expired(context.Background())
	if err != nil || len(items) == 0 {
		return 0, err
	}
	return len(items), s.Delete(context.Background(), items)
}

// Tasks is a task directory that no server has open (retraced gc while
// serve is not running): it plans like a Server with the default
// retention and deletes directly.
type Tasks struct {
	Dir    string
	Config Config
}

// Plan lists the finished tasks past their retention.
func (t *Tasks) Plan(ctx context.Context, now time.Time) ([]plan.Item, error) {
	return expired(t.Dir, t.Config.withDefaults(), now, t)
}

// Delete removes planned tasks: renamed away first, as a server does, so
// that a task is gone at once even if removing its files fails half-way.
func (t *Tasks) Delete(ctx context.Context, items []plan.Item) error {
	var errs []error
	for _, it := range items {
		if it.Kind != KindTask || !validID(it.Name) {
			continue
		}
		gone := filepath.Join(t.Dir, ".deleted-"+it.Name)
		if err := os.Rename(filepath.Join(t.Dir, it.Name), gone); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := os.RemoveAll(gone); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
