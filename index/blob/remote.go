package blob

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Remote is an object store that holds the pool's blobs instead of the
// local sha256/ directory (index/blob/s3blob implements it over S3). Its
// objects are the same compressed bytes, named by digest; a Put appears
// whole or not at all. An error for a missing blob matches fs.ErrNotExist.
type Remote interface {
	// Put stores the compressed blob d (size bytes from r). compacted
	// marks it as Compact's final form (the local pool marks that with
	// the file mode) and replaces what is there. A fresh blob
	// (!compacted) is stored only where d is missing: when d is already
	// there Put leaves it (in whatever form) and returns an error
	// matching fs.ErrExist, so a new blob costs one request and no
	// existence check before it. (A store that ignores the condition
	// replaces d with the same content.)
	Put(ctx context.Context, d Digest, r io.Reader, size int64, compacted bool) error
	Open(ctx context.Context, d Digest) (io.ReadCloser, int64, error)
	Stat(ctx context.Context, d Digest) (RemoteStat, error)
	Remove(ctx context.Context, d Digest) error
	Walk(ctx context.Context, fn func(d Digest, size int64, modified time.Time) error) error
}

// RemoteStat is what a Remote knows of one stored blob.
type RemoteStat struct {
	Size      int64
	Compacted bool
}

// With a Remote (Config.Remote) the pool keeps no compressed copies of
// its own: a new blob is written to tmp/ as always, then uploaded, and
// the temp file goes; reads stream from the object store, and plain/
// (uncompressed copies for sysroots, Range requests and sections, bounded
// by gc's plain budget) is the local cache. Compaction downloads a blob,
// recompresses it and uploads the result (or the old bytes, when that is
// no smaller) marked compacted. Blobs in a Remote are never deltas: a
// delta's read needs its base's plain copy, and gc would have to read
// every object's header to keep bases.

// present remembers digests the remote is known to hold, so that a sync
// asks the store once per blob, not once per package that ships it. Only
// Remove forgets one: nothing else deletes blobs.
type present struct {
	mu sync.RWMutex
	m  map[Digest]RemoteStat
}

func (p *present) get(d Digest) (RemoteStat, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st, ok := p.m[d]
	return st, ok
}

func (p *present) set(d Digest, st RemoteStat) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[Digest]RemoteStat{}
	}
	if len(p.m) >= 1<<20 {
		clear(p.m) // a bound on memory; a miss only costs a HEAD
	}
	p.m[d] = st
}

func (p *present) forget(d Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, d)
}

// remoteStat returns what the remote knows of d, or ErrNotFound.
func (p *Pool) remoteStat(d Digest) (RemoteStat, error) {
	if st, ok := p.known.get(d); ok {
		return st, nil
	}
	st, err := p.cfg.Remote.Stat(context.Background(), d)
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return st, err
	}
	p.known.set(d, st)
	return st, nil
}

// remoteSize returns the stored size of d in the remote, or ErrNotFound.
func (p *Pool) remoteSize(d Digest) (int64, error) {
	st, err := p.remoteStat(d)
	return st.Size, err
}

// upload sends the finished temp file f (the compressed blob d) to the
// remote; the object exists once it returns nil. A fresh blob the remote
// already holds is left as it is there, and upload returns 0 bytes.
func (p *Pool) upload(d Digest, f *os.File, compacted bool) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	// A section reader: the client can rewind it to send it again.
	err = p.cfg.Remote.Put(context.Background(), d, io.NewSectionReader(f, 0, fi.Size()), fi.Size(), compacted)
	if !compacted && errors.Is(err, fs.ErrExist) {
		p.known.forget(d) // there, in a form Stat will tell
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	p.known.set(d, RemoteStat{Size: fi.Size(), Compacted: compacted})
	return fi.Size(), nil
}

// compactRemote is Compact for a remote blob: download the stored bytes,
// recompress them, upload the smaller of the two marked compacted.
func (p *Pool) compactRemote(ctx context.Context, d Digest, o CompactOptions) (before, after int64, err error) {
	p.known.forget(d) // ask the store: another node may have compacted it
	st, err := p.remoteStat(d)
	if err != nil {
		return 0, 0, fmt.Errorf("compact %s: %w", d, err)
	}
	before = st.Size
	if st.Compacted {
		return before, before, nil
	}
	rc, _, err := p.cfg.Remote.Open(ctx, d)
	if err != nil {
		return before, before, fmt.Errorf("compact %s: %w", d, err)
	}
	raw, err := p.TempFile("fetch-*.tmp")
	if err != nil {
		rc.Close()
		return before, before, err
	}
	defer func() {
		raw.Close()
		os.Remove(raw.Name())
	}()
	_, err = io.Copy(raw, rc)
	rc.Close()
	if err != nil {
		return before, before, fmt.Errorf("compact %s: fetch: %w", d, err)
	}
	if _, err := raw.Seek(0, io.SeekStart); err != nil {
		return before, before, err
	}
	dec, err := decode(bufio.NewReaderSize(raw, 128<<10))
	if err != nil {
		return before, before, fmt.Errorf("compact %s: %w: %v", d, ErrCorrupt, err)
	}
	tmp, err := p.recompress(ctx, d, dec, o)
	dec.Close()
	if err != nil {
		return before, before, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	best := tmp
	if fi, err := tmp.Stat(); err != nil {
		return before, before, err
	} else if fi.Size() >= before { // not worth it: the old bytes, marked final
		best = raw
	}
	after, err = p.upload(d, best, true)
	if err != nil {
		return before, before, fmt.Errorf("compact %s: %w", d, err)
	}
	return before, after, nil
}

// openRemote streams blob d's uncompressed content from the remote.
func (p *Pool) openRemote(d Digest) (io.ReadCloser, error) {
	rc, _, err := p.cfg.Remote.Open(context.Background(), d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	// The same stored forms as on local disk: a pool migrated into the
	// store brings its deltas along (the store's own compaction makes
	// none yet).
	r, err := p.openStored(d, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return r, nil
}

// remoteInfo is what WalkInfo reports for a remote object.
type remoteInfo struct {
	name string
	size int64
	mod  time.Time
}

func (i remoteInfo) Name() string       { return i.name }
func (i remoteInfo) Size() int64        { return i.size }
func (i remoteInfo) Mode() fs.FileMode  { return 0o444 }
func (i remoteInfo) ModTime() time.Time { return i.mod }
func (i remoteInfo) IsDir() bool        { return false }
func (i remoteInfo) Sys() any           { return nil }
