package crashes

import (
	"context"
	"time"

	"github.com/retraced/retraced/gc"
)

// KindSignature is the gc kind of a crash signature past the retention;
// Name is its ID.
const KindSignature gc.Kind = "crash signature"

var _ gc.Owner = (*Store)(nil)

// Plan lists the signatures last seen before now minus the retention.
func (s *Store) Plan(ctx context.Context, now time.Time) ([]gc.Item, error) {
	cutoff := now.Add(-s.opt.Retention)
	var items []gc.Item
	entries, _ := s.snapshot()
	for _, e := range entries {
		if e.LastSeen.Before(cutoff) {
			items = append(items, gc.Item{Kind: KindSignature, Name: e.ID, Owner: s})
		}
	}
	return items, ctx.Err()
}

// Delete removes the planned signatures that are still past the
// retention (one seen again since the plan stays).
func (s *Store) Delete(ctx context.Context, items []gc.Item) error {
	cutoff := s.opt.Now().Add(-s.opt.Retention)
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, it := range items {
		if e, ok := s.entries[it.Name]; ok && it.Kind == KindSignature && e.LastSeen.Before(cutoff) {
			ids = append(ids, it.Name)
		}
	}
	if len(ids) == 0 {
		return ctx.Err()
	}
	if err := s.be.Delete(ids); err != nil {
		return err
	}
	for _, id := range ids {
		delete(s.entries, id)
	}
	s.gen++
	return nil
}
