package mirror

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// CompactConfig says how compaction rewrites the blobs syncs stored.
type CompactConfig struct {
	// Level is the zstd level of blobs kept whole (default 9; 19 is
	// what compaction used before deltas, at about six times the CPU for
	// a tenth fewer bytes).
	Level int
	// NoDeltas keeps every blob whole: no delta on an older version.
	NoDeltas bool
}

// DefaultCompactLevel is the zstd level of whole blobs unless configured.
const DefaultCompactLevel = 9

// CompactResult says what a compaction did.
type CompactResult struct {
	Blobs         int   // blobs recompressed
	Deltas        int   // of them, stored as deltas on an older version
	Before, After int64 // their bytes before and after
	// DeltaErrors are the first few reasons a delta could not be made
	// on the base chosen (the blob took its whole form).
	DeltaErrors []string
}

// Compact rewrites every blob a sync stored (fresh, S2 by default) in its
// final form, in parallel, then recounts the sources' stored bytes: a
// delta on the same file of the nearest older version of the same
// package (see base choice below), when that pays, else one zstd frame at
// Config.Compact.Level (the reference zstd binary when installed). Ingest
// stores blobs fast so that syncs are quick; compaction trades CPU, off
// the sync path, for disk.
//
// Base choice. The files of all versions of one package name and arch
// fall into lineages by a key: the path with the package's version and
// release and every run of digits taken out (libssl.so.3 and
// libcrypto.so.3 stay apart, libfoo-1.2.so meets libfoo-1.3.so), /bin,
// /sbin and /lib* as under a merged /usr (mergeUsr), and for
// a debug file named by build-id (/usr/lib/debug/.build-id/xx/...) the
// key of the executable that carries the same build-id. Each lineage is
// walked oldest version first; a fresh blob is tried as a delta on the
// newest earlier blob of its lineage that is whole (the chain rule: a
// base is never a delta), and a blob kept whole becomes the base of the
// next ones. A blob already compacted keeps its form.
func (m *Mirror) Compact(ctx context.Context) (*CompactResult, error) {
	zstdCmd, _ := exec.LookPath("zstd") // absent: the Go encoder
	todo := map[blob.Digest]bool{}
	if err := m.pool.Walk(func(d blob.Digest, _ int64) error {
		if done, err := m.pool.IsCompacted(d); err == nil && !done {
			todo[d] = true
		}
		return ctx.Err()
	}); err != nil {
		return nil, err
	}
	var lines [][]lineEntry
	if !m.cfg.Compact.NoDeltas && len(todo) > 0 {
		var err error
		if lines, err = m.lineages(ctx, todo); err != nil {
			return nil, err
		}
	}
	c := &compaction{m: m, ctx: ctx, state: map[blob.Digest]blobState{},
		done: map[blob.Digest]chan struct{}{}, res: &CompactResult{},
		opts: blob.CompactOptions{ZstdCmd: zstdCmd, Level: m.cfg.Compact.Level, Gate: m.idx.Hold}}
	jobs := make(chan []lineEntry)
	var wg sync.WaitGroup
	for range m.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for line := range jobs {
				c.line(line)
			}
		}()
	}
	var paused error
	send := func(line []lineEntry) bool {
		// Each blob is rewritten beside itself before the old one goes:
		// on a disk short of space compaction stops, as a sync does,
		// rather than fill it (every 64 jobs: a statfs each is cheap,
		// but not free).
		if c.sent%64 == 0 && m.cfg.Pause != nil {
			if paused = m.cfg.Pause(); paused != nil {
				return false
			}
		}
		c.sent++
		select {
		case jobs <- line:
			return true
		case <-ctx.Done():
			return false
		}
	}
	ok := true
	for _, line := range lines {
		if ok = send(line); !ok {
			break
		}
	}
	if ok {
		// What no lineage reached (files without a key, blobs no package
		// names) is compacted whole, each on its own.
		rest := make([]blob.Digest, 0, len(todo))
		for d := range todo {
			rest = append(rest, d)
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i].String() < rest[j].String() })
		for _, d := range rest {
			if !send([]lineEntry{{digest: d}}) {
				break
			}
		}
	}
	close(jobs)
	wg.Wait()
	firstErr := c.err
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil && paused != nil {
		firstErr = fmt.Errorf("compaction %w", paused)
	}
	if err := m.recountStored(); err != nil && firstErr == nil {
		firstErr = err
	}
	return c.res, firstErr
}

// lineEntry is one blob of a lineage: the file of one version.
type lineEntry struct {
	nevra  index.NEVRA
	digest blob.Digest
	size   int64
}

// blobState is what a compaction knows of a blob's form.
type blobState uint8

const (
	stateUnknown blobState = iota
	stateBusy              // being compacted by a worker
	stateWhole             // final, whole: a base
	stateDelta             // final, a delta
	stateFailed            // compaction failed
)

// compaction is one Compact run's shared state.
type compaction struct {
	m    *Mirror
	ctx  context.Context
	opts blob.CompactOptions
	sent int

	mu    sync.Mutex
	state map[blob.Digest]blobState
	done  map[blob.Digest]chan struct{} // closed when a busy blob settles
	res   *CompactResult
	err   error
}

// claim returns what is known of d, marking it busy for the caller when
// it is fresh and nobody has it (claimed true); the caller then calls
// settle. A blob another worker is compacting is waited for: the same
// file often sits in several lineages (git's builtins are one binary
// under many names), and a lineage that skipped it would lose its base.
// A worker waits only between its own blobs, holding none busy, so
// waits cannot form a cycle.
func (c *compaction) claim(d blob.Digest) (st blobState, claimed bool) {
	c.mu.Lock()
	st = c.state[d]
	if st == stateBusy {
		done := c.done[d]
		c.mu.Unlock()
		select {
		case <-done:
		case <-c.ctx.Done():
			return stateFailed, false
		}
		c.mu.Lock()
		st = c.state[d]
		c.mu.Unlock()
		return st, false
	}
	if st == stateUnknown {
		c.state[d] = stateBusy
		c.done[d] = make(chan struct{})
	}
	c.mu.Unlock()
	if st != stateUnknown {
		return st, false
	}
	info, err := c.m.pool.Info(d)
	switch {
	case err != nil:
		st = stateFailed
	case !info.Compacted:
		return stateBusy, true
	case info.Delta:
		st = stateDelta
	default:
		st = stateWhole
	}
	c.settle(d, st)
	return st, false
}

// settle records what became of d, which the caller had claimed.
func (c *compaction) settle(d blob.Digest, st blobState) {
	c.mu.Lock()
	c.state[d] = st
	close(c.done[d])
	delete(c.done, d)
	c.mu.Unlock()
}

// line compacts the fresh blobs of one lineage, oldest first.
func (c *compaction) line(line []lineEntry) {
	var base blob.Digest
	for _, e := range line {
		if c.ctx.Err() != nil {
			return
		}
		st, claimed := c.claim(e.digest)
		if claimed {
			o := c.opts
			o.Base, o.Size = base, e.size
			r, err := c.m.pool.CompactWith(c.ctx, e.digest, o)
			st = stateWhole
			if r.Delta {
				st = stateDelta
			}
			c.mu.Lock()
			if err != nil {
				st = stateFailed
				if c.err == nil {
					c.err = err
				}
			} else {
				c.res.Blobs++
				c.res.Before += r.Before
				c.res.After += r.After
				if r.Delta {
					c.res.Deltas++
				}
				if r.DeltaErr != nil && len(c.res.DeltaErrors) < 10 {
					c.res.DeltaErrors = append(c.res.DeltaErrors, fmt.Sprintf("%s: %v", e.digest, r.DeltaErr))
				}
			}
			c.mu.Unlock()
			c.settle(e.digest, st)
		}
		if st == stateWhole {
			base = e.digest
		}
	}
}

// lineages groups the blobs of every version of the packages that have a
// fresh blob (todo) by lineage key, each in version order (oldest first)
// with repeats of one blob dropped; only lineages with a todo blob are
// returned. Two passes over the index: which package names and arches
// have fresh blobs, then their files.
func (m *Mirror) lineages(ctx context.Context, todo map[blob.Digest]bool) ([][]lineEntry, error) {
	hot := map[string]bool{}
	err := m.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if todo[f.Blob] {
				hot[p.NEVRA.Name+"\x00"+p.NEVRA.Arch] = true
				break
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	groups := map[string][]lineEntry{}
	err = m.idx.Packages(func(p *index.Package) error {
		name := p.NEVRA.Name + "\x00" + p.NEVRA.Arch
		if !hot[name] {
			return nil
		}
		for _, f := range p.Files {
			if f.Blob.IsZero() {
				continue
			}
			k := m.lineKey(p.NEVRA, &f)
			if k == "" {
				continue
			}
			groups[name+"\x00"+k] = append(groups[name+"\x00"+k], lineEntry{nevra: p.NEVRA, digest: f.Blob, size: f.Size})
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines [][]lineEntry
	for _, k := range keys {
		g := groups[k]
		sort.SliceStable(g, func(i, j int) bool { return g[i].nevra.Compare(g[j].nevra) < 0 })
		var line []lineEntry
		fresh := false
		for i, e := range g {
			if i > 0 && e.digest == g[i-1].digest {
				continue
			}
			fresh = fresh || todo[e.digest]
			line = append(line, e)
		}
		if fresh {
			lines = append(lines, line)
		}
	}
	return lines, nil
}

// lineKey is the lineage key of file f of package n (see Compact), or ""
// for a file without one.
func (m *Mirror) lineKey(n index.NEVRA, f *index.File) string {
	path := f.Path
	if strings.HasPrefix(path, "/usr/lib/debug/.build-id/") {
		if f.BuildID.IsZero() {
			return ""
		}
		ms, err := m.idx.Lookup(f.BuildID)
		if err != nil {
			return ""
		}
		path = ""
		for _, mt := range ms {
			if mt.Kind == index.KindExecutable {
				path = "debug:" + mt.Path
				break
			}
		}
		if path == "" {
			return ""
		}
	}
	// Fedora's debug files carry the package's version:
	// /usr/lib/debug/usr/lib64/libc.so.6-2.39-17.fc40.x86_64.debug.
	path = strings.ReplaceAll(path, "-"+n.Version+"-"+n.Release+"."+n.Arch, "")
	return stripDigits(mergeUsr(path))
}

// mergeUsr maps a path to where a merged /usr has it: /bin, /sbin and
// /lib* under /usr, and sbin as bin (Debian moved /lib/x86_64-linux-gnu/
// libc.so.6 and /bin/ls to /usr between bookworm and trixie; Fedora has
// merged sbin into bin), so that a file meets its older versions across
// the move. The debug tree's copy of those paths too.
func mergeUsr(path string) string {
	prefix := ""
	for _, p := range []string{"debug:", "/usr/lib/debug"} {
		if strings.HasPrefix(path, p+"/") {
			prefix, path = p, path[len(p):]
			break
		}
	}
	for _, top := range []string{"/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/"} {
		if strings.HasPrefix(path, top) {
			path = "/usr" + path
			break
		}
	}
	if strings.HasPrefix(path, "/usr/sbin/") {
		path = "/usr/bin/" + path[len("/usr/sbin/"):]
	}
	return prefix + path
}

// stripDigits replaces every run of decimal digits with one '#'.
func stripDigits(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			if !in {
				b.WriteByte('#')
			}
			in = true
			continue
		}
		in = false
		b.WriteByte(c)
	}
	return b.String()
}

// recountStored sets each source's stored bytes to what its packages'
// distinct blobs take on disk now.
func (m *Mirror) recountStored() error {
	srcs, err := m.Sources()
	if err != nil {
		return err
	}
	for _, s := range srcs {
		if err := m.countSource(s); err != nil {
			return err
		}
		if h := s.State.History; len(h) > 0 {
			h[len(h)-1].TotalStored = s.State.BytesStored
		}
		if err := m.saveSource(s); err != nil {
			return err
		}
	}
	return nil
}
