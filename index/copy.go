package index

import (
	"errors"
	"fmt"

	"github.com/retraced/retraced/index/kv"
)

// ErrNotEmpty reports a copy into an index that holds something already.
var ErrNotEmpty = errors.New("index is not empty")

// CopyTo copies every key of s into dst, which must be empty, in
// transactions of a few thousand keys, from one snapshot of s, and
// returns how many it copied. The keys are the same on either engine, so
// this moves an index between Badger and PostgreSQL; the caller copies
// the blobs first, so that no index it writes names a missing one.
func (s *Store) CopyTo(dst *Store, progress func(keys int)) (int, error) {
	empty := true
	err := dst.db.View(func(r kv.Reader) error {
		return r.Scan(nil, true, func(_, _ []byte) error {
			empty = false
			return errFound
		})
	})
	if err != nil && !errors.Is(err, errFound) {
		return 0, err
	}
	if !empty {
		return 0, fmt.Errorf("copy index: the target %w", ErrNotEmpty)
	}
	// Bounded by count and bytes: Badger takes about 2 MB per
	// transaction with the memtables Open configures.
	const batch, batchBytes = 4096, 1 << 20
	var keys, vals [][]byte
	n, size := 0, 0
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := dst.db.Update(func(tx kv.Txn) error {
			for i := range keys {
				if err := tx.Set(keys[i], vals[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("copy index: %w", err)
		}
		n += len(keys)
		keys, vals, size = keys[:0], vals[:0], 0
		if progress != nil {
			progress(n)
		}
		return nil
	}
	err = s.db.View(func(r kv.Reader) error {
		return r.Scan(nil, false, func(k, v []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			vals = append(vals, append([]byte(nil), v...))
			size += len(k) + len(v)
			if len(keys) < batch && size < batchBytes {
				return nil
			}
			return flush()
		})
	})
	if err == nil {
		err = flush()
	}
	dst.gen.Add(1)
	if dst.cache != nil {
		dst.cache.invalidateAll()
	}
	return n, err
}
