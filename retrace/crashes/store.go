package crashes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/retrace"
)

// ErrNotFound reports a signature the store does not have.
var ErrNotFound = errors.New("no such crash signature")

// Bounds of what one entry keeps.
const (
	// MaxExample bounds the example backtrace, in bytes; a longer one is
	// cut (and says so).
	MaxExample = 64 << 10
	// MaxVersions bounds the versions kept per signature; the least
	// recently seen goes.
	MaxVersions = 32
	// MaxTasks is how many of the last task ids an entry keeps.
	MaxTasks = 5
	// hoursKept is how many hourly counts an entry keeps (for 24h).
	hoursKept = 48
	// maxDays bounds the daily counts whatever the retention.
	maxDays = 400
)

// Defaults of [Options].
const (
	DefaultRetention     = 90 * 24 * time.Hour
	DefaultMaxSignatures = 20000
)

// Crash is one finished retrace, as the store records it.
type Crash struct {
	TaskID    string // "" for a retrace that is not a task
	Time      time.Time
	Package   index.NEVRA // the crash package
	Signal    int
	Backtrace string
}

// Entry is what the store keeps of one signature.
type Entry struct {
	Signature
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int64     `json:"count"`
	// Days counts per UTC day, oldest first, days without a crash left
	// out; Hours the same per hour for the last 48 hours. (8 bytes each:
	// an entry is held in memory.)
	Days  []Bucket `json:"days"`
	Hours []Bucket `json:"hours"`
	// Versions are the NEVRAs it was seen in, newest version first.
	Versions []Version `json:"versions"`
	// Tasks are the last task ids, newest first, with their time.
	Tasks []TaskRef `json:"tasks"`
}

// Bucket counts the crashes of one UTC day or hour: At is the days (or
// hours) since 1970-01-01 UTC.
type Bucket struct {
	At int32  `json:"t"`
	N  uint32 `json:"n"`
}

// dayOf and hourOf are the Bucket.At of t's day and hour.
func dayOf(t time.Time) int32  { return int32(t.Unix() / 86400) }
func hourOf(t time.Time) int32 { return int32(t.Unix() / 3600) }

// dayLabel and hourLabel write a Bucket.At as the JSON and the pages say
// it: "2006-01-02", "2006-01-02T15".
func dayLabel(at int32) string  { return time.Unix(int64(at)*86400, 0).UTC().Format(dayFormat) }
func hourLabel(at int32) string { return time.Unix(int64(at)*3600, 0).UTC().Format(hourFormat) }

// DayCount is the count of one day or hour, as the JSON says it.
type DayCount struct {
	Day   string `json:"day"`
	Count int64  `json:"count"`
}

// Version is one package version a signature was seen in.
type Version struct {
	NEVRA     string    `json:"nevra"`
	Count     int64     `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// TaskRef is one task that had the crash.
type TaskRef struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

// A Backend persists entries. Each method is atomic; the Store serialises
// the calls that change something. Badger's is [OpenBadger].
type Backend interface {
	// Load calls fn for every entry stored.
	Load(fn func(e *Entry) error) error
	// Put stores the entries, replacing those of the same IDs, the
	// example backtraces (signature ID -> text) and the recorded marks
	// of tasks (task id -> signature ID), all durably before it returns.
	// A small Put (one crash) is one transaction: none of it is stored
	// when it fails; a large one may be split in several.
	Put(entries []*Entry, examples, tasks map[string]string) error
	// Recorded reports whether task was marked recorded by a Put.
	Recorded(task string) (bool, error)
	// Example returns the example backtrace of id (ErrNotFound).
	Example(id string) (string, error)
	// Delete removes the entries of ids and their examples.
	Delete(ids []string) error
	Close() error
}

// Options tune a Store. Zero fields take their defaults.
type Options struct {
	// Retention: entries last seen before it go at gc, and daily counts
	// older than it. Default 90 days.
	Retention time.Duration
	// MaxSignatures bounds the entries; a new signature beyond it
	// replaces the least recently seen. Default 20,000: an entry holds at
	// most about 6 KiB in memory (measured with 90 daily counts, 48
	// hourly and 30 versions), so about 120 MiB at worst.
	MaxSignatures int
	// TaskTTL is how long tasks are kept (serve's task_ttl): the pages
	// show only task ids younger than it. Default 7 days.
	TaskTTL time.Duration
	// TaskExists, when set, says whether a task still exists (serve
	// asks its task server): the pages show only those.
	TaskExists func(id string) bool
	Now        func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxSignatures <= 0 {
		o.MaxSignatures = DefaultMaxSignatures
	}
	if o.TaskTTL <= 0 {
		o.TaskTTL = 7 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Store is the crash store: every entry in memory, each change written
// through its Backend first.
type Store struct {
	be  Backend
	opt Options

	mu      sync.RWMutex
	entries map[string]*Entry
	gen     uint64 // counts the changes of entries

	// versions caches newestVersions for generation gen.
	versions atomic.Pointer[versionCache]
}

type versionCache struct {
	gen uint64
	m   map[string][]seenVersion
}

var _ retrace.Recorder = (*Store)(nil)

// New loads the entries of be.
func New(be Backend, opt Options) (*Store, error) {
	s := &Store{be: be, opt: opt.withDefaults(), entries: map[string]*Entry{}}
	err := be.Load(func(e *Entry) error {
		if ValidID(e.ID) {
			s.entries[e.ID] = e
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load crash store: %w", err)
	}
	return s, nil
}

// Close closes the backend.
func (s *Store) Close() error { return s.be.Close() }

// RecordCrashes records finished tasks in one write: the task server's
// Recorder. A task whose package is no NEVRA is reported, and the others
// are recorded all the same.
func (s *Store) RecordCrashes(ctx context.Context, fcs []retrace.FinishedCrash) error {
	var errs []error
	cs := make([]Crash, 0, len(fcs))
	for _, c := range fcs {
		n, err := index.ParseNEVRA(c.Package)
		if err != nil {
			errs = append(errs, fmt.Errorf("record crash of task %s: %w", c.TaskID, err))
			continue
		}
		cs = append(cs, Crash{TaskID: c.TaskID, Time: c.Finished, Package: n, Signal: c.Signal, Backtrace: c.Backtrace})
	}
	if len(cs) > 0 {
		if _, err := s.RecordBatch(ctx, cs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Record adds one crash to its signature's entry and returns the
// signature. A crash of a task id recorded before changes nothing. It is
// on disk when Record returns.
func (s *Store) Record(ctx context.Context, c Crash) (Signature, error) {
	sigs, err := s.RecordBatch(ctx, []Crash{c})
	if err != nil {
		return Signature{}, err
	}
	return sigs[0], nil
}

// RecordBatch records crashes as Record does each, in one write of the
// backend: a backfill, or many tasks at once.
func (s *Store) RecordBatch(ctx context.Context, cs []Crash) ([]Signature, error) {
	sigs := make([]Signature, len(cs))
	for i, c := range cs {
		sigs[i] = Sign(c.Backtrace, c.Signal, c.Package.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := map[string]*Entry{}
	examples := map[string]string{}
	tasks := map[string]string{}
	for i, c := range cs {
		sig := sigs[i]
		if c.Time.IsZero() {
			c.Time = s.opt.Now()
		}
		c.Time = c.Time.UTC()
		if c.TaskID != "" {
			if _, dup := tasks[c.TaskID]; dup {
				continue
			}
			done, err := s.be.Recorded(c.TaskID)
			if err != nil {
				return nil, err
			}
			if done {
				continue
			}
			tasks[c.TaskID] = sig.ID
		}
		e := changed[sig.ID]
		if e == nil {
			if old := s.entries[sig.ID]; old != nil {
				cp := old.clone()
				e = &cp
			} else {
				if len(s.entries)+len(changed) >= s.opt.MaxSignatures {
					if err := s.evictLocked(changed); err != nil {
						return nil, err
					}
				}
				e = &Entry{Signature: sig, FirstSeen: c.Time, LastSeen: c.Time}
				examples[sig.ID] = boundExample(c.Backtrace)
			}
			changed[sig.ID] = e
		}
		e.add(c, s.opt.Retention)
	}
	if len(changed) == 0 {
		return sigs, nil
	}
	entries := make([]*Entry, 0, len(changed))
	for _, e := range changed {
		entries = append(entries, e)
	}
	if err := s.be.Put(entries, examples, tasks); err != nil {
		return nil, fmt.Errorf("record crashes: %w", err)
	}
	for _, e := range entries {
		s.entries[e.ID] = e
	}
	s.gen++
	return sigs, nil
}

// evictLocked drops the least recently seen entry that is not in
// pending (the changes of a batch).
func (s *Store) evictLocked(pending map[string]*Entry) error {
	var oldest *Entry
	for _, e := range s.entries {
		if pending[e.ID] != nil {
			continue
		}
		if oldest == nil || e.LastSeen.Before(oldest.LastSeen) {
			oldest = e
		}
	}
	if oldest == nil {
		return nil
	}
	if err := s.be.Delete([]string{oldest.ID}); err != nil {
		return err
	}
	delete(s.entries, oldest.ID)
	s.gen++
	return nil
}

func boundExample(bt string) string {
	if len(bt) <= MaxExample {
		return bt
	}
	cut := bt[:MaxExample]
	for len(cut) > 0 && cut[len(cut)-1]&0xc0 == 0x80 {
		cut = cut[:len(cut)-1]
	}
	return cut + fmt.Sprintf("\n[backtrace cut at %d of %d bytes]\n", MaxExample, len(bt))
}

func (e *Entry) clone() Entry {
	c := *e
	c.Frames = slices.Clone(e.Frames)
	c.Days = slices.Clone(e.Days)
	c.Hours = slices.Clone(e.Hours)
	c.Versions = slices.Clone(e.Versions)
	c.Tasks = slices.Clone(e.Tasks)
	return c
}

// add counts crash c into e, dropping daily counts older than retention
// and hourly ones older than two days (relative to c's time).
func (e *Entry) add(c Crash, retention time.Duration) {
	e.Count++
	if c.Time.Before(e.FirstSeen) {
		e.FirstSeen = c.Time
	}
	if c.Time.After(e.LastSeen) {
		e.LastSeen = c.Time
	}
	e.Days = bump(e.Days, dayOf(c.Time))
	e.Days = trimBefore(e.Days, dayOf(c.Time.Add(-retention)), maxDays)
	e.Hours = bump(e.Hours, hourOf(c.Time))
	e.Hours = trimBefore(e.Hours, hourOf(c.Time.Add(-hoursKept*time.Hour)), hoursKept)

	nevra := c.Package.String()
	i := slices.IndexFunc(e.Versions, func(v Version) bool { return v.NEVRA == nevra })
	if i < 0 {
		e.Versions = append(e.Versions, Version{NEVRA: nevra, FirstSeen: c.Time, LastSeen: c.Time})
		i = len(e.Versions) - 1
	}
	v := &e.Versions[i]
	v.Count++
	if c.Time.Before(v.FirstSeen) {
		v.FirstSeen = c.Time
	}
	if c.Time.After(v.LastSeen) {
		v.LastSeen = c.Time
	}
	sortVersions(e.Versions)
	if len(e.Versions) > MaxVersions {
		// Drop the least recently seen.
		j := 0
		for k := range e.Versions {
			if e.Versions[k].LastSeen.Before(e.Versions[j].LastSeen) {
				j = k
			}
		}
		e.Versions = slices.Delete(e.Versions, j, j+1)
	}
	if c.TaskID != "" {
		e.Tasks = slices.Insert(e.Tasks, 0, TaskRef{ID: c.TaskID, Time: c.Time})
		if len(e.Tasks) > MaxTasks {
			e.Tasks = e.Tasks[:MaxTasks]
		}
	}
}

const (
	dayFormat  = "2006-01-02"
	hourFormat = "2006-01-02T15"
)

// bump adds one to at in counts (sorted by At), saturating.
func bump(counts []Bucket, at int32) []Bucket {
	i, found := slices.BinarySearchFunc(counts, at, func(b Bucket, at int32) int { return int(b.At) - int(at) })
	if !found {
		counts = slices.Insert(counts, i, Bucket{At: at})
	}
	if counts[i].N < math.MaxUint32 {
		counts[i].N++
	}
	return counts
}

// trimBefore drops counts before at and keeps at most max.
func trimBefore(counts []Bucket, at int32, max int) []Bucket {
	i := 0
	for i < len(counts) && counts[i].At < at {
		i++
	}
	counts = counts[i:]
	if len(counts) > max {
		counts = counts[len(counts)-max:]
	}
	return counts
}

// labelled writes counts as the JSON says them.
func labelled(counts []Bucket, label func(int32) string) []DayCount {
	out := make([]DayCount, len(counts))
	for i, b := range counts {
		out[i] = DayCount{Day: label(b.At), Count: int64(b.N)}
	}
	return out
}

// sortVersions orders by rpm's version order, newest first; a NEVRA
// that does not parse goes last.
func sortVersions(vs []Version) {
	slices.SortStableFunc(vs, func(a, b Version) int {
		na, ea := index.ParseNEVRA(a.NEVRA)
		nb, eb := index.ParseNEVRA(b.NEVRA)
		switch {
		case ea != nil && eb != nil:
			return 0
		case ea != nil:
			return 1
		case eb != nil:
			return -1
		}
		return nb.Compare(na)
	})
}

// Get returns the entry of id and its example backtrace.
func (s *Store) Get(id string) (Entry, string, error) {
	s.mu.RLock()
	e, ok := s.entries[id]
	var c Entry
	if ok {
		c = e.clone()
	}
	s.mu.RUnlock()
	if !ok {
		return Entry{}, "", ErrNotFound
	}
	ex, err := s.be.Example(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return c, "", err
	}
	return c, ex, nil
}

// Len is the number of signatures.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.entries)
}

// snapshot returns the entries (shared: read only; an entry is replaced,
// never changed, once stored) and their generation.
func (s *Store) snapshot() ([]*Entry, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	return out, s.gen
}

// newestVersions is newestVersions(entries) of generation gen, cached.
func (s *Store) newestVersions(entries []*Entry, gen uint64) map[string][]seenVersion {
	if c := s.versions.Load(); c != nil && c.gen == gen {
		return c.m
	}
	m := newestVersions(entries)
	s.versions.Store(&versionCache{gen: gen, m: m})
	return m
}
