package index

// The Store: opening and closing the Badger database, the gate between
// syncs and gc, and the helpers reads and writes go through. The rest is
// by subject: package.go (packages and their files), lookup.go (build-id
// matches), source.go (sources and membership), write.go (putting and
// deleting packages); keys are built in keys.go, values in codec.go.

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// ErrNotFound reports an unknown build-id, package or source.
var ErrNotFound = errors.New("not found")

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
