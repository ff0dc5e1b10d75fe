package index

// Sources: the mirror's records of them, the packages each has listed
// (membership) and, per package, the sources that list it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/retraced/retraced/index/kv"
)

// SourcesOf returns the sources listing package n, from a small cache
// valid for one generation (the resolver needs them for every match;
// decoding the package record each time would dominate a lookup). The
// slice is shared with other callers: do not modify it.
func (s *Store) SourcesOf(n NEVRA) ([]string, error) {
	gen := s.gen.Load()
	s.srcMu.RLock()
	if s.srcGen == gen {
		if v, ok := s.srcCache[n]; ok {
			s.srcMu.RUnlock()
			return v, nil
		}
	}
	s.srcMu.RUnlock()
	v, err := s.repos(n)
	if err != nil {
		return nil, err
	}
	s.srcMu.Lock()
	switch {
	case s.srcCache == nil || s.srcGen != gen:
		s.srcCache, s.srcGen = map[NEVRA][]string{}, gen
	case len(s.srcCache) >= 1<<16:
		for k := range s.srcCache { // map order is random: evict one at random
			delete(s.srcCache, k)
			break
		}
	}
	if s.gen.Load() == gen {
		s.srcCache[n] = v
	}
	s.srcMu.Unlock()
	return v, nil
}

// repos reads the sources of package n from its repos key, or from the
// package itself in a store written before that key existed.
func (s *Store) repos(n NEVRA) ([]string, error) {
	v, err := s.getCopy(reposKey(n), "package "+n.String())
	if err == nil {
		return decodeRepos(v), nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	p, err := s.Package(n)
	if err != nil {
		return nil, err
	}
	if p.Sources == nil {
		return []string{}, nil
	}
	return p.Sources, nil
}

func encodeRepos(srcs []string) []byte { return []byte(strings.Join(srcs, "\x00")) }

func decodeRepos(v []byte) []string {
	if len(v) == 0 {
		return []string{}
	}
	return strings.Split(string(v), "\x00")
}

// AddMembership records that source lists package n (already stored).
func (s *Store) AddMembership(source string, n NEVRA, checksum string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(func(txn kv.Txn) error {
		p, err := getPackage(txn, n)
		if err != nil {
			return err
		}
		if !slices.Contains(p.Sources, source) {
			p.Sources = append(p.Sources, source)
			v, err := json.Marshal(p)
			if err != nil {
				return err
			}
			if err := txn.Set(packageKey(n), v); err != nil {
				return err
			}
			if err := txn.Set(reposKey(n), encodeRepos(p.Sources)); err != nil {
				return err
			}
		}
		return txn.Set(sourcePkgKey(source, n), []byte(checksum))
	})
}

// HasMembership reports whether source has listed package n.
func (s *Store) HasMembership(source string, n NEVRA) (bool, error) {
	return s.has(sourcePkgKey(source, n))
}

// SourcePackages calls fn for every package source has listed.
func (s *Store) SourcePackages(source string, fn func(n NEVRA) error) error {
	return s.db.View(func(txn kv.Reader) error {
		return txn.Scan(sourcePkgPrefix(source), true, func(k, _ []byte) error {
			n, err := sourcePkgFromKey(source, k)
			if err != nil {
				return fmt.Errorf("source %s: %w", source, err)
			}
			return fn(n)
		})
	})
}

// PutSource stores the mirror's record of a source.
func (s *Store) PutSource(name string, rec []byte) error {
	return s.update(func(txn kv.Txn) error { return txn.Set(sourceKey(name), rec) })
}

// Source returns the mirror's record of a source, or ErrNotFound.
func (s *Store) Source(name string) ([]byte, error) {
	return s.getCopy(sourceKey(name), fmt.Sprintf("source %q", name))
}

// Sources calls fn with every source record, by name.
func (s *Store) Sources(fn func(name string, rec []byte) error) error {
	return s.db.View(func(txn kv.Reader) error {
		return txn.Scan([]byte(prefixSource), false, func(k, v []byte) error {
			return fn(string(k[len(prefixSource):]), append([]byte(nil), v...))
		})
	})
}

// PutSourceState stores the mirror's crawl state of a source.
func (s *Store) PutSourceState(name string, st []byte) error {
	return s.update(func(txn kv.Txn) error { return txn.Set(stateKey(name), st) })
}

// SourceState returns the mirror's crawl state of a source, or ErrNotFound.
func (s *Store) SourceState(name string) ([]byte, error) {
	return s.getCopy(stateKey(name), fmt.Sprintf("state of source %q", name))
}

// DeleteSource forgets a source's record. Its packages and membership
// stay: gc decides what no source needs any more.
func (s *Store) DeleteSource(name string) error {
	return s.update(func(txn kv.Txn) error {
		if _, err := txn.Get(sourceKey(name)); errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("source %q: %w", name, ErrNotFound)
		}
		if err := txn.Delete(stateKey(name)); err != nil {
			return err
		}
		return txn.Delete(sourceKey(name))
	})
}
