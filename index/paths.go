package index

// The path index: every file that has a build-id match, by its path, so
// that debuginfod's /metadata search (an exact path, or a glob whose
// literal start narrows the range) reads only the keys under a prefix and
// decodes no package. It holds the files Lookup returns, no others:
// executables and debug files with a build-id, not symbolic links,
// sources or files without a build-id.

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/retraced/retraced/index/kv"
)

// ErrNoPathIndex reports a store whose path index was never built: one
// written before the index existed and opened read-only since.
var ErrNoPathIndex = errors.New("the path index is not built: open the index writable once (retraced serve does)")

// PathEntry is one file found by its path.
type PathEntry struct {
	Path    string
	NEVRA   NEVRA
	Kind    Kind
	BuildID BuildID
	// Archive is the package's RPM file name, as X-DEBUGINFOD-ARCHIVE
	// gives it.
	Archive string
}

// ScanPaths calls fn for each file whose path is path (exact) or starts
// with path (!exact) and that match accepts, in order of path, then
// package, until fn returns false. match sees the path alone, before the
// rest of the entry is decoded, so that a scan passing over many files
// costs little for each. When ctx ends the scan stops with an error
// wrapping ctx.Err(): a deadline bounds a long scan.
func (s *Store) ScanPaths(ctx context.Context, path string, exact bool, match func(path string) bool, fn func(PathEntry) bool) error {
	if !s.pathsBuilt.Load() {
		return ErrNoPathIndex
	}
	prefix := append([]byte(prefixPath), path...)
	if exact {
		prefix = append(prefix, 0)
	}
	seen := 0
	err := s.db.View(func(r kv.Reader) error {
		return r.Scan(prefix, false, func(k, v []byte) error {
			if seen++; seen%64 == 1 && ctx.Err() != nil {
				return ctx.Err()
			}
			rest := k[len(prefixPath):]
			i := bytes.LastIndexByte(rest, 0)
			if i < 0 {
				return fmt.Errorf("%w: path key %q without a package", errCodec, k)
			}
			if !match(string(rest[:i])) {
				return nil
			}
			p, n, err := pathFromKey(k)
			if err != nil {
				return err
			}
			kind, id, archive, err := decodePathValue(v)
			if err != nil {
				return fmt.Errorf("path entry %s of %s: %w", p, n, err)
			}
			if !fn(PathEntry{Path: p, NEVRA: n, Kind: kind, BuildID: id, Archive: archive}) {
				return errFound
			}
			return nil
		})
	})
	if errors.Is(err, errFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("scan paths %q: %w", path, err)
	}
	return nil
}

// indexed reports whether f is in the path index (and has build-id
// matches): the same files putMatches records.
func indexed(f File) bool { return !f.BuildID.IsZero() && f.Kind != KindNone }

// archiveName is the name a package's RPM is known by: its file name
// upstream, or, when the mirror did not record one, NEVRA.rpm.
func archiveName(p *Package) string {
	if p.FileName != "" {
		return p.FileName
	}
	return p.NEVRA.String() + ".rpm"
}

func putPaths(txn kv.Txn, p *Package) error {
	archive := archiveName(p)
	for _, f := range p.Files {
		if !indexed(f) {
			continue
		}
		if err := txn.Set(pathKey(f.Path, p.NEVRA), encodePathValue(f.Kind, f.BuildID, archive)); err != nil {
			return err
		}
	}
	return nil
}

func deletePaths(txn kv.Txn, p *Package) error {
	for _, f := range p.Files {
		if !indexed(f) {
			continue
		}
		if err := txn.Delete(pathKey(f.Path, p.NEVRA)); err != nil {
			return err
		}
	}
	return nil
}

// buildPaths makes the path index of a store written before it existed:
// every package's entries, a batch of packages per transaction that reads
// each package again before it writes its paths (so a package deleted
// meanwhile gets none), then the mark that the index is whole. A store
// that has the mark costs one read.
func (s *Store) buildPaths(readOnly bool) error {
	built, err := s.has([]byte(keyPathsBuilt))
	if err != nil {
		return fmt.Errorf("path index: %w", err)
	}
	if built {
		s.pathsMarked = true
		s.pathsBuilt.Store(true)
		return nil
	}
	var ns []NEVRA
	err = s.db.View(func(r kv.Reader) error {
		return r.Scan([]byte(prefixPackage), true, func(k, _ []byte) error {
			n, err := packageFromKey(k)
			if err != nil {
				return fmt.Errorf("package key %q: %w", k, err)
			}
			ns = append(ns, n)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("path index: %w", err)
	}
	if len(ns) == 0 {
		// Nothing to index, and nothing written: an empty store stays
		// empty (migrate copies only into one). The first package put
		// writes the mark.
		s.pathsBuilt.Store(true)
		return nil
	}
	if readOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = inBatches(ns, 256, func(batch []NEVRA) error {
		return s.update(func(txn kv.Txn) error {
			for _, n := range batch {
				p, err := getPackage(txn, n)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if err := putPaths(txn, p); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err == nil {
		err = s.update(func(txn kv.Txn) error { return txn.Set([]byte(keyPathsBuilt), []byte{1}) })
	}
	if err != nil {
		return fmt.Errorf("path index: %w", err)
	}
	s.pathsMarked = true
	s.pathsBuilt.Store(true)
	return nil
}
