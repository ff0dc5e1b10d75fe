package index

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/retraced/retraced/index/blob"
)

// ErrNotFound reports an unknown build-id, package or source.
var ErrNotFound = errors.New("not found")

// Kind says what a file carrying a build-id is.
type Kind uint8

const (
	// KindNone marks files that carry no build-id.
	KindNone Kind = iota
	// KindExecutable is a binary or shared library shipped by a package.
	KindExecutable
	// KindDebuginfo is a separate debug file (under /usr/lib/debug).
	KindDebuginfo
)

func (k Kind) String() string {
	switch k {
	case KindExecutable:
		return "executable"
	case KindDebuginfo:
		return "debuginfo"
	}
	return "none"
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "executable":
		*k = KindExecutable
	case "debuginfo":
		*k = KindDebuginfo
	case "none", "":
		*k = KindNone
	default:
		return fmt.Errorf("unknown kind %q", b)
	}
	return nil
}

// File is one file of a package that the mirror kept.
type File struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	// Size is the uncompressed size of a regular file.
	Size int64 `json:"size,omitempty"`
	// Blob names a regular file's content in the pool; zero for links.
	Blob blob.Digest `json:"blob,omitzero"`
	// Link is a symlink's target.
	Link    string  `json:"link,omitempty"`
	BuildID BuildID `json:"build_id,omitzero"`
	Kind    Kind    `json:"kind,omitempty"`
	// AltLink is, for a debug file processed by dwz, the build-id of the
	// multifile its .gnu_debugaltlink names: the file that holds the
	// debug information it shares with the rest of its build, without
	// which a debugger drops all of it.
	AltLink BuildID `json:"alt_link,omitzero"`
}

// Package is one RPM the mirror ingested.
type Package struct {
	NEVRA     NEVRA  `json:"nevra"`
	SourceRPM string `json:"source_rpm,omitempty"`
	// FileName is the RPM's file name upstream.
	FileName string `json:"file_name"`
	// Checksum is the RPM's checksum as "type:hex".
	Checksum string `json:"checksum"`
	// Fetched is the RPM's size in bytes.
	Fetched int64 `json:"fetched"`
	// Stored is what this package added to the pool, compressed.
	Stored    int64     `json:"stored"`
	BuildTime int64     `json:"build_time,omitempty"`
	Added     time.Time `json:"added"`
	Sources   []string  `json:"sources"`
	Files     []File    `json:"files"`
}

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

// MarshalText writes the NEVRA as its string form.
func (n NEVRA) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText parses the string form.
func (n *NEVRA) UnmarshalText(b []byte) error {
	v, err := ParseNEVRA(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Options tune a Store.
type Options struct {
	// ReadOnly opens the database without taking its write lock.
	ReadOnly bool
	// CacheMB is Badger's block cache; 0 picks 16. Serving answers
	// repeated ids from the lookup cache above it, and a block missed here
	// costs one decompression of a few KB, while every MB of cache is heap
	// the garbage collector keeps under the memory limit.
	CacheMB int64
	// SyncWrites makes every commit durable before it returns.
	SyncWrites bool
	// CacheEntries bounds the lookup cache; 0 picks 65536, -1 disables.
	CacheEntries int
}

// Store is the catalogue in Badger. Reads are safe from any goroutine;
// writes are serialised inside the Store.
type Store struct {
	db    *badger.DB
	mu    sync.Mutex // serialises read-modify-write transactions
	cache *lookupCache
	gen   atomic.Uint64 // bumped after every write

	srcMu    sync.RWMutex
	srcGen   uint64
	srcCache map[NEVRA][]string

	gate sync.RWMutex // see Hold and Quiesce
}

// Hold is taken by a writer whose work spans more than one call: a sync
// holds it from the first file it stores for a package to the package's
// commit, or from finding a package present to linking it. It returns
// the release.
func (s *Store) Hold() (release func()) {
	s.gate.RLock()
	return s.gate.RUnlock
}

// Quiesce waits until no writer holds the store and keeps new ones out
// until its release: gc re-checks its plan and deletes under it, so that
// it never removes a package a sync just linked or a file a sync just
// found already stored.
func (s *Store) Quiesce() (release func()) {
	s.gate.Lock()
	return s.gate.Unlock
}

// Generation changes after every write; a reader that cached something
// derived from the index can keep it while Generation is unchanged.
func (s *Store) Generation() uint64 { return s.gen.Load() }

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

// Open opens (creating) the database in dir. Badger locks the directory;
// a second writer gets an error wrapping Badger's.
func Open(dir string, o Options) (*Store, error) {
	if o.CacheMB == 0 {
		o.CacheMB = 16
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithReadOnly(o.ReadOnly).
		WithSyncWrites(o.SyncWrites).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(o.CacheMB << 20).
		WithIndexCacheSize(32 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	s := &Store{db: db}
	switch {
	case o.CacheEntries == 0:
		s.cache = newLookupCache(1 << 16)
	case o.CacheEntries > 0:
		s.cache = newLookupCache(o.CacheEntries)
	}
	return s, nil
}

// Flatten compacts every level into one, waiting until it is done: after
// a bulk load, so that reads do not compete with background compaction.
func (s *Store) Flatten() error {
	if err := s.db.Flatten(2); err != nil {
		return fmt.Errorf("index flatten: %w", err)
	}
	return nil
}

// Close flushes and closes the database.
func (s *Store) Close() error { return s.db.Close() }

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
	err := s.db.View(func(txn *badger.Txn) error {
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
func txnMatches(txn *badger.Txn, id BuildID) (ms []Match, found bool, err error) {
	it, err := txn.Get(buildIDKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	err = it.Value(func(v []byte) error {
		ms, err = decodeMatches(v)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("build-id %s: %w", id, err)
	}
	return ms, true, nil
}

// has reports whether key exists.
func (s *Store) has(key []byte) (bool, error) {
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// getCopy returns a copy of key's value; what names it in ErrNotFound.
func (s *Store) getCopy(key []byte, what string) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return v, err
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

// Package returns the package n, or ErrNotFound.
func (s *Store) Package(n NEVRA) (*Package, error) {
	var p *Package
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		p, err = getPackage(txn, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func getPackage(txn *badger.Txn, n NEVRA) (*Package, error) {
	it, err := txn.Get(packageKey(n))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("package %s: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get package %s: %w", n, err)
	}
	p := new(Package)
	err = it.Value(func(v []byte) error { return json.Unmarshal(v, p) })
	if err != nil {
		return nil, fmt.Errorf("decode package %s: %w", n, err)
	}
	return p, nil
}

// HasPackage reports whether the package n is in the index.
func (s *Store) HasPackage(n NEVRA) (bool, error) { return s.has(packageKey(n)) }

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

// inBatches calls commit on successive batches of items, at most max at a
// time, halving a batch Badger finds too big for one transaction; a
// single item that is still too big is an error.
func inBatches[T any](items []T, max int, commit func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), max)
		for {
			err := commit(items[:n])
			if errors.Is(err, badger.ErrTxnTooBig) && n > 1 {
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

func (s *Store) putBatch(ps []*Package) error {
	if s.cache != nil {
		var ids []BuildID
		for _, p := range ps {
			ids = append(ids, p.buildIDs()...)
		}
		defer s.cache.invalidate(ids)
	}
	return s.update(func(txn *badger.Txn) error {
		counts, err := getCounts(txn)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if err := putOne(txn, p, &counts); err != nil {
				return err
			}
		}
		return txn.Set([]byte(keyCounts), encodeCounts(counts))
	})
}

func putOne(txn *badger.Txn, p *Package, counts *Counts) error {
	old, err := getPackage(txn, p.NEVRA)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := putMatches(txn, p, counts); err != nil {
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

func (p *Package) buildIDs() []BuildID {
	var ids []BuildID
	for _, f := range p.Files {
		if !f.BuildID.IsZero() {
			ids = append(ids, f.BuildID)
		}
	}
	return ids
}

func putMatches(txn *badger.Txn, p *Package, counts *Counts) error {
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

// AddMembership records that source lists package n (already stored).
func (s *Store) AddMembership(source string, n NEVRA, checksum string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(func(txn *badger.Txn) error {
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
	return s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = sourcePkgPrefix(source)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n, err := sourcePkgFromKey(source, it.Item().Key())
			if err != nil {
				return fmt.Errorf("source %s: %w", source, err)
			}
			if err := fn(n); err != nil {
				return err
			}
		}
		return nil
	})
}

// Packages calls fn for every package in the index, in key order.
func (s *Store) Packages(fn func(p *Package) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte(prefixPackage)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			p := new(Package)
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, p) }); err != nil {
				return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutSource stores the mirror's record of a source.
func (s *Store) PutSource(name string, rec []byte) error {
	return s.update(func(txn *badger.Txn) error { return txn.Set(sourceKey(name), rec) })
}

// Source returns the mirror's record of a source, or ErrNotFound.
func (s *Store) Source(name string) ([]byte, error) {
	return s.getCopy(sourceKey(name), fmt.Sprintf("source %q", name))
}

// Sources calls fn with every source record, by name.
func (s *Store) Sources(fn func(name string, rec []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte(prefixSource)
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rec, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(string(it.Item().Key()[len(prefixSource):]), rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutSourceState stores the mirror's crawl state of a source.
func (s *Store) PutSourceState(name string, st []byte) error {
	return s.update(func(txn *badger.Txn) error { return txn.Set(stateKey(name), st) })
}

// SourceState returns the mirror's crawl state of a source, or ErrNotFound.
func (s *Store) SourceState(name string) ([]byte, error) {
	return s.getCopy(stateKey(name), fmt.Sprintf("state of source %q", name))
}

// DeleteSource forgets a source's record. Its packages and membership
// stay: gc decides what no source needs any more.
func (s *Store) DeleteSource(name string) error {
	return s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(sourceKey(name)); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("source %q: %w", name, ErrNotFound)
		}
		if err := txn.Delete(stateKey(name)); err != nil {
			return err
		}
		return txn.Delete(sourceKey(name))
	})
}

// Counts returns the index totals.
func (s *Store) Counts() (Counts, error) {
	var c Counts
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		c, err = getCounts(txn)
		return err
	})
	return c, err
}

func getCounts(txn *badger.Txn) (Counts, error) {
	it, err := txn.Get([]byte(keyCounts))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Counts{}, nil
	}
	if err != nil {
		return Counts{}, err
	}
	var c Counts
	err = it.Value(func(v []byte) error {
		c, err = decodeCounts(v)
		return err
	})
	return c, err
}

func (s *Store) update(fn func(txn *badger.Txn) error) error {
	err := s.db.Update(fn)
	s.gen.Add(1)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("index write: %w", err)
	}
	return err
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
	return s.update(func(txn *badger.Txn) error {
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

func deleteOne(txn *badger.Txn, p *Package, counts *Counts) error {
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

// HasNVRA reports whether a package of that name, version, release and
// arch is in the index, whatever its epoch (ABRT's package files usually
// leave the epoch out).
func (s *Store) HasNVRA(name, version, release, arch string) (bool, error) {
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchValues = false
		o.Prefix = []byte(prefixPackage + name + "-")
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid() && !found; it.Next() {
			n, err := packageFromKey(it.Item().Key())
			if err != nil {
				continue
			}
			found = n.Name == name && n.Version == version && n.Release == release && n.Arch == arch
		}
		return nil
	})
	return found, err
}
