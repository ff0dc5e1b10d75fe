package plan

import (
	"context"
	"io/fs"
	"path/filepath"
	"time"
)

// Owner is a component with collectable state (retrace tasks, sysroots).
// Plan lists what it would delete now; Delete deletes those.
type Owner interface {
	Plan(ctx context.Context, now time.Time) ([]Item, error)
	Delete(ctx context.Context, items []Item) error
}

// Kind says what an Item is, and so who deletes it and how. An Owner
// names its own kinds ("task", "sysroot").
type Kind string

// Item is one thing a collection removes.
type Item struct {
	Kind  Kind
	Name  string
	Bytes int64
	// Owner is who deletes it (nil: gc itself).
	Owner Owner `json:"-"`
}

// TreeSize is the bytes of the regular files below dir, for an owner's
// Item.Bytes; what it cannot read counts 0.
func TreeSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
