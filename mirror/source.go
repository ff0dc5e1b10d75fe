package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror/rpmfile"
	"github.com/retraced/retraced/mirror/yum"
	"github.com/robfig/cron/v3"
)

// Kinds of source.
const (
	KindYum  = "yum"
	KindTree = "tree"
)

// DefaultSchedule is when a source syncs unless told otherwise.
const DefaultSchedule = "@every 6h"

// maxErrors bounds the errors a source's state keeps from one sync.
const maxErrors = 100

var (
	// ErrExists reports adding a source under a name already used.
	ErrExists = errors.New("source already exists")
	// ErrBadSource reports an invalid source definition.
	ErrBadSource = errors.New("invalid source")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Source is a repository the mirror follows, and what it knows of it.
type Source struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// URL is the repository's URL or path; "" for a source whose
	// mirrors come from Metalink or Mirrorlist.
	URL string `json:"url"`
	// Metalink is the http(s) URL of a MirrorManager metalink for a yum
	// repository: each sync reads it, tries its mirrors by preference and
	// uses the first whose repodata/repomd.xml matches one of its hashes.
	Metalink string `json:"metalink,omitempty"`
	// Mirrorlist is the http(s) URL of a list of the repository's
	// mirrors, one URL a line, tried in order.
	Mirrorlist string `json:"mirrorlist,omitempty"`
	Schedule   string `json:"schedule"`
	Include    string `json:"include,omitempty"`
	Exclude    string `json:"exclude,omitempty"`
	// GPGKeys are the OpenPGP public keys (armored, as the files and
	// URLs given to `mirror add --gpg-key` held them when the source was
	// added) that packages must be signed by when GPGCheck is set.
	GPGKeys []string `json:"gpg_keys,omitempty"`
	// GPGCheck: only packages with a header signature by one of GPGKeys,
	// and a payload matching that signed header, are indexed.
	GPGCheck bool `json:"gpgcheck"`
	// RepoGPGCheck: a yum source's repodata/repomd.xml must come with a
	// detached signature by one of GPGKeys (repodata/repomd.xml.asc).
	RepoGPGCheck bool `json:"repo_gpgcheck,omitempty"`
	// PublicOnly: the source's downloads may connect only to public
	// addresses (not loopback, private or link-local ones), however the
	// names resolve and wherever redirects lead. Serve sets it on sources
	// added over the API unless its config allows private ones.
	PublicOnly bool      `json:"public_only,omitempty"`
	Created    time.Time `json:"created"`
	State      State     `json:"state"`
}

// Keyring parses the source's keys.
func (s *Source) Keyring() (*rpmfile.Keyring, error) {
	k := new(rpmfile.Keyring)
	for i, key := range s.GPGKeys {
		if err := k.ParseKeys([]byte(key)); err != nil {
			return nil, fmt.Errorf("gpg key %d: %w", i+1, err)
		}
	}
	return k, nil
}

// State is a source's sync state, updated at the end of every sync.
type State struct {
	LastSync   time.Time `json:"last_sync,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	// Errors are the last sync's failures, one line each.
	Errors []string `json:"errors,omitempty"`
	// Failed are the packages the last sync refused, each with why.
	Failed []FailedPackage `json:"failed,omitempty"`
	// Repomd is the checksum of the repomd.xml last synced in full.
	Repomd string `json:"repomd,omitempty"`
	// Mirror is the mirror (a repository URL) whose metadata the last
	// sync of a metalink or mirror list source used.
	Mirror string `json:"mirror,omitempty"`
	// MirrorsFailed are the mirrors the last sync gave up on, and why.
	MirrorsFailed []MirrorFailure `json:"mirrors_failed,omitempty"`
	Packages      int             `json:"packages"`
	Versions      int             `json:"versions"`
	BytesFetched  int64           `json:"bytes_fetched"`
	// BytesStored is what the distinct files of the source's packages take
	// in the pool now (recounted after every sync and compaction).
	BytesStored int64 `json:"bytes_stored"`
	// BytesDelta is the part of BytesStored held as deltas on an older
	// version (the rest is whole blobs).
	BytesDelta int64 `json:"bytes_delta"`
	// History is the last syncs, oldest first, at most MaxHistory: each
	// sync appends one record and drops the oldest beyond the bound.
	History []SyncRecord `json:"history,omitempty"`
}

// MaxHistory bounds the syncs a source's state remembers.
const MaxHistory = 50

// maxHistoryError bounds the error a history record keeps, in bytes.
const maxHistoryError = 500

// SyncRecord is one sync as the source's history keeps it.
type SyncRecord struct {
	// Start is when the sync started (UTC); Duration how long it ran.
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	// Result is "ok", "unchanged", "partial" (some packages failed) or
	// "failed" (the whole sync did, with Error).
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// New counts the packages this sync ingested, Failed those it
	// refused.
	New    int `json:"new"`
	Failed int `json:"failed"`
	// BytesFetched and BytesStored are what this sync downloaded and
	// what it added to the pool.
	BytesFetched int64 `json:"bytes_fetched"`
	BytesStored  int64 `json:"bytes_stored"`
	// TotalFetched is the source's BytesFetched after the sync;
	// TotalStored its BytesStored after the sync, recounted by the
	// compaction that follows it when one runs before the next sync.
	// They are the samples of the storage-over-time chart.
	TotalFetched int64 `json:"total_fetched"`
	TotalStored  int64 `json:"total_stored"`
}

// record appends r to the history, dropping the oldest beyond MaxHistory.
func (st *State) record(r SyncRecord) {
	if len(r.Error) > maxHistoryError {
		r.Error = strings.ToValidUTF8(r.Error[:maxHistoryError], "") + "..."
	}
	st.History = append(st.History, r)
	if n := len(st.History) - MaxHistory; n > 0 {
		st.History = slices.Delete(st.History, 0, n)
	}
}

// FailedPackage is a package a sync refused, and why.
type FailedPackage struct {
	Location string `json:"location"`
	Reason   string `json:"reason"`
}

// MirrorFailure is a mirror a sync gave up on, and why.
type MirrorFailure struct {
	URL    string `json:"url"`
	Reason string `json:"reason"`
}

// mirrored reports whether the source's mirrors come from a metalink or
// a mirror list.
func (s *Source) mirrored() bool { return s.Metalink != "" || s.Mirrorlist != "" }

// Validate checks the name, kind, URL and filters.
func (s *Source) Validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%w: name %q: use letters, digits, '.', '_' or '-', at most 64", ErrBadSource, s.Name)
	}
	if s.Kind != KindYum && s.Kind != KindTree {
		return fmt.Errorf("%w: kind %q: want yum or tree", ErrBadSource, s.Kind)
	}
	if err := s.validateWhere(); err != nil {
		return err
	}
	if _, err := cron.ParseStandard(s.Schedule); err != nil {
		return fmt.Errorf("%w: schedule %q: %v", ErrBadSource, s.Schedule, err)
	}
	for _, re := range []string{s.Include, s.Exclude} {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("%w: regex %q: %v", ErrBadSource, re, err)
		}
	}
	if len(s.GPGKeys) > maxKeys {
		return fmt.Errorf("%w: %d gpg keys, at most %d", ErrBadSource, len(s.GPGKeys), maxKeys)
	}
	if _, err := s.Keyring(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSource, err)
	}
	if (s.GPGCheck || s.RepoGPGCheck) && len(s.GPGKeys) == 0 {
		return fmt.Errorf("%w: gpgcheck needs at least one key (--gpg-key FILE|URL), or --no-gpgcheck", ErrBadSource)
	}
	if s.RepoGPGCheck && s.Kind != KindYum {
		return fmt.Errorf("%w: repo_gpgcheck is for yum sources (repodata/repomd.xml.asc)", ErrBadSource)
	}
	if s.PublicOnly && !s.mirrored() {
		if loc, err := parseLocation(s.URL); err == nil && loc.local != "" {
			return fmt.Errorf("%w: %s: a local path or file:// URL is not allowed here", ErrBadSource, s.URL)
		}
	}
	return nil
}

// validateWhere checks that the source names exactly one of a URL, a
// metalink and a mirror list, and that a metalink or mirror list is an
// http(s) URL of a yum source.
func (s *Source) validateWhere() error {
	n := 0
	for _, v := range []string{s.URL, s.Metalink, s.Mirrorlist} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%w: give a URL, a metalink or a mirror list", ErrBadSource)
	case n > 1:
		return fmt.Errorf("%w: give one of a URL, a metalink and a mirror list, not several", ErrBadSource)
	case s.URL != "":
		if _, err := parseLocation(s.URL); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSource, err)
		}
		return nil
	}
	if s.Kind != KindYum {
		return fmt.Errorf("%w: a metalink or mirror list names the mirrors of a yum repository, not of a %s source", ErrBadSource, s.Kind)
	}
	for what, v := range map[string]string{"metalink": s.Metalink, "mirror list": s.Mirrorlist} {
		if v == "" {
			continue
		}
		if loc, err := parseLocation(v); err != nil || loc.u == nil {
			return fmt.Errorf("%w: %s %q: want an http(s) URL", ErrBadSource, what, v)
		}
	}
	return nil
}

// maxKeys bounds the keys of one source.
const maxKeys = 32

// filter reports whether a package file (its location in the source) is
// selected by the source's include and exclude patterns.
func (s *Source) filter() (func(string) bool, error) {
	var inc, exc *regexp.Regexp
	var err error
	if s.Include != "" {
		if inc, err = regexp.Compile(s.Include); err != nil {
			return nil, err
		}
	}
	if s.Exclude != "" {
		if exc, err = regexp.Compile(s.Exclude); err != nil {
			return nil, err
		}
	}
	return func(loc string) bool {
		if inc != nil && !inc.MatchString(loc) {
			return false
		}
		return exc == nil || !exc.MatchString(loc)
	}, nil
}

// dirFilter reports whether a tree crawl may skip a directory (its path
// relative to the source URL, ending in "/"): whether it is certain that no
// package file below it is selected by the include and exclude patterns.
// That is so when
//
//   - the include pattern cannot match any string that starts with the
//     directory's path (it is run over the path as a prefix; "^(glibc|bash)/"
//     skips "zsh/", while "\.x86_64\.rpm$" skips nothing), or
//   - the exclude pattern matches the directory's path and has no "$",
//     "\z", "\b" or "\B": such a match does not depend on what follows,
//     so it matches every path below too ("^debug/" and "/debug/" skip
//     "debug/" and "x/debug/"; "^debug/$" skips nothing).
func (s *Source) dirFilter() (func(dir string) (skip bool), error) {
	var inc *syntax.Prog
	var exc *regexp.Regexp
	if s.Include != "" {
		re, err := syntax.Parse(s.Include, syntax.Perl)
		if err != nil {
			return nil, err
		}
		if inc, err = syntax.Compile(re.Simplify()); err != nil {
			return nil, err
		}
	}
	if s.Exclude != "" {
		re, err := syntax.Parse(s.Exclude, syntax.Perl)
		if err != nil {
			return nil, err
		}
		if !lookahead(re) {
			if exc, err = regexp.Compile(s.Exclude); err != nil {
				return nil, err
			}
		}
	}
	return func(dir string) bool {
		return (inc != nil && !mayMatchBelow(inc, dir)) || (exc != nil && exc.MatchString(dir))
	}, nil
}

// lookahead reports whether re has an assertion that looks at what follows
// a match: end of text or line, or a word boundary.
func lookahead(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEndLine, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	}
	for _, sub := range re.Sub {
		if lookahead(sub) {
			return true
		}
	}
	return false
}

// mayMatchBelow reports whether prog, unanchored as regexp runs it, may
// match some string that starts with prefix (not empty): it runs prog's
// threads over prefix, as a Pike VM does, and reports whether any matched
// or still waits for input, or whether a match could start after prefix.
// Where a rune is unknown (after prefix), assertions about it are taken as
// met; only "^" (\A) at the text's start is then certainly false.
func mayMatchBelow(prog *syntax.Prog, prefix string) bool {
	runes := []rune(prefix)
	const unknown = -2
	// at returns the runes around position p (-1: the text's start).
	at := func(p int) (before, after rune) {
		before, after = -1, unknown
		if p > 0 {
			before = runes[p-1]
		}
		if p < len(runes) {
			after = runes[p]
		}
		return before, after
	}
	onList := make([]bool, len(prog.Inst))
	matched := false
	// add puts pc on list, following its empty transitions at a position
	// between the runes before and after.
	var add func(list []uint32, pc uint32, before, after rune) []uint32
	add = func(list []uint32, pc uint32, before, after rune) []uint32 {
		if onList[pc] {
			return list
		}
		onList[pc] = true
		switch i := &prog.Inst[pc]; i.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			list = add(list, i.Out, before, after)
			return add(list, i.Arg, before, after)
		case syntax.InstNop, syntax.InstCapture:
			return add(list, i.Out, before, after)
		case syntax.InstEmptyWidth:
			const afterUnknown = syntax.EmptyEndLine | syntax.EmptyEndText | syntax.EmptyWordBoundary | syntax.EmptyNoWordBoundary
			need, have := syntax.EmptyOp(i.Arg), syntax.EmptyOpContext(before, after)
			switch {
			case before == unknown: // a position inside what follows prefix
				have = syntax.EmptyBeginLine | afterUnknown
			case after == unknown:
				have = syntax.EmptyOpContext(before, -1)&(syntax.EmptyBeginLine|syntax.EmptyBeginText) | afterUnknown
			}
			if need&^have == 0 {
				return add(list, i.Out, before, after)
			}
			return list
		case syntax.InstMatch:
			matched = true
			return list
		case syntax.InstFail:
			return list
		default: // a rune instruction: it waits for the next rune
			return append(list, pc)
		}
	}
	var cur, next []uint32
	for p := 0; ; p++ {
		// onList still marks what cur's threads reached at p, so the
		// fresh start (the search is unanchored) adds only what is new.
		before, after := at(p)
		cur = add(cur, uint32(prog.Start), before, after)
		if matched {
			return true
		}
		if p == len(runes) {
			if len(cur) > 0 {
				return true
			}
			// A match that starts after prefix.
			clear(onList)
			return len(add(nil, uint32(prog.Start), unknown, unknown)) > 0 || matched
		}
		r := runes[p]
		nb, na := at(p + 1)
		clear(onList)
		next = next[:0]
		for _, pc := range cur {
			i := &prog.Inst[pc]
			var ok bool
			switch i.Op {
			case syntax.InstRuneAny:
				ok = true
			case syntax.InstRuneAnyNotNL:
				ok = r != '\n'
			default:
				ok = i.MatchRune(r)
			}
			if ok {
				next = add(next, i.Out, nb, na)
			}
		}
		cur, next = next, cur
	}
}

func (m *Mirror) loadSource(name string) (*Source, error) {
	rec, err := m.idx.Source(name)
	if err != nil {
		return nil, err
	}
	s := new(Source)
	if err := json.Unmarshal(rec, s); err != nil {
		return nil, fmt.Errorf("source %q: decode: %w", name, err)
	}
	return s, nil
}

func (m *Mirror) saveSource(s *Source) error {
	if len(s.State.Errors) > maxErrors {
		s.State.Errors = append(s.State.Errors[:maxErrors-1], fmt.Sprintf("... and %d more", len(s.State.Errors)-maxErrors+1))
	}
	rec, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return m.idx.PutSource(s.Name, rec)
}

// Sources returns every source, by name.
func (m *Mirror) Sources() ([]*Source, error) {
	var out []*Source
	err := m.idx.Sources(func(name string, rec []byte) error {
		s := new(Source)
		if err := json.Unmarshal(rec, s); err != nil {
			return fmt.Errorf("source %q: decode: %w", name, err)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// Source returns one source, or an error wrapping index.ErrNotFound.
func (m *Mirror) Source(name string) (*Source, error) { return m.loadSource(name) }

// Remove stops mirroring a source. Its packages stay until gc.
func (m *Mirror) Remove(name string) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	if m.syncing[name] {
		return fmt.Errorf("source %q is syncing; try again when it is done", name)
	}
	return m.idx.DeleteSource(name)
}

// Add registers a source. An empty Kind is detected: a URL with
// repodata/repomd.xml is yum, anything else a tree.
//
// A source with a metalink or mirror list (and no URL) is yum; its
// metalink or list is read now, so that one that cannot be read or parsed
// is said at once, wrapping ErrBadSource when it is malformed.
func (m *Mirror) Add(ctx context.Context, s Source) (*Source, error) {
	s.URL = strings.TrimSpace(s.URL)
	s.Metalink, s.Mirrorlist = strings.TrimSpace(s.Metalink), strings.TrimSpace(s.Mirrorlist)
	if s.Schedule == "" {
		s.Schedule = DefaultSchedule
	}
	if s.mirrored() {
		return m.addMirrored(ctx, s)
	}
	if s.URL == "" {
		return nil, fmt.Errorf("%w: give a URL, a metalink or a mirror list", ErrBadSource)
	}
	loc, err := parseLocation(s.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSource, err)
	}
	if s.PublicOnly {
		if loc.local != "" {
			return nil, fmt.Errorf("%w: %w: %s is a local path or file:// URL", ErrBadSource, ErrPrivateAddress, s.URL)
		}
		if err := checkPublicHost(ctx, loc.u.Hostname()); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadSource, err)
		}
		ctx = withPublicOnly(ctx)
	}
	if loc.local != "" && !strings.HasPrefix(s.URL, "file://") {
		s.URL = loc.local // a relative path means nothing to a server started elsewhere
	}
	if s.Kind == "" {
		s.Kind = KindTree
		if ok, err := m.exists(ctx, s.URL, "repodata/repomd.xml"); err != nil {
			return nil, fmt.Errorf("detect kind of %s: %w", s.URL, err)
		} else if ok {
			s.Kind = KindYum
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return m.create(s)
}

// addMirrored is Add for a source with a metalink or mirror list.
func (m *Mirror) addMirrored(ctx context.Context, s Source) (*Source, error) {
	if s.Kind == "" {
		s.Kind = KindYum
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.PublicOnly {
		where := s.Metalink + s.Mirrorlist // one of them is empty
		loc, err := parseLocation(where)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadSource, err)
		}
		if err := checkPublicHost(ctx, loc.u.Hostname()); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadSource, err)
		}
		ctx = withPublicOnly(ctx)
	}
	if _, _, _, err := m.readMirrors(ctx, &s); errors.Is(err, yum.ErrFormat) {
		return nil, fmt.Errorf("%w: %w", ErrBadSource, err)
	} else if err != nil {
		return nil, err
	}
	return m.create(s)
}

// create stores a new, validated source.
func (m *Mirror) create(s Source) (*Source, error) {
	if _, err := m.idx.Source(s.Name); err == nil {
		return nil, fmt.Errorf("%w: %q", ErrExists, s.Name)
	} else if !errors.Is(err, index.ErrNotFound) {
		return nil, err
	}
	s.Created = m.cfg.Now().UTC()
	s.State = State{}
	if err := m.saveSource(&s); err != nil {
		return nil, err
	}
	return &s, nil
}
