package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	if err := m.countSource(src); err != nil && res.Err == nil {
		res.Err = err
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

func (m *Mirror) syncYum(ctx context.Context, src *Source, keys *rpmfile.Keyring, res *Result, pr *progressState) {
	loc, err := parseLocation(src.URL)
	if err != nil {
		res.Err = err
		return
	}
	repomdURL, err := loc.resolve("", "repodata/repomd.xml")
	if err != nil {
		res.Err = err
		return
	}
	raw, err := m.readAll(ctx, repomdURL, 16<<20)
	if err != nil {
		res.Err = fmt.Errorf("fetch repomd.xml: %w", err)
		return
	}
	res.BytesFetched += int64(len(raw))
	if src.RepoGPGCheck {
		ascURL, err := loc.resolve("", "repodata/repomd.xml.asc")
		if err != nil {
			res.Err = err
			return
		}
		asc, err := m.readAll(ctx, ascURL, 64<<10)
		if err != nil {
			res.Err = fmt.Errorf("repo_gpgcheck: fetch repomd.xml.asc: %w", err)
			return
		}
		res.BytesFetched += int64(len(asc))
		if err := keys.CheckDetached(raw, asc); err != nil {
			res.Err = fmt.Errorf("repo_gpgcheck: repomd.xml.asc: %w", err)
			return
		}
	}
	if !src.GPGCheck {
		keys = nil
	}
	sum := sha256.Sum256(raw)
	repomdSum := hex.EncodeToString(sum[:])
	if repomdSum == src.State.Repomd && len(src.State.Errors) == 0 && strings.HasPrefix(src.State.LastResult, "ok") {
		res.Unchanged = true
		return
	}
	md, err := yum.ParseRepomd(strings.NewReader(string(raw)))
	if err != nil {
		res.Err = err
		return
	}
	prim, err := md.Primary()
	if err != nil {
		res.Err = err
		return
	}
	wants, fetched, err := m.readPrimary(ctx, loc, prim)
	res.BytesFetched += fetched
	if err != nil {
		res.Err = err
		return
	}
	keepLoc, err := src.filter()
	if err != nil {
		res.Err = err
		return
	}
	var todo []*want
	for _, w := range wants {
		if !keepLoc(w.location) {
			continue
		}
		res.Listed++
		member, err := m.idx.HasMembership(src.Name, w.nevra)
		if err != nil {
			res.Err = err
			return
		}
		if member {
			continue
		}
		if keys != nil {
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
	m.ingestAll(ctx, src.Name, keys, todo, res, pr)
	if ctx.Err() != nil && res.Err == nil {
		res.Err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if res.Err == nil && len(res.Failed) == 0 {
		src.State.Repomd = repomdSum
	}
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
		wants = append(wants, &want{nevra: n, target: t, location: p.Location.Href, checksum: p.Checksum, size: p.Size.Package})
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
