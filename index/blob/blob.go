package blob

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

var (
	// ErrNotFound reports a digest the pool does not hold.
	ErrNotFound = errors.New("blob not found")
	// ErrCorrupt reports a stored blob whose content does not decode or does
	// not match its digest.
	ErrCorrupt = errors.New("blob corrupt")
	// ErrBadDigest reports a string that is not a SHA-256 digest.
	ErrBadDigest = errors.New("malformed digest")
)

// Digest is the SHA-256 of a file's uncompressed content.
type Digest [sha256.Size]byte

// ParseDigest parses 64 lowercase hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("%w: %q", ErrBadDigest, s)
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("%w: %q", ErrBadDigest, s)
	}
	return d, nil
}

// Sum returns the digest of b.
func Sum(b []byte) Digest { return sha256.Sum256(b) }

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// IsZero reports whether d is the zero digest (no content).
func (d Digest) IsZero() bool { return d == Digest{} }

// Level is a zstd compression effort.
type Level = zstd.EncoderLevel

// Levels from fastest to smallest.
const (
	LevelFastest = zstd.SpeedFastest
	LevelDefault = zstd.SpeedDefault
	LevelBetter  = zstd.SpeedBetterCompression
	LevelBest    = zstd.SpeedBestCompression
)

// Config tunes a Pool.
type Config struct {
	// Codec compresses new blobs (default CodecZstd).
	Codec Codec
	// Level is the zstd effort for new blobs when Codec is CodecZstd.
	Level Level
	// NoSync skips fsync of new blobs (tests and benchmarks only: a power
	// loss may then leave a torn blob).
	NoSync bool
	// Remote, when set, holds the blobs instead of the local sha256/
	// directory (see remote.go).
	Remote Remote
}

// Pool is a directory of blobs. It is safe for concurrent use; two pools
// (or processes) writing the same digest at once both succeed.
type Pool struct {
	dir   string
	cfg   Config
	encs  sync.Pool
	known present // with a Remote: digests it holds
	// uploads bounds a Remote's uploads in flight from Batches, each
	// holding its compressed temp file until it is stored.
	uploads chan struct{}
}

// Open opens (creating as needed) the pool under dir.
func Open(dir string, cfg Config) (*Pool, error) {
	if cfg.Level == 0 {
		cfg.Level = LevelDefault
	}
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open blob pool: %w", err)
		}
	}
	p := &Pool{dir: dir, cfg: cfg, uploads: make(chan struct{}, maxUploads)}
	return p, nil
}

// Dir returns the pool's directory.
func (p *Pool) Dir() string { return p.dir }

// Path returns where the blob named d lives (whether or not it exists).
func (p *Pool) Path(d Digest) string {
	h := d.String()
	return filepath.Join(p.dir, "sha256", h[:2], h)
}

// Has reports whether the blob d is stored.
func (p *Pool) Has(d Digest) bool {
	if p.cfg.Remote != nil {
		_, err := p.remoteSize(d)
		return err == nil
	}
	_, err := os.Stat(p.Path(d))
	return err == nil
}

// StoredSize returns the on-disk (compressed) size of blob d.
func (p *Pool) StoredSize(d Digest) (int64, error) {
	if p.cfg.Remote != nil {
		return p.remoteSize(d)
	}
	fi, err := os.Stat(p.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// TempFile creates a scratch file in the pool's tmp directory, on the same
// file system as the blobs. The caller removes it.
func (p *Pool) TempFile(pattern string) (*os.File, error) {
	return os.CreateTemp(filepath.Join(p.dir, "tmp"), pattern)
}

// Put stores content read from r, whose digest the caller computed as d,
// unless the pool already holds d. It returns the bytes the new blob takes
// on disk (0 when it was already there). r is read to the end; its digest
// is checked against d and a mismatch stores nothing.
func (p *Pool) Put(d Digest, r io.Reader) (stored int64, err error) {
	return p.put(d, r, true)
}

// PutHashed is Put for a caller that computed d from the very bytes it
// passes (the mirror hashes each member as it reads it): it skips hashing
// them a second time.
func (p *Pool) PutHashed(d Digest, r io.Reader) (stored int64, err error) {
	return p.put(d, r, false)
}

func (p *Pool) put(d Digest, r io.Reader, check bool) (stored int64, err error) {
	return p.putIn(nil, d, r, check)
}

// had reports whether a put of d can be skipped: the blob is on local
// disk, or the remote is known to hold it. A remote is not asked (a HEAD
// for every new blob): its Put of a fresh blob stores only where d is
// missing.
func (p *Pool) had(d Digest) bool {
	if p.cfg.Remote != nil {
		_, ok := p.known.get(d)
		return ok
	}
	return p.Has(d)
}

func (p *Pool) putIn(b *Batch, d Digest, r io.Reader, check bool) (stored int64, err error) {
	if p.had(d) {
		return 0, nil
	}
	w, err := p.NewWriter()
	if err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	defer w.Abort()
	var h hash.Hash
	src := r
	if check {
		h = sha256.New()
		src = io.TeeReader(r, h)
	}
	if _, err := io.Copy(w, src); err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if h != nil {
		if got := Digest(h.Sum(nil)); got != d {
			return 0, fmt.Errorf("put blob %s: content has digest %s", d, got)
		}
	}
	return w.commit(b, d)
}

// Writer stores one blob whose digest is known only once all of it has
// been written: content is compressed into a temp file as it arrives, and
// Commit names it. A Writer is for one goroutine.
type Writer struct {
	p      *Pool
	tmp    *os.File
	bw     *bufio.Writer
	enc    encoder
	closed bool
	done   bool
	// staged: a Batch holds the temp file now, for its Finish, which
	// needs its size.
	staged bool
	size   int64
}

// NewWriter starts a blob. The caller ends it with Commit or Abort (Abort
// after Commit does nothing, so it can be deferred).
func (p *Pool) NewWriter() (*Writer, error) {
	tmp, err := p.TempFile("blob-*.tmp")
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(tmp, 256<<10)
	return &Writer{p: p, tmp: tmp, bw: bw, enc: p.encoder(bw)}, nil
}

// Write compresses b into the blob.
func (w *Writer) Write(b []byte) (int, error) {
	if w.closed {
		return 0, errors.New("blob writer: write after close")
	}
	return w.enc.Write(b)
}

// Close ends the compressed frame and flushes it to the temp file; after
// it, Content reads the blob back. Commit calls it too.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.enc.Close()
	w.p.encs.Put(w.enc)
	w.enc = nil
	if err != nil {
		return err
	}
	return w.bw.Flush()
}

// Content returns a reader of what was written, uncompressed, from the
// temp file: for a caller that needs to look at the content again before
// it knows what to do with it. It closes the writer first.
func (w *Writer) Content() (io.ReadCloser, error) {
	if err := w.Close(); err != nil {
		return nil, err
	}
	f, err := os.Open(w.tmp.Name())
	if err != nil {
		return nil, err
	}
	dec, err := decode(bufio.NewReaderSize(f, 128<<10))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &reader{f: f, dec: dec}, nil
}

// Commit stores what was written as blob d: fsync, then an atomic rename.
// If the pool already holds d the temp file is dropped and stored is 0.
// The caller vouches that d is the digest of what it wrote.
func (w *Writer) Commit(d Digest) (stored int64, err error) {
	return w.commit(nil, d)
}

// commit is Commit; with a Batch it only stages the blob, for the
// batch's Finish.
func (w *Writer) commit(b *Batch, d Digest) (stored int64, err error) {
	defer w.Abort()
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if w.p.had(d) {
		return 0, nil
	}
	if b != nil {
		return b.stage(w, d)
	}
	return w.store(d)
}

// store makes the closed temp file blob d: uploaded to the Remote, or
// fsynced and renamed into place.
func (w *Writer) store(d Digest) (stored int64, err error) {
	final := w.p.Path(d)
	if w.p.cfg.Remote != nil {
		n, err := w.p.upload(d, w.tmp, false)
		if err != nil {
			return 0, fmt.Errorf("put blob %s: %w", d, err)
		}
		return n, nil // the deferred Abort removes the temp file
	}
	if _, err := os.Lstat(final); err == nil {
		// Stored meanwhile (a batch stages for as long as its package
		// streams): keep that one, which compaction may have made a
		// delta's base.
		return 0, nil
	}
	if err := w.tmp.Chmod(modeFresh); err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if !w.p.cfg.NoSync {
		if err := w.tmp.Sync(); err != nil {
			return 0, fmt.Errorf("put blob %s: %w", d, err)
		}
	}
	fi, err := w.tmp.Stat()
	if err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if err := w.tmp.Close(); err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	if err := os.Rename(w.tmp.Name(), final); err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	w.done = true
	return fi.Size(), nil
}

// maxUploads is how many of a Remote's uploads Batches keep in flight.
const maxUploads = 8

// A Batch stores the blobs of one unit of work, a package, all or none:
// Put and Commit only stage a new blob (its compressed temp file kept, as
// Commit would have made it), and Finish stores every staged blob once
// the caller has verified the whole unit; Abort drops them, so that a
// package refused at its end (a payload altered after signing, a
// checksum mismatch) leaves nothing in the pool. With a Remote, Finish
// uploads the staged blobs several at a time (maxUploads). A Batch is for
// one goroutine.
type Batch struct {
	p      *Pool
	staged map[Digest]*Writer
	order  []Digest
	done   bool
	there  atomic.Int64 // staged bytes Finish found already stored
}

// NewBatch starts a batch; the caller ends it with Finish or Abort
// (Abort after Finish does nothing, so it can be deferred).
func (p *Pool) NewBatch() *Batch { return &Batch{p: p, staged: map[Digest]*Writer{}} }

// PutHashed is Pool.PutHashed within the batch: stored is what the blob
// will take once Finish has returned nil, 0 when the pool or the batch
// already has it.
func (b *Batch) PutHashed(d Digest, r io.Reader) (stored int64, err error) {
	if _, ok := b.staged[d]; ok {
		_, err := io.Copy(io.Discard, r)
		return 0, err
	}
	return b.p.putIn(b, d, r, false)
}

// Commit is Writer.Commit within the batch, as PutHashed.
func (b *Batch) Commit(w *Writer, d Digest) (stored int64, err error) {
	if _, ok := b.staged[d]; ok {
		w.Abort()
		return 0, nil
	}
	return w.commit(b, d)
}

// Existing is how many of the staged bytes Finish found already stored
// (by another process meanwhile, or in a remote that was not asked
// before): the stored sizes PutHashed and Commit returned, less this, are
// what the pool grew by.
func (b *Batch) Existing() int64 { return b.there.Load() }

// stage keeps w's closed temp file for Finish.
func (b *Batch) stage(w *Writer, d Digest) (int64, error) {
	fi, err := w.tmp.Stat()
	if err != nil {
		return 0, fmt.Errorf("put blob %s: %w", d, err)
	}
	w.staged = true
	w.size = fi.Size()
	b.staged[d] = w
	b.order = append(b.order, d)
	return fi.Size(), nil
}

// Finish stores every staged blob; on the first failure it drops the
// rest and returns it (the blobs stored before stay, named by nothing
// until gc: a partial write is never named).
func (b *Batch) Finish() error {
	if b.done {
		return errors.New("blob batch: finished twice")
	}
	b.done = true
	defer b.drop()
	if b.p.cfg.Remote == nil {
		for _, d := range b.order {
			w := b.staged[d]
			w.staged = false
			n, err := w.store(d)
			if err != nil {
				return err
			}
			if n == 0 {
				b.there.Add(w.size)
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for _, d := range b.order {
		w := b.staged[d]
		b.p.uploads <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() {
				<-b.p.uploads
				wg.Done()
			}()
			n, err := b.p.upload(d, w.tmp, false)
			if err == nil && n == 0 {
				b.there.Add(w.size)
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("put blob %s: %w", d, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// Abort drops every staged blob.
func (b *Batch) Abort() {
	b.done = true
	b.drop()
}

func (b *Batch) drop() {
	for _, d := range b.order {
		w := b.staged[d]
		w.staged = false
		w.drop()
	}
	clear(b.staged)
	b.order = nil
}

// Abort drops the blob unless it was committed (or staged in a Batch,
// which drops it when done).
func (w *Writer) Abort() {
	if w.staged {
		return
	}
	w.drop()
}

func (w *Writer) drop() {
	if w.done {
		return
	}
	w.done = true
	if !w.closed {
		w.closed = true
		w.p.encs.Put(w.enc) // Reset on reuse discards its state
		w.enc = nil
	}
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}

func (p *Pool) encoder(w io.Writer) encoder {
	if e, ok := p.encs.Get().(encoder); ok {
		e.Reset(w)
		return e
	}
	return newEncoder(p.cfg.Codec, p.cfg.Level, w)
}

// Open returns a reader of blob d's uncompressed content. The reader
// reports ErrCorrupt if the stored frame does not decode, a delta's base
// is missing, corrupt or a delta itself, or the content read to its end
// does not have digest d: a caller that reads to EOF without an error has
// d's bytes.
func (p *Pool) Open(d Digest) (io.ReadCloser, error) {
	if p.cfg.Remote != nil {
		return p.openRemote(d)
	}
	f, err := os.Open(p.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	rc, err := p.openStored(d, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return rc, nil
}

// openStored returns a reader of the content of blob d, whose stored
// bytes f yields; closing it closes f. On error the caller closes f.
func (p *Pool) openStored(d Digest, f io.ReadCloser) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(f, 128<<10)
	if head, _ := br.Peek(len(magicDelta)); isDelta(head) {
		return p.openDelta(d, f, br)
	}
	dec, err := decode(br)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w: %v", d, ErrCorrupt, err)
	}
	return &reader{d: d, f: f, dec: dec, h: sha256.New()}, nil
}

type reader struct {
	d   Digest
	f   io.Closer // the stored bytes: a file, or an object store's stream
	dec io.ReadCloser
	h   hash.Hash // of the content read; nil: not checked (a Writer's Content)
}

func (r *reader) Read(b []byte) (int, error) {
	n, err := r.dec.Read(b)
	if r.h != nil {
		r.h.Write(b[:n])
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("read blob %s: %w: %v", r.d, ErrCorrupt, err)
	}
	if err == io.EOF && r.h != nil {
		if got := Digest(r.h.Sum(nil)); got != r.d {
			err = fmt.Errorf("read blob %s: %w: content has digest %s", r.d, ErrCorrupt, got)
		}
		r.h = nil // checked; a read after EOF repeats EOF
	}
	return n, err
}

func (r *reader) Close() error {
	r.dec.Close()
	return r.f.Close()
}

// Remove deletes blob d. Removing a missing blob is not an error.
func (p *Pool) Remove(d Digest) error {
	if p.cfg.Remote != nil {
		p.known.forget(d)
		if err := p.cfg.Remote.Remove(context.Background(), d); err != nil {
			return fmt.Errorf("remove blob %s: %w", d, err)
		}
		return nil
	}
	if err := os.Remove(p.Path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every stored blob with its on-disk size.
func (p *Pool) Walk(fn func(d Digest, size int64) error) error {
	return p.WalkInfo(func(d Digest, fi fs.FileInfo) error { return fn(d, fi.Size()) })
}

// WalkInfo calls fn for every stored blob with its file information.
func (p *Pool) WalkInfo(fn func(d Digest, fi fs.FileInfo) error) error {
	if p.cfg.Remote != nil {
		return p.cfg.Remote.Walk(context.Background(), func(d Digest, size int64, mod time.Time) error {
			return fn(d, remoteInfo{name: d.String(), size: size, mod: mod})
		})
	}
	root := filepath.Join(p.dir, "sha256")
	return filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		d, perr := ParseDigest(e.Name())
		if perr != nil {
			return nil // not ours; gc reports strays separately
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		return fn(d, fi)
	})
}

// CleanTemp removes every in-flight file. Call it only while no writer can
// be running (the data directory's lock is held).
func (p *Pool) CleanTemp() error {
	dir := filepath.Join(p.dir, "tmp")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean blob tmp: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clean blob tmp: %w", err)
		}
	}
	return nil
}

// Compacted blobs are rewritten at the strongest level and made read-only
// (mode 0444); fresh ones are 0644. The mode is the marker, so compaction
// needs no state of its own and survives copies that keep modes.
// A compacted delta is 0440: a hint for statistics (Info reads the
// header, which is what counts).
const (
	modeFresh     = 0o644
	modeCompacted = 0o444
	modeDelta     = 0o440
)

// IsCompacted reports whether blob d has been recompressed by Compact.
func (p *Pool) IsCompacted(d Digest) (bool, error) {
	if p.cfg.Remote != nil {
		st, err := p.remoteStat(d)
		return st.Compacted, err
	}
	fi, err := os.Stat(p.Path(d))
	if err != nil {
		return false, err
	}
	return fi.Mode().Perm()&0o222 == 0, nil
}

// Plain returns the path of an uncompressed copy of blob d, writing it
// under plain/ on first use (atomically, so concurrent callers and readers
// never see a partial file). Plain copies serve random access (Range
// requests, ELF sections) and sendfile, and can be hard-linked into
// sysroots. They are a cache: RemovePlain or gc may delete them at any time
// no caller holds one open.
func (p *Pool) Plain(d Digest) (string, error) {
	h := d.String()
	final := filepath.Join(p.dir, "plain", h[:2], h)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	src, err := p.Open(d)
	if err != nil {
		return "", err
	}
	defer src.Close()
	tmp, err := p.TempFile("plain-*.tmp")
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Open's reader checks the content's digest at EOF: a corrupt blob
	// fails the copy with ErrCorrupt, and no plain copy is made.
	if _, err := io.Copy(tmp, src); err != nil {
		return "", fmt.Errorf("plain %s: %w", d, err)
	}
	if err := tmp.Chmod(0o444); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	ok = true
	return final, nil
}

// RemovePlain deletes the uncompressed copy of d, if any.
func (p *Pool) RemovePlain(d Digest) error {
	h := d.String()
	if err := os.Remove(filepath.Join(p.dir, "plain", h[:2], h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
