package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// BadgerOptions tune OpenBadger.
type BadgerOptions struct {
	ReadOnly   bool
	CacheMB    int64 // Badger's block cache; 0 picks 16
	SyncWrites bool
	// Node names this process in Holders.
	Node string
}

// Badger is the embedded engine: one process owns the directory
// (Badger locks it), so locks and leases are this process's own.
type Badger struct {
	db   *badger.DB
	node string

	mu     sync.Mutex
	leases map[string]context.CancelFunc
	locks  map[string]*sync.RWMutex
}

// OpenBadger opens (creating) the database in dir. A second writer gets
// an error wrapping Badger's.
func OpenBadger(dir string, o BadgerOptions) (*Badger, error) {
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
	return &Badger{db: db, node: o.Node, leases: map[string]context.CancelFunc{}, locks: map[string]*sync.RWMutex{}}, nil
}

type badgerTxn struct{ txn *badger.Txn }

func (t badgerTxn) Get(key []byte) ([]byte, error) {
	it, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return it.ValueCopy(nil)
}

func (t badgerTxn) Has(key []byte) (bool, error) {
	_, err := t.txn.Get(key) // the item only: the value stays unread
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (t badgerTxn) Scan(prefix []byte, keysOnly bool, fn func(k, v []byte) error) error {
	o := badger.DefaultIteratorOptions
	o.PrefetchValues = !keysOnly
	o.Prefix = prefix
	it := t.txn.NewIterator(o)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if keysOnly {
			if err := fn(item.Key(), nil); err != nil {
				return err
			}
			continue
		}
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

func (t badgerTxn) Set(key, value []byte) error { return tooBig(t.txn.Set(key, value)) }

func (t badgerTxn) Delete(key []byte) error { return tooBig(t.txn.Delete(key)) }

func tooBig(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("%w: %w", ErrTooBig, err)
	}
	return err
}

// View implements Engine.
func (b *Badger) View(fn func(Reader) error) error {
	return b.db.View(func(txn *badger.Txn) error { return fn(badgerTxn{txn}) })
}

// Update implements Engine.
func (b *Badger) Update(fn func(Txn) error) error {
	return tooBig(b.db.Update(func(txn *badger.Txn) error { return fn(badgerTxn{txn}) }))
}

// Lock implements Engine within this process.
func (b *Badger) Lock(ctx context.Context, name string, shared bool) (func(), error) {
	b.mu.Lock()
	l := b.locks[name]
	if l == nil {
		l = new(sync.RWMutex)
		b.locks[name] = l
	}
	b.mu.Unlock()
	if shared {
		l.RLock()
		return l.RUnlock, nil
	}
	l.Lock()
	return l.Unlock, nil
}

// Lease implements Engine within this process.
func (b *Badger) Lease(ctx context.Context, name string) (context.Context, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.leases[name] != nil {
		return nil, nil, fmt.Errorf("lease %s: %w", name, ErrLeaseHeld)
	}
	lctx, cancel := context.WithCancel(ctx)
	b.leases[name] = cancel
	var once sync.Once
	return lctx, func() {
		once.Do(func() {
			cancel()
			b.mu.Lock()
			delete(b.leases, name)
			b.mu.Unlock()
		})
	}, nil
}

// Holders implements Engine.
func (b *Badger) Holders(context.Context) (map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.leases))
	for name := range b.leases {
		out[name] = b.node
	}
	return out, nil
}

// Changed implements Engine: only this process writes.
func (b *Badger) Changed() <-chan struct{} { return nil }

// Compact flattens every level into one, waiting until it is done.
func (b *Badger) Compact() error {
	if err := b.db.Flatten(2); err != nil {
		return fmt.Errorf("index flatten: %w", err)
	}
	return nil
}

// Close flushes and closes the database.
func (b *Badger) Close() error { return b.db.Close() }
