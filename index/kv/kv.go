// Package kv is the index's storage engine: an ordered key-value store
// with transactions, in two implementations with one contract. Badger
// (OpenBadger) is the embedded default, one process on one data
// directory; PostgreSQL (OpenPostgres) holds the same keys in one table
// for any number of nodes, and adds what several nodes need: locks that
// span processes, leases that pass to another node when their holder
// dies, and word of other nodes' commits so caches stay true.
//
// Keys compare as bytes in both (Badger's order is bytes.Compare;
// PostgreSQL's bytea compares with memcmp, shorter first on a tie), so a
// prefix scan visits the same keys in the same order on either.
//
// Of retraced, kv may import nothing.
package kv

import (
	"context"
	"errors"
)

// ErrNotFound reports a key that is not there.
var ErrNotFound = errors.New("key not found")

// ErrTooBig reports a transaction larger than the engine takes at once;
// the caller splits its work and tries again.
var ErrTooBig = errors.New("transaction too big")

// ErrLeaseHeld reports a lease another process holds.
var ErrLeaseHeld = errors.New("held by another node")

// Reader reads one consistent view of the store.
type Reader interface {
	// Get returns a copy of key's value, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Has reports whether key is there, without reading its value.
	Has(key []byte) (bool, error)
	// Scan calls fn for every key starting with prefix, in order; v is
	// nil when keysOnly. k and v are valid only during the call.
	Scan(prefix []byte, keysOnly bool, fn func(k, v []byte) error) error
}

// Txn is a read-write transaction: it sees its own writes, and commits
// whole or not at all.
type Txn interface {
	Reader
	Set(key, value []byte) error
	Delete(key []byte) error
}

// Prefetcher is a transaction that reads many keys in one round trip.
// Prefetch reads keys' values, or their absence, ahead of the Gets and
// Hases that follow in the same transaction.
type Prefetcher interface {
	Prefetch(keys [][]byte) error
}

// Prefetch reads keys ahead in txn where its engine gains by it
// (PostgreSQL: one query for a package's build-ids, instead of a round
// trip per Get); elsewhere it does nothing.
func Prefetch(txn Reader, keys [][]byte) error {
	if p, ok := txn.(Prefetcher); ok {
		return p.Prefetch(keys)
	}
	return nil
}

// Engine is one store.
type Engine interface {
	// View runs fn on a read-only snapshot.
	View(fn func(Reader) error) error
	// Update runs fn in a transaction and commits it when fn returns
	// nil. Updates are serialised across every process of the store.
	Update(fn func(Txn) error) error

	// Lock takes the lock name, shared or exclusive, across every
	// process of the store, waiting for it; release gives it back.
	Lock(ctx context.Context, name string, shared bool) (release func(), err error)
	// Lease takes the lease name if no other process holds it, or fails
	// with ErrLeaseHeld at once. The returned context ends when the
	// lease is lost (its holder can no longer prove it holds it) or
	// released; work done under the lease runs under that context.
	Lease(ctx context.Context, name string) (lease context.Context, release func(), err error)
	// Changed receives after another process committed an Update
	// (nil for an engine only this process writes).
	Changed() <-chan struct{}
	// Holders names, per lease held anywhere, who holds it (this
	// node's name for its own).
	Holders(ctx context.Context) (map[string]string, error)

	// Compact reorganises storage after a bulk load (it may do nothing).
	Compact() error
	Close() error
}

// PrefixEnd returns the first key after every key starting with prefix,
// or nil when there is none (prefix is all 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
