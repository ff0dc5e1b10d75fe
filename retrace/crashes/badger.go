package crashes

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Keys of the Badger backend, all built and parsed here; "v1" is the
// layout's version.
const (
	prefixEntry   = "crash/v1/entry/"   // + signature ID -> Entry as JSON
	prefixExample = "crash/v1/example/" // + signature ID -> example backtrace
	prefixTask    = "crash/v1/task/"    // + task id -> signature ID: recorded
)

func entryKey(id string) []byte   { return []byte(prefixEntry + id) }
func exampleKey(id string) []byte { return []byte(prefixExample + id) }
func taskKey(id string) []byte    { return []byte(prefixTask + id) }

// Badger is the Backend in a Badger database of its own.
type Badger struct {
	db *badger.DB
}

// taskMarkTTL is how long a task's recorded mark lives. A task is
// recorded again only at a start after the server stopped between its
// end and its mark, so the mark needs to outlive the task (task_ttl)
// only; Badger drops it after this.
const taskMarkTTL = 90 * 24 * time.Hour

var _ Backend = (*Badger)(nil)

// OpenBadger opens (creating) the crash database in dir, small: it holds
// at most Options.MaxSignatures entries of a few KiB and their examples.
// Writes are synchronous: a crash recorded is on disk.
func OpenBadger(dir string) (*Badger, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(true).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(16 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open crash store %s: %w", dir, err)
	}
	return &Badger{db: db}, nil
}

// Load calls fn for every entry.
func (b *Badger) Load(fn func(e *Entry) error) error {
	return b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(prefixEntry)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e Entry
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) })
			if err != nil {
				return fmt.Errorf("%s: %w", it.Item().Key(), err)
			}
			if err := fn(&e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Put stores the entries, examples and task marks: one crash's in one
// transaction; a batch's in one write batch (Badger splits it into
// transactions of its size limit, so a failure midway may leave part of
// it), synced before it returns.
func (b *Badger) Put(entries []*Entry, examples, tasks map[string]string) error {
	if len(entries)+len(examples)+len(tasks) <= 8 {
		// One crash: one transaction.
		return b.db.Update(func(txn *badger.Txn) error {
			return putAll(entries, examples, tasks, txn.SetEntry)
		})
	}
	wb := b.db.NewWriteBatch()
	defer wb.Cancel()
	if err := putAll(entries, examples, tasks, wb.SetEntry); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return b.db.Sync()
}

func putAll(entries []*Entry, examples, tasks map[string]string, set func(*badger.Entry) error) error {
	for _, e := range entries {
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := set(badger.NewEntry(entryKey(e.ID), v)); err != nil {
			return err
		}
	}
	for id, ex := range examples {
		if err := set(badger.NewEntry(exampleKey(id), []byte(ex))); err != nil {
			return err
		}
	}
	for task, id := range tasks {
		if err := set(badger.NewEntry(taskKey(task), []byte(id)).WithTTL(taskMarkTTL)); err != nil {
			return err
		}
	}
	return nil
}

// Recorded reports whether a Put marked task.
func (b *Badger) Recorded(task string) (bool, error) {
	err := b.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(taskKey(task))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Example returns id's example backtrace.
func (b *Badger) Example(id string) (string, error) {
	var out string
	err := b.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(exampleKey(id))
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		out = string(v)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", ErrNotFound
	}
	return out, err
}

// Delete removes the entries of ids, their examples and the task marks
// that name them.
func (b *Badger) Delete(ids []string) error {
	gone := map[string]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	var marks [][]byte
	err := b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(prefixTask)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if gone[string(v)] {
					marks = append(marks, it.Item().KeyCopy(nil))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := b.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range ids {
		if err := wb.Delete(entryKey(id)); err != nil {
			return err
		}
		if err := wb.Delete(exampleKey(id)); err != nil {
			return err
		}
	}
	for _, k := range marks {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Close closes the database.
func (b *Badger) Close() error { return b.db.Close() }
