package index

// Writing packages: put and delete, each package whole in one
// transaction with its build-id matches, its sources' membership and the
// totals.

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/retraced/retraced/index/kv"
)

// PutPackage records p, its files and their build-ids, and p's membership
// in each of p.Sources, in one transaction: readers see all of it or none.
// The caller must have stored every blob p names. If the package is
// already present, only its sources are merged.
func (s *Store) PutPackage(p *Package) error { return s.PutPackages([]*Package{p}) }

// PutPackages records several packages, in as few transactions as
// Badger's transaction size allows; each package still lands whole.
func (s *Store) PutPackages(ps []*Package) error {
	for _, p := range ps {
		if err := p.NEVRA.Validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return inBatches(ps, len(ps), s.putBatch)
}

func (s *Store) putBatch(ps []*Package) error {
	if s.cache != nil {
		var ids []BuildID
		for _, p := range ps {
			ids = append(ids, p.buildIDs()...)
		}
		defer s.cache.invalidate(ids)
	}
	err := s.update(func(txn kv.Txn) error {
		// What putOne reads, in one round trip where that pays.
		keys := [][]byte{[]byte(keyCounts)}
		for _, p := range ps {
			keys = append(keys, packageKey(p.NEVRA))
			for _, id := range p.buildIDs() {
				keys = append(keys, buildIDKey(id))
			}
		}
		if err := kv.Prefetch(txn, keys); err != nil {
			return err
		}
		counts, err := getCounts(txn)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := putOne(txn, p, &counts); err != nil {
				return err
			}
		}
		if !s.pathsMarked {
			// The store's path index is whole (Open built it), and this
			// batch adds its own packages' entries.
			if err := txn.Set([]byte(keyPathsBuilt), []byte{1}); err != nil {
				return err
			}
		}
		return txn.Set([]byte(keyCounts), encodeCounts(counts))
	})
	if err == nil {
		s.pathsMarked = true
	}
	return err
}

func putOne(txn kv.Txn, p *Package, counts *Counts) error {
	old, err := getPackage(txn, p.NEVRA)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := putMatches(txn, p, counts); err != nil {
			return err
		}
		if err := putPaths(txn, p); err != nil {
			return err
		}
		counts.Packages++
		counts.Files += uint64(len(p.Files))
	case err != nil:
		return err
	default:
		merged := *old
		merged.Sources = slices.Clone(old.Sources)
		for _, src := range p.Sources {
			if !slices.Contains(merged.Sources, src) {
				merged.Sources = append(merged.Sources, src)
			}
		}
		p = &merged
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := txn.Set(packageKey(p.NEVRA), v); err != nil {
		return err
	}
	if err := txn.Set(reposKey(p.NEVRA), encodeRepos(p.Sources)); err != nil {
		return err
	}
	for _, src := range p.Sources {
		if err := txn.Set(sourcePkgKey(src, p.NEVRA), []byte(p.Checksum)); err != nil {
			return err
		}
	}
	return nil
}

func putMatches(txn kv.Txn, p *Package, counts *Counts) error {
	byID := map[BuildID][]Match{}
	for _, f := range p.Files {
		if f.BuildID.IsZero() || f.Kind == KindNone {
			continue
		}
		byID[f.BuildID] = append(byID[f.BuildID], Match{NEVRA: p.NEVRA, Kind: f.Kind, Path: f.Path, Blob: f.Blob, Size: f.Size, AltLink: f.AltLink})
	}
	for id, add := range byID {
		ms, found, err := txnMatches(txn, id)
		if err != nil {
			return err
		}
		if !found {
			counts.BuildIDs++
		}
		for _, m := range add {
			if !slices.ContainsFunc(ms, func(o Match) bool { return o.NEVRA == m.NEVRA && o.Path == m.Path }) {
				ms = append(ms, m)
			}
		}
		sortMatches(ms)
		if err := txn.Set(buildIDKey(id), encodeMatches(ms)); err != nil {
			return err
		}
	}
	return nil
}

// DeletePackage removes package n, its build-id matches and every
// source's membership of it, in one transaction. Blobs are the pool's
// business: gc removes those no package references any more.
func (s *Store) DeletePackage(n NEVRA) error {
	if _, err := s.Package(n); err != nil {
		return err
	}
	return s.DeletePackages([]NEVRA{n})
}

// DeletePackages removes packages as DeletePackage does, in as few
// transactions as Badger allows; each package goes whole. Unknown ones
// are skipped.
func (s *Store) DeletePackages(ns []NEVRA) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return inBatches(ns, 1000, s.deleteBatch)
}

func (s *Store) deleteBatch(ns []NEVRA) error {
	var touched []BuildID
	if s.cache != nil {
		defer func() { s.cache.invalidate(touched) }()
	}
	return s.update(func(txn kv.Txn) error {
		touched = touched[:0]
		counts, err := getCounts(txn)
		if err != nil {
			return err
		}
		for _, n := range ns {
			p, err := getPackage(txn, n)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			touched = append(touched, p.buildIDs()...)
			if err := deleteOne(txn, p, &counts); err != nil {
				return err
			}
		}
		return txn.Set([]byte(keyCounts), encodeCounts(counts))
	})
}

func deleteOne(txn kv.Txn, p *Package, counts *Counts) error {
	n := p.NEVRA
	seen := map[BuildID]bool{}
	for _, id := range p.buildIDs() {
		if seen[id] {
			continue
		}
		seen[id] = true
		ms, found, err := txnMatches(txn, id)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		ms = slices.DeleteFunc(ms, func(m Match) bool { return m.NEVRA == n })
		if len(ms) == 0 {
			counts.BuildIDs--
			if err := txn.Delete(buildIDKey(id)); err != nil {
				return err
			}
		} else if err := txn.Set(buildIDKey(id), encodeMatches(ms)); err != nil {
			return err
		}
	}
	if err := deletePaths(txn, p); err != nil {
		return err
	}
	for _, src := range p.Sources {
		if err := txn.Delete(sourcePkgKey(src, n)); err != nil {
			return err
		}
	}
	if err := txn.Delete(packageKey(n)); err != nil {
		return err
	}
	if err := txn.Delete(reposKey(n)); err != nil {
		return err
	}
	counts.Packages--
	counts.Files -= min(counts.Files, uint64(len(p.Files)))
	return nil
}

// inBatches calls commit on successive batches of items, at most max at a
// time, halving a batch Badger finds too big for one transaction; a
// single item that is still too big is an error.
func inBatches[T any](items []T, max int, commit func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), max)
		for {
			err := commit(items[:n])
			if errors.Is(err, kv.ErrTooBig) && n > 1 {
				n /= 2
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		items = items[n:]
	}
	return nil
}
