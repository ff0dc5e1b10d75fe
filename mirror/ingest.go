package mirror

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/elfnote"
	"github.com/retraced/retraced/mirror/rpmfile"
	"github.com/retraced/retraced/mirror/yum"
)

// PackageError is one package that failed to ingest.
type PackageError struct {
	Location string
	Err      error
}

func (e *PackageError) Error() string { return e.Location + ": " + e.Err.Error() }
func (e *PackageError) Unwrap() error { return e.Err }

// ErrChecksum reports a package whose bytes do not match its metadata.
var ErrChecksum = errors.New("checksum mismatch")

// want describes one package to ingest.
type want struct {
	nevra    index.NEVRA
	target   string       // URL or path
	location string       // as the metadata names it
	base     string       // the metadata's xml:base for it, "" when none
	checksum yum.Checksum // Type "" when the source gives none
	size     int64        // from the metadata; 0 if unknown
	// keys, when not nil, are the source's trusted OpenPGP keys: the
	// package must carry a header signature by one of them, and its
	// payload must match the signed header's payload digest.
	keys *rpmfile.Keyring
	// done is set to the NEVRA ingested, once committed.
	done string
}

// countingReader counts bytes and reports them to a progress hook.
type countingReader struct {
	r    io.Reader
	n    int64
	tick func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.tick != nil && n > 0 {
		c.tick(int64(n))
	}
	return n, err
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ingest streams one RPM: header, the wanted payload members into the
// pool, then the rest of the bytes through the checksum. It returns the
// package to commit; it commits nothing itself.
func (m *Mirror) ingest(ctx context.Context, w *want, tick func(int64)) (pkg *index.Package, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error reading package: %v\n%s", p, debug.Stack())
		}
	}()
	// The whole file's checksum, when the source's metadata gives one;
	// otherwise the RPM's own header and payload digests (tree sources).
	var h hash.Hash = nopHash{}
	if w.checksum.Type != "" {
		if h, err = yum.NewHash(w.checksum.Type); err != nil {
			return nil, err
		}
	}
	rc, size, err := m.open(ctx, w.target)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if w.size > 0 && size > w.size {
		return nil, fmt.Errorf("GET %s: the server says %d bytes, the metadata %d", w.target, size, w.size)
	}
	limit := m.cfg.MaxPackageSize
	if w.size > 0 && w.size < limit {
		limit = w.size
	}
	cr := &countingReader{r: io.LimitReader(rc, limit+1), tick: tick}
	br := bufio.NewReaderSize(io.TeeReader(cr, h), 256<<10)
	hdr, err := rpmfile.ReadHeader(br)
	if err != nil {
		return m.failAfterDrain(br, cr, w, err)
	}
	got := index.NEVRA{Name: hdr.Name, Epoch: hdr.Epoch, Version: hdr.Version, Release: hdr.Release, Arch: hdr.Arch}
	if w.nevra != (index.NEVRA{}) && got != w.nevra {
		return nil, fmt.Errorf("header names %s, metadata %s", got, w.nevra)
	}
	if err := got.Validate(); err != nil {
		return nil, err
	}
	// A package refused for its signature is refused before any of its
	// payload is read: nothing of it reaches the pool.
	if w.keys != nil {
		if _, err := hdr.VerifySignature(w.keys, m.cfg.Now()); err != nil {
			return nil, err
		}
	}
	// The payload digest is needed when there is no whole-file checksum,
	// and under gpgcheck, where it is what ties the payload to the
	// signed header; otherwise computing it would hash every byte twice.
	var ph hash.Hash = nopHash{}
	checkPayload := w.checksum.Type == "" || w.keys != nil
	if checkPayload {
		ph = sha256.New()
	}
	if w.checksum.Type == "" {
		checked, err := hdr.VerifyHeader()
		if err != nil {
			return nil, err
		}
		if !checked && hdr.PayloadSHA256 == "" {
			return nil, fmt.Errorf("no checksum to verify it by: the source gives none and the RPM has no SHA-256 digests")
		}
	}
	payload := bufio.NewReaderSize(io.TeeReader(br, ph), 64<<10)
	pkg = &index.Package{
		NEVRA:     got,
		SourceRPM: hdr.SourceRPM,
		FileName:  w.location[strings.LastIndexByte(w.location, '/')+1:],
		BuildTime: hdr.BuildTime,
		Added:     m.cfg.Now().UTC(),
	}
	pl := m.policy.plan(hdr.Files)
	// The package's new blobs are staged as its payload streams and
	// stored only once the whole download has verified (payload digest,
	// signature, checksum): a refused package leaves nothing in the pool.
	batch := m.pool.NewBatch()
	defer batch.Abort()
	if len(pl.regular) > 0 {
		if hdr.Format != "cpio" {
			return m.failAfterDrain(br, cr, w, fmt.Errorf("payload format %q: only cpio is supported", hdr.Format))
		}
		files, stored, err := m.walkPayload(ctx, payload, hdr, pl, batch)
		if err != nil {
			if w.keys != nil {
				// A payload altered after signing explains its parse
				// error better than the parse error does.
				if _, derr := io.Copy(io.Discard, payload); derr == nil {
					if derr := verifyPayload(cr.n, limit, hdr, ph.Sum(nil)); errors.Is(derr, ErrPayloadDigest) {
						return nil, fmt.Errorf("%w (and so: %v)", derr, err)
					}
				}
			}
			return m.failAfterDrain(payload, cr, w, err)
		}
		pkg.Files, pkg.Stored = files, stored
	}
	kept := map[string]bool{}
	for _, f := range pkg.Files {
		kept[f.Path] = true
	}
	for _, l := range m.policy.keptLinks(pl, kept) {
		pkg.Files = append(pkg.Files, index.File{Path: l.Path, Mode: fileMode(l.Mode), Link: l.Link})
	}
	if _, err := io.Copy(io.Discard, payload); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if checkPayload {
		if err := verifyPayload(cr.n, limit, hdr, ph.Sum(nil)); err != nil {
			return nil, err
		}
	}
	if w.checksum.Type == "" {
		pkg.Checksum = "sha256:" + hex.EncodeToString(ph.Sum(nil)) + " (payload)"
	} else {
		if err := verify(cr.n, limit, w, h.Sum(nil)); err != nil {
			return nil, err
		}
		pkg.Checksum = w.checksum.Type + ":" + strings.ToLower(strings.TrimSpace(w.checksum.Value))
	}
	if err := batch.Finish(); err != nil {
		return nil, err
	}
	pkg.Stored -= batch.Existing() // stored meanwhile, or found in the object store
	pkg.Fetched = cr.n
	return pkg, nil
}

// failAfterDrain reads the rest of the download so that a truncated or
// corrupt transfer is reported as such rather than as the payload error
// it caused.
func (m *Mirror) failAfterDrain(br *bufio.Reader, cr *countingReader, w *want, cause error) (*index.Package, error) {
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("read: %w (after: %v)", err, cause)
	}
	if w.size > 0 && cr.n != w.size {
		return nil, fmt.Errorf("size %d, metadata says %d: truncated or wrong download (%v)", cr.n, w.size, cause)
	}
	return nil, cause
}

// ErrPayloadDigest reports a payload that does not match its header's
// payload digest: a corrupt download or, when the header is signed, a
// payload altered after signing.
var ErrPayloadDigest = fmt.Errorf("payload digest: %w", ErrChecksum)

// verifyPayload checks a download against the RPM's own payload digest
// and size. The digest comes first: it is in the header (signed, when
// there is a signature), while the size is in the unsigned signature
// header.
func verifyPayload(n, limit int64, hdr *rpmfile.Header, sum []byte) error {
	if n > limit {
		return fmt.Errorf("larger than %d bytes", limit)
	}
	if hdr.PayloadSHA256 != "" { // an old rpm has none; its header digest was checked
		if got := hex.EncodeToString(sum); got != hdr.PayloadSHA256 {
			return fmt.Errorf("%w: payload is %s, header says %s: altered (after signing, if signed), truncated or corrupt", ErrPayloadDigest, got, hdr.PayloadSHA256)
		}
	}
	if hdr.Size > 0 && n != hdr.Size {
		return fmt.Errorf("%w: size %d, the RPM's signature says %d: truncated or corrupt download", ErrChecksum, n, hdr.Size)
	}
	return nil
}

// nopHash stands in when there is no whole-file checksum to compute.
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }

func verify(n, limit int64, w *want, sum []byte) error {
	if n > limit {
		return fmt.Errorf("larger than %d bytes", limit)
	}
	if w.size > 0 && n != w.size {
		return fmt.Errorf("size %d, metadata says %d: truncated or wrong download", n, w.size)
	}
	want := strings.ToLower(strings.TrimSpace(w.checksum.Value))
	if got := hex.EncodeToString(sum); got != want {
		return fmt.Errorf("%w: %s is %s, metadata says %s", ErrChecksum, w.checksum.Type, got, want)
	}
	return nil
}

// walkPayload decompresses the payload and stores the wanted members,
// stopping after the last of them.
func (m *Mirror) walkPayload(ctx context.Context, br *bufio.Reader, hdr *rpmfile.Header, pl *plan, b *blob.Batch) ([]index.File, int64, error) {
	pr, err := rpmfile.Decompress(ctx, br, hdr.Compressor, rpmfile.Options{XZ: m.cfg.XZ})
	if err != nil {
		return nil, 0, err
	}
	defer pr.Close()
	remaining := len(pl.regular)
	pending := map[int64][]*rpmfile.Member{} // hardlinks waiting for their data
	var files []index.File
	var stored int64
	err = rpmfile.Walk(pr, func(mb *rpmfile.Member, data io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !mb.IsRegular() {
			return nil
		}
		if mb.Nlink > 1 && mb.Size == 0 && pl.size[mb.Path] > 0 {
			pending[mb.Inode] = append(pending[mb.Inode], mb)
			return nil
		}
		paths := make([]*rpmfile.Member, 0, 1)
		if mb.Nlink > 1 {
			paths = append(paths, pending[mb.Inode]...)
			delete(pending, mb.Inode)
		}
		paths = append(paths, mb)
		v := probe
		var which []string
		for _, p := range paths {
			if pv, ok := pl.regular[p.Path]; ok {
				which = append(which, p.Path)
				if pv == keep {
					v = keep
				}
			}
		}
		if len(which) == 0 {
			return nil
		}
		remaining -= len(which)
		f, n, err := m.storeMember(mb, data, v, b)
		if err != nil {
			return err
		}
		stored += n
		if f != nil {
			for _, p := range which {
				c := *f
				c.Path = p
				c.Kind = kindOf(p, f.BuildID)
				files = append(files, c)
			}
		}
		if remaining == 0 {
			return rpmfile.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return files, stored, nil
}

func kindOf(path string, id index.BuildID) index.Kind {
	switch {
	case id.IsZero():
		return index.KindNone
	case strings.HasPrefix(path, "/usr/lib/debug/"):
		return index.KindDebuginfo
	}
	return index.KindExecutable
}

func fileMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	switch m & rpmfile.ModeType {
	case rpmfile.ModeSymlink:
		fm |= os.ModeSymlink
	case rpmfile.ModeDir:
		fm |= os.ModeDir
	}
	return fm
}

// storeMember reads one member's content, decides on it (probe: ELF
// only), extracts its build-id and stores it in the pool. It returns a nil
// File when the member is not kept, and the bytes the pool grew by.
func (m *Mirror) storeMember(mb *rpmfile.Member, data io.Reader, v verdict, b *blob.Batch) (*index.File, int64, error) {
	br := bufio.NewReaderSize(data, 64<<10)
	head, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, 0, err
	}
	isELF := elfnote.IsELF(head)
	if v == probe && !isELF {
		return nil, 0, nil
	}
	f := &index.File{Path: mb.Path, Mode: fileMode(mb.Mode), Size: mb.Size}
	if mb.Size > m.cfg.InMemoryMax {
		return m.streamMember(f, br, isELF, b)
	}
	h := sha256.New()
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	buf.Reset()
	buf.Grow(int(mb.Size))
	if _, err := io.Copy(buf, io.TeeReader(br, h)); err != nil {
		return nil, 0, err
	}
	copy(f.Blob[:], h.Sum(nil))
	content := bytes.NewReader(buf.Bytes())
	if isELF {
		if err := setBuildID(f, content); err != nil {
			return nil, 0, err
		}
	}
	n, err := b.PutHashed(f.Blob, content) // nothing when the pool has it
	if err != nil {
		return nil, 0, err
	}
	return f, n, nil
}

// streamMember stores a member too large to hold in memory in one pass:
// it is hashed and compressed into the pool as it is read, and its
// build-id is read from the first and last bytes, where an ELF file's
// header, notes and section table lie. Only when the ELF parser asks for
// bytes in between (compressed debug sections, an unusual layout) is the
// stored copy read back.
func (m *Mirror) streamMember(f *index.File, r io.Reader, isELF bool, b *blob.Batch) (*index.File, int64, error) {
	bw, err := m.pool.NewWriter()
	if err != nil {
		return nil, 0, err
	}
	defer bw.Abort()
	h := sha256.New()
	ends := newEnds(f.Size, memberEnds)
	n, err := io.Copy(io.MultiWriter(h, ends, bw), r)
	if err != nil {
		return nil, 0, err
	}
	if n != f.Size {
		return nil, 0, fmt.Errorf("%s: %d bytes, the archive says %d", f.Path, n, f.Size)
	}
	copy(f.Blob[:], h.Sum(nil))
	if isELF {
		err := setBuildID(f, ends)
		if ends.missed {
			f.BuildID, f.AltLink = index.BuildID{}, index.BuildID{}
			err = m.buildIDFromStored(f, bw)
		}
		if err != nil {
			return nil, 0, err
		}
	}
	stored, err := b.Commit(bw, f.Blob)
	if err != nil {
		return nil, 0, err
	}
	return f, stored, nil
}

// buildIDFromStored reads the build-id from the blob being written,
// decompressed into a temp file.
func (m *Mirror) buildIDFromStored(f *index.File, bw *blob.Writer) error {
	rc, err := bw.Content()
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := m.pool.TempFile("member-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if _, err := io.Copy(tmp, rc); err != nil {
		return err
	}
	return setBuildID(f, tmp)
}

// setBuildID sets f.BuildID from the ELF file r, and for a debug file
// (under /usr/lib/debug) f.AltLink from its .gnu_debugaltlink, in one
// parse; a file without them is fine, a malformed one is an error.
func setBuildID(f *index.File, r io.ReaderAt) error {
	var id []byte
	var al *elfnote.AltLink
	var err error
	if strings.HasPrefix(f.Path, "/usr/lib/debug/") {
		id, al, err = elfnote.DebugFile(r)
	} else {
		id, err = elfnote.BuildID(r)
	}
	switch {
	case errors.Is(err, elfnote.ErrNoBuildID):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if f.BuildID, err = index.BuildIDFromBytes(id); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if al != nil {
		if f.AltLink, err = index.BuildIDFromBytes(al.BuildID); err != nil {
			return fmt.Errorf("%s: .gnu_debugaltlink: %w", f.Path, err)
		}
	}
	return nil
}

// memberEnds is how much of each end of a streamed member is kept for
// finding its build-id.
var memberEnds = 256 << 10 // a variable for tests

// ends keeps the first and last n bytes of a stream of known size and
// serves reads from them; a read of anything else fails and sets missed.
type ends struct {
	size       int64
	head, tail []byte
	tailOff    int64 // offset of tail[0] in the stream
	off        int64 // bytes written so far
	missed     bool
}

var errNotKept = errors.New("byte range not kept")

func newEnds(size int64, n int) *ends {
	n = int(min(int64(n), size))
	return &ends{size: size, head: make([]byte, 0, n), tail: make([]byte, n), tailOff: size - int64(n)}
}

func (e *ends) Write(p []byte) (int, error) {
	if room := cap(e.head) - len(e.head); room > 0 {
		e.head = append(e.head, p[:min(room, len(p))]...)
	}
	if end := e.off + int64(len(p)); end > e.tailOff && e.off < e.size {
		from := max(e.off, e.tailOff)
		to := min(end, e.size)
		copy(e.tail[from-e.tailOff:to-e.tailOff], p[from-e.off:to-e.off])
	}
	e.off += int64(len(p))
	return len(p), nil
}

func (e *ends) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= e.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), e.size)
	var n int
	switch {
	case end <= int64(len(e.head)):
		n = copy(p, e.head[off:end])
	case off >= e.tailOff:
		n = copy(p, e.tail[off-e.tailOff:end-e.tailOff])
	default:
		e.missed = true
		return 0, errNotKept
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
