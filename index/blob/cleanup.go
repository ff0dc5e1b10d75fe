package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// The pool plans the cleanup of its own files other than blobs, so that
// gc, which decides when to collect, need not know the layout: plain/ (a
// cache of uncompressed copies with a byte budget) and tmp/ (what
// interrupted writes left). Whether a blob is still wanted is the index's
// to say; gc passes that in.

// A PlainCopy is one uncompressed copy under plain/.
type PlainCopy struct {
	Digest Digest
	Size   int64
	// Used is when the copy was last read (the file's access time, with
	// relatime's at-least-daily updates), else last written.
	Used time.Time
}

// PlainPlan is what PlanPlain would remove of the uncompressed copies.
type PlainPlan struct {
	// Evict lists copies of wanted blobs to remove, least recently used
	// first, so that the copies fit the budget.
	Evict []PlainCopy
	// Unwanted holds the digests of the copies whose blob is not wanted:
	// they go with their blob (RemovePlain, then Remove).
	Unwanted map[Digest]bool
}

// PlanPlain plans the cleanup of plain/: the copies of blobs wanted
// reports false are Unwanted; of the others, the least recently used are
// evicted while all copies together (unwanted ones included) exceed
// budget bytes. It deletes nothing.
func (p *Pool) PlanPlain(budget int64, wanted func(Digest) bool) (*PlainPlan, error) {
	copies, err := p.plainCopies()
	if err != nil {
		return nil, err
	}
	plan := &PlainPlan{Unwanted: map[Digest]bool{}}
	var total int64
	for _, c := range copies {
		total += c.Size
	}
	for _, c := range copies {
		switch {
		case !wanted(c.Digest):
			plan.Unwanted[c.Digest] = true
		case total > budget:
			plan.Evict = append(plan.Evict, c)
			total -= c.Size
		}
	}
	return plan, nil
}

// plainCopies lists plain/, least recently used first. Files that are not
// named by a digest, or vanish while listed, are skipped.
func (p *Pool) plainCopies() ([]PlainCopy, error) {
	var copies []PlainCopy
	err := filepath.WalkDir(filepath.Join(p.dir, "plain"), func(path string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || e.IsDir() {
			return err
		}
		d, perr := ParseDigest(e.Name())
		if perr != nil {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		copies = append(copies, PlainCopy{Digest: d, Size: fi.Size(), Used: accessTime(fi)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list plain copies: %w", err)
	}
	sort.Slice(copies, func(i, j int) bool { return copies[i].Used.Before(copies[j].Used) })
	return copies, nil
}

// A Temp is an entry of tmp/ that an interrupted write left behind.
type Temp struct {
	Path string // absolute, as RemoveTemp takes it
	Size int64
}

// StaleTemps lists the entries of tmp/ not modified after cutoff: a write
// in progress touches its file, so one older than any write can last is
// left over. It deletes nothing.
func (p *Pool) StaleTemps(cutoff time.Time) ([]Temp, error) {
	dir := filepath.Join(p.dir, "tmp")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list blob tmp: %w", err)
	}
	var temps []Temp
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		temps = append(temps, Temp{Path: filepath.Join(dir, e.Name()), Size: fi.Size()})
	}
	return temps, nil
}

// RemoveTemp removes path, an entry of tmp/ as StaleTemps names it;
// any other path is refused. Removing a missing entry is not an error.
func (p *Pool) RemoveTemp(path string) error {
	if filepath.Dir(path) != filepath.Join(p.dir, "tmp") {
		return fmt.Errorf("remove blob temp %s: not in %s", path, filepath.Join(p.dir, "tmp"))
	}
	return os.RemoveAll(path)
}
