package gc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/retraced/retraced/gc/plan"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// Index is what gc needs of the index.
type Index interface {
	Packages(fn func(p *index.Package) error) error
	DeletePackages(ns []index.NEVRA) error
	// Quiesce keeps syncs from committing until its release.
	Quiesce() (release func(), err error)
}

// Pool is what gc needs of the blob pool. The pool plans the cleanup of
// its uncompressed copies and temp files itself (PlanPlain, StaleTemps):
// gc knows nothing of its layout.
type Pool interface {
	WalkInfo(fn func(d blob.Digest, fi fs.FileInfo) error) error
	Remove(d blob.Digest) error
	RemovePlain(d blob.Digest) error
	PlanPlain(budget int64, wanted func(blob.Digest) bool) (*blob.PlainPlan, error)
	StaleTemps(cutoff time.Time) ([]blob.Temp, error)
	RemoveTemp(path string) error
	// DeltaBase reports the base of blob d when it is stored as a delta
	// (ok false for a whole blob), reading it: a base stays while a
	// delta on it does.
	DeltaBase(d blob.Digest) (base blob.Digest, ok bool, err error)
}

var (
	_ Index = (*index.Store)(nil)
	_ Pool  = (*blob.Pool)(nil)
)

// Owner, Kind and Item are gc/plan's: the contract owners implement
// without importing gc.
type (
	Owner = plan.Owner
	Kind  = plan.Kind
	Item  = plan.Item
)

// The kinds gc plans itself.
const (
	KindPackage   Kind = "package"    // a package no live source lists; Name is its NEVRA
	KindBlob      Kind = "blob"       // a stored file no package references; Name is its digest
	KindBlobPlain Kind = "blob+plain" // such a blob that has an uncompressed copy too
	KindPlain     Kind = "plain"      // an uncompressed copy beyond the budget; Name is its digest
	KindTemp      Kind = "temp"       // what an interrupted write left in the pool; Name is its path
)

// Config tunes a collection.
type Config struct {
	// PlainBudget bounds the uncompressed copies (default 4 GiB); the
	// least recently used beyond it are removed.
	PlainBudget int64
	// TempAge is how old a temp file must be to be an orphan (default 1h).
	TempAge time.Duration
	Now     func() time.Time
}

// Plan is what a collection will remove.
type Plan struct {
	Items []Item
	// Protected counts unreferenced blobs kept because they are newer than
	// the cutoff (a running sync may be about to reference them).
	Protected int
	// Changed counts items Execute left because they were no longer
	// collectable when it ran: a sync linked the package, or found the
	// file stored, after the plan was made.
	Changed int `json:",omitempty"`

	cutoff time.Time
}

// Bytes is what executing the plan frees.
func (p *Plan) Bytes() int64 {
	var n int64
	for _, it := range p.Items {
		n += it.Bytes
	}
	return n
}

// Summary counts the items by kind: "2 packages, 5 blobs".
func (p *Plan) Summary() string {
	by := map[Kind]int{}
	for _, it := range p.Items {
		by[it.Kind]++
	}
	if len(by) == 0 {
		return "nothing to collect"
	}
	var kinds []Kind
	for k := range by {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", by[k], plural(k, by[k])))
	}
	return strings.Join(parts, ", ")
}

func plural(k Kind, n int) string {
	if n == 1 {
		return string(k)
	}
	return string(k) + "s"
}

// Collector plans and executes collections.
type Collector struct {
	idx     Index
	pool    Pool
	sources func() ([]string, error)
	owners  []Owner
	cfg     Config
}

// New returns a collector. sources lists the sources that exist now.
func New(idx Index, pool Pool, sources func() ([]string, error), cfg Config, owners ...Owner) *Collector {
	if cfg.PlainBudget <= 0 {
		cfg.PlainBudget = 4 << 30
	}
	if cfg.TempAge <= 0 {
		cfg.TempAge = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{idx: idx, pool: pool, sources: sources, owners: owners, cfg: cfg}
}

// Plan decides what to collect. Blobs modified after cutoff are kept.
func (c *Collector) Plan(ctx context.Context, cutoff time.Time) (*Plan, error) {
	now := c.cfg.Now()
	names, err := c.sources()
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, n := range names {
		live[n] = true
	}
	plan := &Plan{cutoff: cutoff}
	referenced := map[blob.Digest]bool{}
	err = c.idx.Packages(func(p *index.Package) error {
		keep := false
		for _, s := range p.Sources {
			keep = keep || live[s]
		}
		if !keep {
			plan.Items = append(plan.Items, Item{Kind: KindPackage, Name: p.NEVRA.String()})
			return nil
		}
		for _, f := range p.Files {
			if !f.Blob.IsZero() {
				referenced[f.Blob] = true
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	// A delta's base is needed as long as the delta is, whether or not a
	// package still names it. Bases are whole blobs (the pool's chain
	// rule), so one round is enough.
	deltas := make([]blob.Digest, 0, len(referenced))
	for d := range referenced {
		deltas = append(deltas, d)
	}
	for _, d := range deltas {
		base, ok, err := c.pool.DeltaBase(d)
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrCorrupt) {
			// A file missing, or a header unreadable (its base unknown,
			// the blob unreadable anyway): nothing more to keep.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		if ok {
			referenced[base] = true
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	plain, err := c.pool.PlanPlain(c.cfg.PlainBudget, func(d blob.Digest) bool { return referenced[d] })
	if err != nil {
		return nil, err
	}
	err = c.pool.WalkInfo(func(d blob.Digest, fi fs.FileInfo) error {
		if referenced[d] {
			return nil
		}
		if fi.ModTime().After(cutoff) {
			plan.Protected++
			return nil
		}
		kind := KindBlob
		if plain.Unwanted[d] {
			kind = KindBlobPlain
		}
		plan.Items = append(plan.Items, Item{Kind: kind, Name: d.String(), Bytes: fi.Size()})
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	for _, cp := range plain.Evict {
		plan.Items = append(plan.Items, Item{Kind: KindPlain, Name: cp.Digest.String(), Bytes: cp.Size})
	}
	temps, err := c.pool.StaleTemps(now.Add(-c.cfg.TempAge))
	if err != nil {
		return nil, err
	}
	for _, t := range temps {
		plan.Items = append(plan.Items, Item{Kind: KindTemp, Name: t.Path, Bytes: t.Size})
	}
	for _, o := range c.owners {
		items, err := o.Plan(ctx, now)
		if err != nil {
			return nil, err
		}
		for i := range items {
			items[i].Owner = o
		}
		plan.Items = append(plan.Items, items...)
	}
	return plan, nil
}

// Execute deletes what plan lists and is still collectable, and returns
// the bytes freed. Syncs may have run since the plan was made, so it
// plans again with the index quiesced (no sync between storing files and
// committing them) and deletes only what both plans list; plan.Items
// becomes what it deleted, and plan.Changed counts the rest.
func (c *Collector) Execute(ctx context.Context, plan *Plan) (int64, error) {
	release, err := c.idx.Quiesce()
	if err != nil {
		return 0, err
	}
	defer release()
	now, err := c.Plan(ctx, plan.cutoff)
	if err != nil {
		return 0, err
	}
	still := make(map[string]Item, len(now.Items))
	for _, it := range now.Items {
		still[itemKey(it)] = it
	}
	planned := len(plan.Items)
	plan.Items = slices.DeleteFunc(plan.Items, func(it Item) bool {
		_, ok := still[itemKey(it)]
		return !ok
	})
	for i, it := range plan.Items {
		plan.Items[i] = still[itemKey(it)] // a blob may have gained or lost its plain copy
	}
	plan.Changed = planned - len(plan.Items)
	return c.execute(ctx, plan)
}

// itemKey names what an item removes; a blob is the same blob with or
// without its plain copy.
func itemKey(it Item) string {
	kind := it.Kind
	if kind == KindBlobPlain {
		kind = KindBlob
	}
	return string(kind) + " " + it.Name
}

func (c *Collector) execute(ctx context.Context, plan *Plan) (int64, error) {
	var freed int64
	var errs []error
	byOwner := map[Owner][]Item{}
	// Packages first, in batches: their files become unreferenced only
	// once they are gone from the index.
	var pkgs []index.NEVRA
	for _, it := range plan.Items {
		if it.Kind == KindPackage && it.Owner == nil {
			n, err := index.ParseNEVRA(it.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("package %s: %w", it.Name, err))
				continue
			}
			pkgs = append(pkgs, n)
		}
	}
	if err := c.idx.DeletePackages(pkgs); err != nil {
		return 0, fmt.Errorf("delete packages: %w", err)
	}
	for _, it := range plan.Items {
		if ctx.Err() != nil {
			break
		}
		var err error
		switch {
		case it.Owner != nil:
			byOwner[it.Owner] = append(byOwner[it.Owner], it)
			continue
		case it.Kind == KindPackage:
			// deleted above
		case it.Kind == KindBlob, it.Kind == KindBlobPlain:
			var d blob.Digest
			if d, err = blob.ParseDigest(it.Name); err == nil && it.Kind == KindBlobPlain {
				err = c.pool.RemovePlain(d)
			}
			if err == nil {
				err = c.pool.Remove(d)
			}
		case it.Kind == KindPlain:
			var d blob.Digest
			if d, err = blob.ParseDigest(it.Name); err == nil {
				err = c.pool.RemovePlain(d)
			}
		case it.Kind == KindTemp:
			err = c.pool.RemoveTemp(it.Name)
		}
		if err != nil && !errors.Is(err, index.ErrNotFound) {
			errs = append(errs, fmt.Errorf("%s %s: %w", it.Kind, it.Name, err))
			continue
		}
		freed += it.Bytes
	}
	for o, items := range byOwner {
		if err := o.Delete(ctx, items); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, it := range items {
			freed += it.Bytes
		}
	}
	return freed, errors.Join(errs...)
}

// TreeSize is plan.TreeSize.
func TreeSize(dir string) int64 { return plan.TreeSize(dir) }
