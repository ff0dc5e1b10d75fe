package index

// The Store: opening and closing the Badger database, the gate between
// syncs and gc, and the helpers reads and writes go through. The rest is
// by subject: package.go (packages and their files), lookup.go (build-id
// matches), source.go (sources and membership), write.go (putting and
// deleting packages); keys are built in keys.go, values in codec.go.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/retraced/retraced/index/kv"
)

// ErrNotFound reports an unknown build-id, package or source.
var ErrNotFound = errors.New("not found")

// ErrLeaseHeld reports a lease (a source's sync, gc) that another node
// holds.
var ErrLeaseHeld = kv.ErrLeaseHeld

// Options tune a Store.
type Options struct {
	// ReadOnly opens the database without taking its write lock (Badger).
	ReadOnly bool
	// CacheMB is Badger's block cache; 0 picks 16. Serving answers
	// repeated ids from the lookup cache above it, and a block missed here
	// costs one decompression of a few KB, while every MB of cache is heap
	// the garbage collector keeps under the memory limit.
	CacheMB int64
	// SyncWrites makes every commit durable before it returns (Badger;
	// PostgreSQL commits are durable as the server is configured).
	SyncWrites bool
	// CacheEntries bounds the lookup cache; 0 picks 65536, -1 disables.
	CacheEntries int
	// Node names this process where leases are shown ("" picks
	// HOSTNAME:PID).
	Node string
}

// Store is the catalogue, on one of kv's engines: Badger embedded (Open)
// or PostgreSQL shared by several nodes (OpenPostgres). Reads are safe
// from any goroutine; writes are serialised by the engine, across nodes.
type Store struct {
	db    kv.Engine
	mu    sync.Mutex // serialises read-modify-write transactions
	cache *lookupCache
	gen   atomic.Uint64 // bumped after every write, here or on another node

	// pathsBuilt: the path index covers every package (paths.go);
	// pathsMarked (under mu): keyPathsBuilt says so on disk.
	pathsBuilt  atomic.Bool
	pathsMarked bool

	srcMu    sync.RWMutex
	srcGen   uint64
	srcCache map[NEVRA][]string

	node      string
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Node is this process's name in Holders (Options.Node).
func (s *Store) Node() string { return s.node }

// gateLock is the engine lock behind Hold and Quiesce.
const gateLock = "gate"

// Hold is taken by a writer whose work spans more than one call: a sync
// holds it from the first file it stores for a package to the package's
// commit, or from finding a package present to linking it. It returns
// the release. On PostgreSQL it holds across nodes, and fails when the
// database cannot be reached.
func (s *Store) Hold() (release func(), err error) {
	return s.db.Lock(context.Background(), gateLock, true)
}

// Quiesce waits until no writer holds the store, on any node, and keeps
// new ones out until its release: gc re-checks its plan and deletes under
// it, so that it never removes a package a sync just linked or a file a
// sync just found already stored.
func (s *Store) Quiesce() (release func(), err error) {
	return s.db.Lock(context.Background(), gateLock, false)
}

// Lease takes the lease name (the mirror takes "sync/SOURCE", gc takes
// "gc") unless another node holds it, when it fails with ErrLeaseHeld.
// The returned context ends when the lease is lost or released: run the
// leased work under it. On Badger a lease is this process's own.
func (s *Store) Lease(ctx context.Context, name string) (context.Context, func(), error) {
	return s.db.Lease(ctx, name)
}

// Holders names, per lease held on any node, the node holding it.
func (s *Store) Holders(ctx context.Context) (map[string]string, error) {
	return s.db.Holders(ctx)
}

// Generation changes after every write; a reader that cached something
// derived from the index can keep it while Generation is unchanged.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// Open opens (creating) the Badger database in dir. Badger locks the
// directory; a second writer gets an error wrapping Badger's.
func Open(dir string, o Options) (*Store, error) {
	db, err := kv.OpenBadger(dir, kv.BadgerOptions{ReadOnly: o.ReadOnly, CacheMB: o.CacheMB, SyncWrites: o.SyncWrites, Node: o.Node})
	if err != nil {
		return nil, err
	}
	return openStore(db, o)
}

// OpenPostgres opens the index in the PostgreSQL database dsn, creating
// its tables when missing. Any number of nodes may open the same one.
func OpenPostgres(ctx context.Context, dsn string, o Options) (*Store, error) {
	db, err := kv.OpenPostgres(ctx, dsn, kv.PostgresOptions{Node: o.Node})
	if err != nil {
		return nil, err
	}
	return openStore(db, o)
}

// openStore wraps db and builds the path index if it lacks one.
func openStore(db kv.Engine, o Options) (*Store, error) {
	s := newStore(db, o)
	if err := s.buildPaths(o.ReadOnly); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func newStore(db kv.Engine, o Options) *Store {
	s := &Store{db: db, node: o.Node, stop: make(chan struct{}), done: make(chan struct{})}
	switch {
	case o.CacheEntries == 0:
		s.cache = newLookupCache(1 << 16)
	case o.CacheEntries > 0:
		s.cache = newLookupCache(o.CacheEntries)
	}
	go s.follow()
	return s
}

// follow forgets what the caches hold whenever another node commits.
func (s *Store) follow() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.db.Changed():
			s.gen.Add(1)
			if s.cache != nil {
				s.cache.invalidateAll()
			}
		}
	}
}

// Flatten reorganises the database after a bulk load, waiting until it is
// done, so that reads do not compete with background compaction.
func (s *Store) Flatten() error { return s.db.Compact() }

// Close closes the database; a second Close does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// has reports whether key exists.
func (s *Store) has(key []byte) (bool, error) {
	var found bool
	err := s.db.View(func(r kv.Reader) error {
		var err error
		found, err = r.Has(key)
		return err
	})
	return found, err
}

// getCopy returns a copy of key's value; what names it in ErrNotFound.
func (s *Store) getCopy(key []byte, what string) ([]byte, error) {
	var v []byte
	err := s.db.View(func(r kv.Reader) error {
		var err error
		v, err = r.Get(key)
		return err
	})
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return v, err
}

// Counts returns the index totals.
func (s *Store) Counts() (Counts, error) {
	var c Counts
	err := s.db.View(func(r kv.Reader) error {
		var err error
		c, err = getCounts(r)
		return err
	})
	return c, err
}

func getCounts(r kv.Reader) (Counts, error) {
	v, err := r.Get([]byte(keyCounts))
	if errors.Is(err, kv.ErrNotFound) {
		return Counts{}, nil
	}
	if err != nil {
		return Counts{}, err
	}
	return decodeCounts(v)
}

func (s *Store) update(fn func(txn kv.Txn) error) error {
	err := s.db.Update(fn)
	s.gen.Add(1)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("index write: %w", err)
	}
	return err
}
