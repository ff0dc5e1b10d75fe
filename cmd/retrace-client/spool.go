package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The spool of watch and core-handler is one directory, kept only in the
// file system so that a kill -9 or a reboot at any point resumes where it
// was:
//
//	SPOOL/core_%e_%p_%t        a core, written by the kernel or core-handler
//	SPOOL/.tmp-*               a file being written atomically (ignored)
//	SPOOL/items/ID/coredump    the core, moved in once it was complete
//	SPOOL/items/ID/executable  the program, ABRT's crash directory layout
//	SPOOL/items/ID/crash.tar.xz  the packed crash (found -> packed)
//	SPOOL/items/ID/state.json  the item's state (see item)
//	SPOOL/items/ID/backtrace, log  the server's answer (finished)
//
// Every file is written as a temporary file in the same directory,
// fsynced, then renamed; the directory is fsynced after the rename.

// state is where an item is in its way to a backtrace.
type state string

const (
	stateFound      state = "found"      // the core is in the item, not yet packed
	statePacked     state = "packed"     // crash.tar.xz is complete
	stateSubmitting state = "submitting" // POST /create was under way
	stateSubmitted  state = "submitted"  // the server gave a task id and password
	stateFinished   state = "finished"   // backtrace and log saved
	stateFailed     state = "failed"     // given up, Reason says why; files kept
)

// item is one core in the spool; state.json holds it.
type item struct {
	ID         string    `json:"-"`
	State      state     `json:"state"`
	Executable string    `json:"executable,omitempty"`
	PID        int       `json:"pid,omitempty"`
	Time       time.Time `json:"time"` // of the crash, from the core's name, else when it was found
	Size       int64     `json:"size"` // of the core
	URL        string    `json:"url,omitempty"`
	// Key names the task on the server (X-Task-Key), chosen before the
	// first upload and kept: an upload repeated after a kill or a lost
	// answer gets the same task back, never a second one.
	Key      string    `json:"task_key,omitempty"`
	TaskID   string    `json:"task_id,omitempty"`
	Password string    `json:"task_password,omitempty"`
	Attempts int       `json:"attempts,omitempty"` // failed submissions since the last success or retry
	Reason   string    `json:"reason,omitempty"`   // the last error, or why it failed
	Finished time.Time `json:"finished,omitzero"`

	// due is when the watcher next works on the item (in memory only: a
	// restart works on everything at once).
	due time.Time
	// poll is the current wait between status polls.
	poll time.Duration
}

const (
	itemsDir  = "items"
	stateFile = "state.json"
	archive   = "crash.tar.xz"
)

func itemDir(spool, id string) string { return filepath.Join(spool, itemsDir, id) }

// writeAtomic writes data to path: a temporary file in the same
// directory, fsynced, renamed over path, the directory fsynced.
func writeAtomic(path string, data []byte) error {
	return writeAtomicFrom(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomicFrom is writeAtomic of what fill writes.
func writeAtomicFrom(path string, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreNotExist(os.Remove(f.Name())))
		}
	}()
	if err = fill(f); err != nil {
		return errors.Join(err, f.Close())
	}
	if err = f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// save writes the item's state.json.
func (it *item) save(spool string) error {
	b, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(itemDir(spool, it.ID), stateFile), append(b, '\n')); err != nil {
		return fmt.Errorf("save the state of %s: %w", it.ID, err)
	}
	return nil
}

// errNoItem is an item directory left empty by a stop between its mkdir
// and the move of the core into it: the core is still in the spool.
var errNoItem = errors.New("no item")

// loadItem reads an item; an item directory without state.json (the
// watcher stopped between moving the core in and saving its state) is
// found again when it has its coredump.
func loadItem(spool, id string) (*item, error) {
	dir := itemDir(spool, id)
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		fi, serr := os.Stat(filepath.Join(dir, "coredump"))
		if errors.Is(serr, fs.ErrNotExist) {
			return nil, errNoItem
		}
		if serr != nil {
			return nil, fmt.Errorf("item %s: %w", id, serr)
		}
		it := newItem(id, fi)
		return it, nil
	}
	if err != nil {
		return nil, err
	}
	it := &item{ID: id}
	if err := json.Unmarshal(b, it); err != nil {
		return nil, fmt.Errorf("item %s: %s: %w", id, stateFile, err)
	}
	return it, nil
}

// newItem is a found item for the core named id (core_%e_%p_%t).
func newItem(id string, fi fs.FileInfo) *item {
	it := &item{ID: id, State: stateFound, Size: fi.Size(), Time: fi.ModTime().UTC().Truncate(time.Second)}
	if comm, pid, t, ok := parseCoreName(id); ok {
		it.Executable, it.PID, it.Time = comm, pid, t
	}
	return it
}

// maxCoreTime is 9999-12-31T23:59:59Z, the last second state.json holds.
const maxCoreTime = 253402300799

// parseCoreName reads core_%e_%p_%t (%e may hold underscores).
func parseCoreName(name string) (comm string, pid int, t time.Time, ok bool) {
	rest, found := strings.CutPrefix(name, "core_")
	if !found {
		return "", 0, time.Time{}, false
	}
	parts := strings.Split(rest, "_")
	if len(parts) < 3 {
		return "", 0, time.Time{}, false
	}
	n := len(parts)
	p, err1 := strconv.Atoi(parts[n-2])
	sec, err2 := strconv.ParseInt(parts[n-1], 10, 64)
	// Anyone who may write to the spool names files there: a time that
	// state.json cannot hold (JSON times stop at year 9999) or a pid
	// below 1 is no kernel's.
	if err1 != nil || err2 != nil || p < 1 || sec < 0 || sec > maxCoreTime {
		return "", 0, time.Time{}, false
	}
	return strings.Join(parts[:n-2], "_"), p, time.Unix(sec, 0).UTC(), true
}

// loadItems reads every item of the spool, oldest crash first.
func loadItems(spool string) ([]*item, error) {
	entries, err := os.ReadDir(filepath.Join(spool, itemsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var items []*item
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		it, err := loadItem(spool, e.Name())
		if errors.Is(err, errNoItem) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		items = append(items, it)
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].Time.Before(items[j].Time) })
	return items, errors.Join(errs...)
}
