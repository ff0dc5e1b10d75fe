package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/mirror/rpmfile"
	"github.com/retraced/retraced/mirror/yum"
)

// ErrSyncing reports a sync asked for while the source is syncing.
var ErrSyncing = errors.New("source is already syncing")

// Progress is a snapshot of a running sync.
type Progress struct {
	Source string
	// Phase is "metadata", "packages" or "done".
	Phase        string
	Total        int // packages to ingest in this sync
	Done         int // ingested or failed so far
	Failed       int
	BytesFetched int64
	Started      time.Time
}

// Result is the outcome of one sync.
type Result struct {
	Source string
	// Unchanged: the metadata was the same as last time; nothing fetched.
	Unchanged bool
	// Listed counts the packages the source lists (after filters).
	Listed int
	// New counts packages ingested by this sync; Linked those the index
	// already had from another source.
	New, Linked  int
	Failed       []*PackageError
	BytesFetched int64
	BytesStored  int64
	Duration     time.Duration
	// Err is a failure of the whole sync (metadata unreadable, ...).
	Err error
	// Mirror is the mirror whose metadata a metalink or mirror list
	// source's sync used ("" for other sources, or when none served it).
	Mirror string
	// MirrorsFailed are the mirrors the sync gave up on, and why: for
	// the metadata (unreachable, an error status, a stall, a repomd.xml
	// the metalink does not vouch for) or for packages that failed there.
	MirrorsFailed []MirrorFailure
}

// OK reports a sync with no failure at all.
func (r *Result) OK() bool { return r.Err == nil && len(r.Failed) == 0 }

// Summary is one line for logs and the CLI.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", r.Source)
	switch {
	case r.Err != nil:
		fmt.Fprintf(&b, "failed: %v", r.Err)
	case r.Unchanged:
		b.WriteString("unchanged")
	default:
		fmt.Fprintf(&b, "%d listed, %d new, %d linked, %d failed, %s fetched, %s stored",
			r.Listed, r.New, r.Linked, len(r.Failed), HumanBytes(r.BytesFetched), HumanBytes(r.BytesStored))
	}
	if r.Mirror != "" {
		fmt.Fprintf(&b, ", from mirror %s", r.Mirror)
	}
	if n := len(r.MirrorsFailed); n > 0 && r.Err == nil {
		urls := make([]string, n)
		for i, f := range r.MirrorsFailed {
			urls[i] = f.URL
		}
		fmt.Fprintf(&b, " (mirrors failed: %s)", strings.Join(urls, ", "))
	}
	fmt.Fprintf(&b, " in %s", r.Duration.Round(time.Millisecond))
	return b.String()
}

// HumanBytes writes n in binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Sync brings the index up to date with one source. progress, if not nil,
// is called from another goroutine a few times a second and once at the
// end. The returned error is only for a sync that could not start; how the
// sync went is in the Result, and in the source's state.
func (m *Mirror) Sync(ctx context.Context, name string, progress func(Progress)) (*Result, error) {
	return m.run(ctx, name, progress, nil)
}

// SyncingElsewhere names the node that holds source name's sync lease
// when that is another node ("" when none, or this node, does).
func (m *Mirror) SyncingElsewhere(ctx context.Context, name string) (string, error) {
	held, err := m.idx.Holders(ctx)
	if node := held["sync/"+name]; err == nil && node != m.idx.Node() {
		return node, nil
	}
	return "", err
}

// Refuse records, as the last sync of source name, one that did not run
// because of why (serve's disk check), so that `mirror list` and the
// status page say so.
func (m *Mirror) Refuse(name string, why error) (*Result, error) {
	return m.run(context.Background(), name, nil, why)
}

// run is Sync, or a refused sync when why is set. Config.Pause is asked
// first: a sync that may not start is refused with its error.
func (m *Mirror) run(ctx context.Context, name string, progress func(Progress), why error) (*Result, error) {
	m.syncMu.Lock()
	if m.syncing[name] {
		m.syncMu.Unlock()
		return nil, fmt.Errorf("%q: %w", name, ErrSyncing)
	}
	m.syncing[name] = true
	m.syncMu.Unlock()
	defer func() {
		m.syncMu.Lock()
		delete(m.syncing, name)
		m.syncMu.Unlock()
	}()
	// One node at a time syncs a source: with a shared (PostgreSQL)
	// index, the lease is held across nodes, and passes on if its
	// holder dies. The sync runs under the lease's context: a lease lost
	// mid-sync stops it.
	ctx, releaseLease, err := m.idx.Lease(ctx, "sync/"+name)
	if errors.Is(err, index.ErrLeaseHeld) {
		return nil, fmt.Errorf("%q: %w (%w)", name, ErrSyncing, err)
	}
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", name, err)
	}
	defer releaseLease()

	src, err := m.loadSource(name)
	if err != nil {
		return nil, err
	}
	if src.PublicOnly {
		ctx = withPublicOnly(ctx)
	}
	start := m.cfg.Now()
	res := &Result{Source: name}
	var pr progressState
	pr.started = start
	pr.source = name
	pr.setPhase("metadata")
	stop := pr.report(progress)

	if why == nil && m.cfg.Pause != nil {
		why = m.cfg.Pause()
	}
	switch {
	case why != nil:
		res.Err = why
	case src.Kind == KindYum:
		keys, err := sourceKeys(src)
		if err != nil {
			res.Err = err
			break
		}
		m.syncYum(ctx, src, keys, res, &pr)
	case src.Kind == KindTree:
		keys, err := sourceKeys(src)
		if err != nil {
			res.Err = err
			break
		}
		m.syncTree(ctx, src, keys, res, &pr)
	default:
		res.Err = fmt.Errorf("%s sources are not supported yet", src.Kind)
	}
	pr.setPhase("done")
	stop()

	res.Duration = m.cfg.Now().Sub(start)
	st := &src.State
	st.LastSync = start.UTC()
	st.BytesFetched += res.BytesFetched
	st.Errors, st.Failed = nil, nil
	st.Mirror, st.MirrorsFailed = res.Mirror, res.MirrorsFailed
	for _, f := range res.Failed {
		st.Errors = append(st.Errors, f.Error())
		if len(st.Failed) < maxErrors {
			st.Failed = append(st.Failed, FailedPackage{Location: f.Location, Reason: f.Err.Error()})
		}
	}
	switch {
	case res.Err != nil:
		st.LastResult = "failed: " + res.Err.Error()
		st.Errors = append([]string{res.Err.Error()}, st.Errors...)
	case len(res.Failed) > 0:
		st.LastResult = fmt.Sprintf("partial: %d of %d packages failed", len(res.Failed), res.New+len(res.Failed))
	case res.Unchanged:
		st.LastResult = "ok: unchanged"
	default:
		st.LastResult = fmt.Sprintf("ok: %d new", res.New)
	}
	if res.Mirror != "" {
		st.LastResult += ", from mirror " + res.Mirror
	}
	if n := len(res.MirrorsFailed); n > 0 && res.Err == nil {
		st.LastResult += fmt.Sprintf(" (%d mirrors failed)", n)
	}
	// An unchanged repository leaves the counts as the last sync (or a
	// compaction since) left them: recounting stats every blob of the
	// source, a request each to an object store.
	if !res.Unchanged {
		if err := m.countSource(src); err != nil && res.Err == nil {
			res.Err = err
		}
	}
	rec := SyncRecord{Start: st.LastSync, Duration: res.Duration, New: res.New, Failed: len(res.Failed),
		BytesFetched: res.BytesFetched, BytesStored: res.BytesStored,
		TotalFetched: st.BytesFetched, TotalStored: st.BytesStored}
	switch {
	case res.Err != nil:
		rec.Result, rec.Error = "failed", res.Err.Error()
	case len(res.Failed) > 0:
		rec.Result = "partial"
	case res.Unchanged:
		rec.Result = "unchanged"
	default:
		rec.Result = "ok"
	}
	st.record(rec)
	if err := m.saveSource(src); err != nil {
		return res, fmt.Errorf("save state of %s: %w", name, err)
	}
	return res, nil
}

// countSource recounts the distinct names and NEVRAs a source has listed,
// and the bytes on disk of the distinct blobs their files use (a blob two
// sources share counts for both), of them those stored as deltas.
func (m *Mirror) countSource(src *Source) error {
	names := map[string]bool{}
	versions := 0
	blobs := map[blob.Digest]bool{}
	var stored, delta int64
	err := m.idx.SourcePackages(src.Name, func(n index.NEVRA) error {
		names[n.Name] = true
		versions++
		p, err := m.idx.Package(n)
		if err != nil {
			return err
		}
		for _, f := range p.Files {
			if f.Blob.IsZero() || blobs[f.Blob] {
				continue
			}
			blobs[f.Blob] = true
			st, err := m.pool.Stat(f.Blob)
			if err != nil {
				return err
			}
			stored += st.Stored
			if st.Delta {
				delta += st.Stored
			}
		}
		return nil
	})
	src.State.Packages, src.State.Versions, src.State.BytesStored = len(names), versions, stored
	src.State.BytesDelta = delta
	return err
}

// sourceKeys returns the keyring packages must be signed by, nil when
// the source does not check signatures.
func sourceKeys(src *Source) (*rpmfile.Keyring, error) {
	if !src.GPGCheck && !src.RepoGPGCheck {
		return nil, nil
	}
	k, err := src.Keyring()
	if err != nil {
		return nil, err
	}
	if k.Len() == 0 {
		return nil, errors.New("gpgcheck is on and the source has no key")
	}
	return k, nil
}

// Bounds of a sync's failover among the mirrors of a metalink or mirror
// list.
const (
	// maxMirrorTries is how many mirrors one sync asks for repomd.xml.
	maxMirrorTries = 16
	// maxPackageTries is how many mirrors one package is fetched from.
	maxPackageTries = 3
	// maxMetalinkSize bounds a metalink or mirror list document.
	maxMetalinkSize = 4 << 20
	// maxRepomdSize bounds repomd.xml.
	maxRepomdSize = 16 << 20
)

var (
	// ErrNoMirror reports a metalink or mirror list source none of whose
	// mirrors served a repomd.xml (matching the metalink) and its primary
	// metadata.
	ErrNoMirror = errors.New("no mirror served the repository's metadata")
	// ErrMetalinkMismatch reports a mirror's repomd.xml that matches none
	// of the metalink's hashes (or sizes).
	ErrMetalinkMismatch = errors.New("repomd.xml does not match the metalink")
)

// noMirrorError is ErrNoMirror with why each mirror tried failed.
type noMirrorError struct {
	tried, listed int
	errs          []error
}

func (e *noMirrorError) Error() string {
	why := make([]string, len(e.errs))
	for i, err := range e.errs {
		why[i] = err.Error()
	}
	return fmt.Sprintf("%v (%d of %d mirrors tried): %s", ErrNoMirror, e.tried, e.listed, strings.Join(why, "; "))
}

func (e *noMirrorError) Unwrap() []error { return append([]error{ErrNoMirror}, e.errs...) }

// yumRepo is the metadata of a yum source as one mirror (or its only URL)
// served it.
type yumRepo struct {
	base      string // the mirror's URL, as the metalink or list names it
	loc       *location
	sum       string // SHA-256 of repomd.xml
	unchanged bool   // repomd.xml is the one the last good sync used
	wants     []*want
}

// readMirrors reads a source's metalink or mirror list: the mirrors in the
// order to try them and, for a metalink, what repomd.xml must match.
func (m *Mirror) readMirrors(ctx context.Context, src *Source) ([]yum.Mirror, *yum.Metalink, int64, error) {
	if src.Metalink != "" {
		raw, err := m.readAll(ctx, src.Metalink, maxMetalinkSize)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("fetch metalink: %w", err)
		}
		ml, err := yum.ParseMetalink(bytes.NewReader(raw))
		if err != nil {
			return nil, nil, int64(len(raw)), fmt.Errorf("%s: %w", src.Metalink, err)
		}
		return ml.Mirrors, ml, int64(len(raw)), nil
	}
	raw, err := m.readAll(ctx, src.Mirrorlist, maxMetalinkSize)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("fetch mirror list: %w", err)
	}
	ms, err := yum.ParseMirrorlist(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, int64(len(raw)), fmt.Errorf("%s: %w", src.Mirrorlist, err)
	}
	return ms, nil, int64(len(raw)), nil
}

// syncYum syncs a yum source. One with a metalink or mirror list takes its
// metadata from the first mirror that serves it whole (and, for a
// metalink, a repomd.xml matching one of the metalink's versions), then
// fetches each package from that mirror; a package that fails there is
// fetched again from the next mirror serving the same repomd.xml, up to
// maxPackageTries mirrors. Every mirror given up on is in
// res.MirrorsFailed with why.
func (m *Mirror) syncYum(ctx context.Context, src *Source, keys *rpmfile.Keyring, res *Result, pr *progressState) {
	mirrors := []string{src.URL}
	var ml *yum.Metalink
	if src.mirrored() {
		ms, got, n, err := m.readMirrors(ctx, src)
		res.BytesFetched += n
		if err != nil {
			res.Err = err
			return
		}
		ml, mirrors = got, nil
		for _, mm := range ms {
			mirrors = append(mirrors, mm.Base)
		}
	}
	var metaErrs []error // why each mirror tried for the metadata failed
	failMirror := func(base string, err error) {
		res.MirrorsFailed = append(res.MirrorsFailed, MirrorFailure{URL: base, Reason: err.Error()})
	}
	var repo *yumRepo
	tried := 0
	for repo == nil && tried < len(mirrors) && tried < maxMirrorTries {
		base := mirrors[tried]
		tried++
		r, err := m.readRepo(ctx, src, keys, base, ml, res)
		switch {
		case err == nil:
			repo = r
		case !src.mirrored() || ctx.Err() != nil:
			res.Err = err
			return
		default:
			failMirror(base, err)
			metaErrs = append(metaErrs, fmt.Errorf("%s: %w", base, err))
		}
	}
	if repo == nil {
		res.Err = &noMirrorError{tried: tried, listed: len(mirrors), errs: metaErrs}
		return
	}
	if src.mirrored() {
		res.Mirror = repo.base
	}
	if repo.unchanged {
		res.Unchanged = true
		return
	}
	pkgKeys := keys // keys also check repomd.xml.asc of the mirrors failed over to
	if !src.GPGCheck {
		pkgKeys = nil
	}
	keepLoc, err := src.filter()
	if err != nil {
		res.Err = err
		return
	}
	// The source's memberships in one scan, rather than a lookup (a
	// round trip to PostgreSQL) for every package listed; the listing
	// in memory is larger than this set.
	members := map[index.NEVRA]bool{}
	if err := m.idx.SourcePackages(src.Name, func(n index.NEVRA) error {
		members[n] = true
		return nil
	}); err != nil {
		res.Err = err
		return
	}
	var todo []*want
	for _, w := range repo.wants {
		if !keepLoc(w.location) {
			continue
		}
		res.Listed++
		if members[w.nevra] {
			continue
		}
		if pkgKeys != nil {
			// Another source's copy proves nothing about this one's
			// signature: fetched and verified, then linked (ingestAll).
			todo = append(todo, w)
			continue
		}
		linked, err := m.link(src.Name, w)
		if err != nil {
			res.Err = err
			return
		}
		if linked {
			res.Linked++
			continue
		}
		todo = append(todo, w)
	}
	pr.setPhase("packages")
	// Largest first: a big package started last would run alone at the end
	// while the other workers sit idle.
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].size > todo[j].size })
	pr.total.Store(int64(len(todo)))
	cur := repo
	for try := 1; ; try++ {
		failed := m.ingestPass(ctx, src.Name, pkgKeys, todo, res, pr)
		if len(failed) == 0 {
			break
		}
		if !src.mirrored() {
			res.Failed = append(res.Failed, failed...)
			break
		}
		// The next mirror serving the same repomd.xml, if any may be
		// tried; the mirrors passed over on the way are reported after
		// this one.
		at := len(res.MirrorsFailed)
		var next *yumRepo
		for next == nil && try < maxPackageTries && ctx.Err() == nil && res.Err == nil && tried < len(mirrors) && tried < maxMirrorTries {
			base := mirrors[tried]
			tried++
			loc, _, sum, err := m.readRepomd(ctx, src, keys, base, ml, res)
			if err == nil && sum != repo.sum {
				err = fmt.Errorf("serves another repomd.xml (sha256 %s) than %s, whose packages are being fetched", sum, repo.base)
			}
			if err != nil {
				failMirror(base, err)
				continue
			}
			next = &yumRepo{base: base, loc: loc}
		}
		why := fmt.Sprintf("%d of %d packages failed, the first %v", len(failed), len(todo), failed[0])
		if next != nil {
			why += "; fetched again from " + next.base
		}
		res.MirrorsFailed = slices.Insert(res.MirrorsFailed, at, MirrorFailure{URL: cur.base, Reason: why})
		if next == nil {
			res.Failed = append(res.Failed, failed...)
			break
		}
		cur = next
		byLoc := make(map[string]*want, len(todo))
		for _, w := range todo {
			byLoc[w.location] = w
		}
		todo = todo[:0]
		for _, f := range failed {
			w := byLoc[f.Location]
			if w.target, err = next.loc.resolve(w.base, w.location); err != nil {
				res.Failed = append(res.Failed, f)
				continue
			}
			todo = append(todo, w)
		}
		pr.total.Add(int64(len(todo)))
		pr.failed.Add(-int64(len(todo)))
	}
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Location < res.Failed[j].Location })
	if ctx.Err() != nil && res.Err == nil {
		res.Err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if res.Err == nil && len(res.Failed) == 0 {
		src.State.Repomd = repo.sum
	}
}

// ingestPass ingests todo and returns the packages that failed, adding
// the rest to res.
func (m *Mirror) ingestPass(ctx context.Context, source string, keys *rpmfile.Keyring, todo []*want, res *Result, pr *progressState) []*PackageError {
	before := res.Failed
	res.Failed = nil
	m.ingestAll(ctx, source, keys, todo, res, pr)
	failed := res.Failed
	res.Failed = before
	return failed
}

// readRepo reads a yum source's metadata from one mirror (base): its
// repomd.xml, checked as readRepomd says, and unless that is the one the
// last good sync used, the primary metadata it lists.
func (m *Mirror) readRepo(ctx context.Context, src *Source, keys *rpmfile.Keyring, base string, ml *yum.Metalink, res *Result) (*yumRepo, error) {
	loc, raw, sum, err := m.readRepomd(ctx, src, keys, base, ml, res)
	if err != nil {
		return nil, err
	}
	r := &yumRepo{base: base, loc: loc, sum: sum}
	if sum == src.State.Repomd && len(src.State.Errors) == 0 && strings.HasPrefix(src.State.LastResult, "ok") {
		r.unchanged = true
		return r, nil
	}
	md, err := yum.ParseRepomd(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	prim, err := md.Primary()
	if err != nil {
		return nil, err
	}
	wants, fetched, err := m.readPrimary(ctx, loc, prim)
	res.BytesFetched += fetched
	if err != nil {
		return nil, err
	}
	r.wants = wants
	return r, nil
}

// readRepomd fetches repodata/repomd.xml from base and checks it: against
// the metalink ml (its size and hash must be those of one of the versions
// it lists), when there is one, and its signature under repo_gpgcheck. It
// returns base parsed, the file and its SHA-256.
func (m *Mirror) readRepomd(ctx context.Context, src *Source, keys *rpmfile.Keyring, base string, ml *yum.Metalink, res *Result) (*location, []byte, string, error) {
	loc, err := parseLocation(base)
	if err != nil {
		return nil, nil, "", err
	}
	repomdURL, err := loc.resolve("", "repodata/repomd.xml")
	if err != nil {
		return nil, nil, "", err
	}
	limit := int64(maxRepomdSize)
	if ml != nil {
		// The metalink's sizes bound the download when it gives them all.
		var largest int64
		for _, v := range ml.Versions {
			if v.Size == 0 {
				largest = limit
				break
			}
			largest = max(largest, v.Size)
		}
		limit = min(limit, largest)
	}
	raw, err := m.readAll(ctx, repomdURL, limit)
	if ml != nil && limit < maxRepomdSize && errors.Is(err, errTooLarge) {
		return nil, nil, "", fmt.Errorf("%w: %s is larger than any version the metalink lists (%d bytes at most): %v", ErrMetalinkMismatch, repomdURL, limit, err)
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("fetch repomd.xml: %w", err)
	}
	res.BytesFetched += int64(len(raw))
	if ml != nil {
		if _, err := ml.Match(raw); err != nil {
			return nil, nil, "", fmt.Errorf("%w: %s: %v", ErrMetalinkMismatch, repomdURL, err)
		}
	}
	if src.RepoGPGCheck {
		ascURL, err := loc.resolve("", "repodata/repomd.xml.asc")
		if err != nil {
			return nil, nil, "", err
		}
		asc, err := m.readAll(ctx, ascURL, 64<<10)
		if err != nil {
			return nil, nil, "", fmt.Errorf("repo_gpgcheck: fetch repomd.xml.asc: %w", err)
		}
		res.BytesFetched += int64(len(asc))
		if err := keys.CheckDetached(raw, asc); err != nil {
			return nil, nil, "", fmt.Errorf("repo_gpgcheck: repomd.xml.asc: %w", err)
		}
	}
	sum := sha256.Sum256(raw)
	return loc, raw, hex.EncodeToString(sum[:]), nil
}

// readPrimary fetches, verifies and parses primary.xml. The checksum in
// repomd.xml covers the compressed file; nothing parsed is used unless it
// matches.
func (m *Mirror) readPrimary(ctx context.Context, loc *location, d *yum.Data) ([]*want, int64, error) {
	target, err := loc.resolve("", d.Location.Href)
	if err != nil {
		return nil, 0, err
	}
	h, err := yum.NewHash(d.Checksum.Type)
	if err != nil {
		return nil, 0, err
	}
	rc, size, err := m.open(ctx, target)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch primary: %w", err)
	}
	defer rc.Close()
	if size > m.cfg.MaxMetadataSize {
		return nil, 0, fmt.Errorf("fetch primary: the server says %d bytes, more than the %d allowed", size, m.cfg.MaxMetadataSize)
	}
	cr := &countingReader{r: io.LimitReader(rc, m.cfg.MaxMetadataSize)}
	tee := io.TeeReader(cr, h)
	dec, err := yum.Decompress(tee, m.cfg.MaxMetadataSize)
	if err != nil {
		return nil, cr.n, fmt.Errorf("primary %s: %w", d.Location.Href, err)
	}
	defer dec.Close()
	seen := map[index.NEVRA]bool{}
	var wants []*want
	perr := yum.ParsePrimary(dec, func(p *yum.Package) error {
		if p.Arch == "src" || p.Arch == "nosrc" {
			return nil
		}
		e, err := p.Epoch()
		if err != nil {
			return err
		}
		n := index.NEVRA{Name: p.Name, Epoch: e, Version: p.Version.Ver, Release: p.Version.Rel, Arch: p.Arch}
		if err := n.Validate(); err != nil {
			return fmt.Errorf("primary: %w", err)
		}
		if seen[n] {
			return nil
		}
		seen[n] = true
		t, err := loc.resolve(p.Location.Base, p.Location.Href)
		if err != nil {
			return fmt.Errorf("primary: package %s: %w", n, err)
		}
		wants = append(wants, &want{nevra: n, target: t, location: p.Location.Href, base: p.Location.Base, checksum: p.Checksum, size: p.Size.Package})
		return nil
	})
	// Hash what the parser left unread, then judge: a checksum mismatch
	// explains a parse error better than the parse error does.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, cr.n, fmt.Errorf("fetch primary: %w", err)
	}
	want := strings.ToLower(strings.TrimSpace(d.Checksum.Value))
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, cr.n, fmt.Errorf("primary %s: %w: %s is %s, repomd.xml says %s", d.Location.Href, ErrChecksum, d.Checksum.Type, got, want)
	}
	if perr != nil {
		return nil, cr.n, perr
	}
	sort.Slice(wants, func(i, j int) bool { return wants[i].location < wants[j].location })
	return wants, cr.n, nil
}

// ingestAll runs the workers over todo and commits each good package.
// link adds source's membership to w's package when the index has it
// already, and reports whether it did.
func (m *Mirror) link(source string, w *want) (bool, error) {
	release, err := m.idx.Hold()
	if err != nil {
		return false, err
	}
	defer release()
	have, err := m.idx.HasPackage(w.nevra)
	if err != nil || !have {
		return false, err
	}
	return true, m.idx.AddMembership(source, w.nevra, w.checksum.String())
}

// ErrOtherContent reports a verified package whose NEVRA the index has
// already with other files.
var ErrOtherContent = errors.New("the index has this NEVRA with other content")

// linkVerified adds source's membership to a package that was verified
// (signature and payload) when the index has its NEVRA already, and
// reports whether it did. The copy the index has may have come from
// another source, unchecked, and from other bytes (the same build with no
// signature, or signed by another key): it is linked only when the files
// it indexed are those of the verified package, content for content
// (paths, blob digests, build-ids); otherwise the package fails, saying
// so, and the index's copy is left as it is.
func (m *Mirror) linkVerified(source string, pkg *index.Package) (bool, error) {
	have, err := m.idx.HasPackage(pkg.NEVRA)
	if err != nil || !have {
		return false, err
	}
	old, err := m.idx.Package(pkg.NEVRA)
	if err != nil {
		return false, err
	}
	if diff := filesDiffer(old.Files, pkg.Files); diff != "" {
		return false, fmt.Errorf("%w (%s): the signed package is not linked to it", ErrOtherContent, diff)
	}
	return true, m.idx.AddMembership(source, pkg.NEVRA, pkg.Checksum)
}

// filesDiffer names the first difference between two packages' indexed
// files, "" when there is none.
func filesDiffer(a, b []index.File) string {
	key := func(fs []index.File) map[string]index.File {
		m := make(map[string]index.File, len(fs))
		for _, f := range fs {
			f.Kind = index.KindNone
			m[f.Path] = f
		}
		return m
	}
	ka, kb := key(a), key(b)
	if len(ka) != len(kb) {
		return fmt.Sprintf("%d files there, %d here", len(ka), len(kb))
	}
	for p, f := range kb {
		if g, ok := ka[p]; !ok || g != f {
			return p + " differs"
		}
	}
	return ""
}

func (m *Mirror) ingestAll(ctx context.Context, source string, keys *rpmfile.Keyring, todo []*want, res *Result, pr *progressState) {
	var mu sync.Mutex
	jobs := make(chan *want)
	var wg sync.WaitGroup
	commits := newCommitter(m.idx)
	defer commits.close()
	for range min(m.cfg.Workers, max(len(todo), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range jobs {
				w.keys = keys
				var fetched int64 // counted for failed downloads too
				// Held from the first stored file to the commit: gc
				// must not take a file this package found stored.
				var pkg *index.Package
				linked := false
				release, err := m.idx.Hold()
				if err == nil {
					pkg, err = m.ingest(ctx, w, func(n int64) {
						fetched += n
						pr.bytes.Add(n)
					})
					if err == nil && keys != nil {
						linked, err = m.linkVerified(source, pkg)
					}
					if err == nil && !linked {
						pkg.Sources = []string{source}
						err = commits.put(pkg)
					}
					release()
				}
				mu.Lock()
				res.BytesFetched += fetched
				switch {
				case err != nil:
					res.Failed = append(res.Failed, &PackageError{Location: w.location, Err: err})
					pr.failed.Add(1)
				case linked:
					res.Linked++
					w.done = pkg.NEVRA.String()
				default:
					res.New++
					res.BytesStored += pkg.Stored
					w.done = pkg.NEVRA.String()
				}
				mu.Unlock()
				pr.done.Add(1)
			}
		}()
	}
	for _, w := range todo {
		if m.cfg.Pause != nil {
			if err := m.cfg.Pause(); err != nil {
				res.Err = err
				break
			}
		}
		select {
		case jobs <- w:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Location < res.Failed[j].Location })
}

// progressState is a running sync's counters.
type progressState struct {
	source  string
	started time.Time
	phase   atomic.Value
	total   atomic.Int64
	done    atomic.Int64
	failed  atomic.Int64
	bytes   atomic.Int64
}

func (p *progressState) setPhase(s string) { p.phase.Store(s) }

func (p *progressState) snapshot() Progress {
	return Progress{
		Source: p.source, Phase: p.phase.Load().(string), Total: int(p.total.Load()),
		Done: int(p.done.Load()), Failed: int(p.failed.Load()), BytesFetched: p.bytes.Load(), Started: p.started,
	}
}

// report calls fn every 200 ms until the returned stop is called, and
// once more then.
func (p *progressState) report(fn func(Progress)) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(p.snapshot())
			case <-done:
				fn(p.snapshot())
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// committer indexes the packages the workers have ingested, several to a
// transaction when several are waiting: a transaction's commit (a WAL
// flush on PostgreSQL, a sync on Badger) is then paid once for all of
// them. A package waiting alone is committed at once. Each package still
// lands whole; when a batch fails, its packages are committed one by one,
// so that one bad package fails alone.
type committer struct {
	idx     *index.Store
	reqs    chan commitReq
	done    chan struct{}
	batches int // transactions tried, for tests; read after close
}

type commitReq struct {
	pkg *index.Package
	err chan error
}

// maxCommitBatch bounds the packages of one transaction.
const maxCommitBatch = 32

func newCommitter(idx *index.Store) *committer {
	c := &committer{idx: idx, reqs: make(chan commitReq), done: make(chan struct{})}
	go c.run()
	return c
}

// put indexes pkg and returns once it is committed.
func (c *committer) put(pkg *index.Package) error {
	r := commitReq{pkg: pkg, err: make(chan error, 1)}
	c.reqs <- r
	return <-r.err
}

// close ends the committer once every put has returned.
func (c *committer) close() {
	close(c.reqs)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	for r := range c.reqs {
		batch := []commitReq{r}
	waiting:
		for len(batch) < maxCommitBatch {
			select {
			case r, ok := <-c.reqs:
				if !ok {
					break waiting
				}
				batch = append(batch, r)
			default:
				break waiting
			}
		}
		pkgs := make([]*index.Package, len(batch))
		for i, r := range batch {
			pkgs[i] = r.pkg
		}
		err := c.idx.PutPackages(pkgs)
		c.batches++
		for _, r := range batch {
			if err != nil && len(batch) > 1 {
				r.err <- c.idx.PutPackage(r.pkg)
				continue
			}
			r.err <- err
		}
	}
}
