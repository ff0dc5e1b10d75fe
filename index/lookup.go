package index

// Build-id lookups: the files that carry an id, newest package first,
// through the lookup cache.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/retraced/retraced/index/kv"

	"github.com/retraced/retraced/index/blob"
)

// Match is one file carrying a build-id.
type Match struct {
	NEVRA NEVRA
	Kind  Kind
	Path  string
	Blob  blob.Digest
	Size  int64
	// AltLink is the file's dwz multifile build-id (see File.AltLink).
	AltLink BuildID
}

// Lookup returns every file carrying id, newest package first, or
// ErrNotFound.
//
// The returned slice is shared with the cache: callers must not modify it.
func (s *Store) Lookup(id BuildID) ([]Match, error) {
	var gen uint64
	if s.cache != nil {
		if ms, ok := s.cache.get(id); ok {
			if ms == nil {
				return nil, fmt.Errorf("build-id %s: %w", id, ErrNotFound)
			}
			return ms, nil
		}
		gen = s.cache.gen.Load()
	}
	ms, err := s.lookup(id)
	if s.cache != nil && (err == nil || errors.Is(err, ErrNotFound)) {
		s.cache.put(id, ms, gen)
	}
	return ms, err
}

func (s *Store) lookup(id BuildID) ([]Match, error) {
	var ms []Match
	var found bool
	err := s.db.View(func(txn kv.Reader) error {
		var err error
		ms, found, err = txnMatches(txn, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("build-id %s: %w", id, ErrNotFound)
	}
	return ms, nil
}

// txnMatches reads the matches of id within txn; found is false when the
// index has none.
func txnMatches(txn kv.Reader, id BuildID) (ms []Match, found bool, err error) {
	v, err := txn.Get(buildIDKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if ms, err = decodeMatches(v); err != nil {
		return nil, false, fmt.Errorf("build-id %s: %w", id, err)
	}
	return ms, true, nil
}

// sortMatches orders newest package first, then by path.
func sortMatches(ms []Match) {
	slices.SortFunc(ms, func(a, b Match) int {
		if c := b.NEVRA.Compare(a.NEVRA); c != 0 {
			return c
		}
		if a.Kind != b.Kind {
			return int(a.Kind) - int(b.Kind)
		}
		return bytes.Compare([]byte(a.Path), []byte(b.Path))
	})
}
