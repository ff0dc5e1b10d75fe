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
	Put(ctx context.Context, d Digest, r io.Reader, size int64) error
	Open(ctx context.Context, d Digest) (io.ReadCloser, int64, error)
	Size(ctx context.Context, d Digest) (int64, error)
	Remove(ctx context.Context, d Digest) error
	Walk(ctx context.Context, fn func(d Digest, size int64, modified time.Time) error) error
}

// With a Remote (Config.Remote) the pool keeps no compressed copies of
// its own: a new blob is written to tmp/ as always, then uploaded, and
// the temp file goes; reads stream from the object store, and plain/
// (uncompressed copies for sysroots, Range requests and sections, bounded
// by gc's plain budget) is the local cache. Compaction does not run
// against an object store yet: IsCompacted says true, so syncs should
// write at the level they mean to keep (mirror.compression).

// present remembers digests the remote is known to hold, so that a sync
// asks the store once per blob, not once per package that ships it. Only
// Remove forgets one: nothing else deletes blobs.
type present struct {
	mu sync.RWMutex
	m  map[Digest]int64 // stored size
}

func (p *present) get(d Digest) (int64, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	n, ok := p.m[d]
	return n, ok
}

func (p *present) set(d Digest, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[Digest]int64{}
	}
	if len(p.m) >= 1<<20 {
		clear(p.m) // a bound on memory; a miss only costs a HEAD
	}
	p.m[d] = n
}

func (p *present) forget(d Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, d)
}

// remoteSize returns the stored size of d in the remote, or ErrNotFound.
func (p *Pool) remoteSize(d Digest) (int64, error) {
	if n, ok := p.known.get(d); ok {
		return n, nil
	}
	n, err := p.cfg.Remote.Size(context.Background(), d)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return 0, err
	}
	p.known.set(d, n)
	return n, nil
}

// upload sends the finished temp file f (the compressed blob d) to the
// remote; the object exists once it returns nil.
func (p *Pool) upload(d Digest, f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if err := p.cfg.Remote.Put(context.Background(), d, bufio.NewReaderSize(f, 256<<10), fi.Size()); err != nil {
		return 0, err
	}
	p.known.set(d, fi.Size())
	return fi.Size(), nil
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
	dec, err := decode(bufio.NewReaderSize(rc, 128<<10))
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("open blob %s: %w: %v", d, ErrCorrupt, err)
	}
	return &reader{d: d, f: rc, dec: dec}, nil
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
