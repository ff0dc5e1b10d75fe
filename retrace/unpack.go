package retrace

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/internal/decompress"
)

// Errors of an upload, mapped to HTTP statuses by the handler.
var (
	// ErrBadArchive is a body that is not a tar of a flat crash directory
	// (400).
	ErrBadArchive = errors.New("malformed archive")
	// ErrTooLarge is a body or an archive content over the size limits
	// (413).
	ErrTooLarge = errors.New("archive too large")
	// ErrNoSpace is a disk too full to take the upload (507).
	ErrNoSpace = errors.New("not enough storage space")
)

// The archive formats /create takes, by Content-Type.
const (
	FormatXZ   = "application/x-xz-compressed-tar"
	FormatGzip = "application/x-gzip"
	FormatTar  = "application/x-tar"
)

// SupportedFormats lists the Content-Types of /create, as /settings
// reports them.
var SupportedFormats = []string{FormatXZ, FormatGzip, FormatTar}

// allowedFiles are the names a crash directory may hold and the largest
// size of each, 0 for no cap but the unpacked limit: what Retrace Server
// accepts for a coredump task.
var allowedFiles = map[string]int64{
	"coredump":              0,
	"executable":            512,
	"package":               128,
	"packages":              1 << 20,
	"os_release":            128,
	"os_release_in_rootdir": 128,
	"rootdir":               256,
	"release":               128,
}

// AllowedFiles returns the file names a crash directory may hold, sorted,
// with the largest size of each (0: bounded by MaxUnpackedSize only).
func AllowedFiles() map[string]int64 {
	m := make(map[string]int64, len(allowedFiles))
	for k, v := range allowedFiles {
		m[k] = v
	}
	return m
}

func allowedNames() []string {
	names := make([]string, 0, len(allowedFiles))
	for k := range allowedFiles {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// RequiredFile is the one file a crash directory must hold.
const RequiredFile = "coredump"

// MaxXZDict is the largest LZMA2 dictionary an uploaded xz stream may ask
// for: xz -9's. The decoder allocates the dictionary up front, so a
// larger one (up to 4 GiB) is refused before it is read.
const MaxXZDict = 64 << 20

// tarSlack is what archive/tar may read besides file data: headers, PAX
// records (at most 1 MiB each), padding.
const tarSlack = 4 << 20

// unpackLimits bound one upload.
type unpackLimits struct {
	packed   int64 // request body bytes
	unpacked int64 // sum of file sizes
	files    int   // archive members
	// space is asked as the files are written (nil: not at all): what an
	// upload costs on disk is what unpacking writes, not its packed size.
	space *diskspace.Policy
}

// unpack streams an archive of format from body into the empty directory
// dst. It returns the names written, or an error wrapping ErrBadArchive,
// ErrTooLarge or ErrNoSpace (or another I/O error). On error dst may hold
// part of the files; the caller removes it.
func unpack(body io.Reader, format, dst string, lim unpackLimits) ([]string, error) {
	packed := &limitedReader{r: body, n: lim.packed, err: fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, lim.packed)}
	br := bufio.NewReaderSize(packed, 64<<10)
	var want decompress.Format
	switch format {
	case FormatGzip:
		want = decompress.Gzip
	case FormatXZ:
		want = decompress.XZ
	case FormatTar:
		want = decompress.Raw
	default:
		return nil, fmt.Errorf("%w: unsupported format %q", ErrBadArchive, format)
	}
	// Bound the decompressed stream too: archive/tar reads little besides
	// the files, whose sizes are checked from their headers before a byte
	// is written.
	content, err := decompress.NewReader(br, decompress.Config{
		Formats:   []decompress.Format{want},
		MaxDict:   MaxXZDict,
		MaxOutput: lim.unpacked + tarSlack,
	})
	if err != nil {
		return nil, packed.explain(archiveErr(err, lim))
	}
	defer content.Close()
	if content.Format() != want {
		return nil, packed.explain(fmt.Errorf("%w: body is not %s data", ErrBadArchive, want))
	}
	if want == decompress.Raw {
		if err := expectMagic(br, 257, []byte("ustar"), "tar"); err != nil {
			return nil, packed.explain(err)
		}
	}
	names, err := untar(content, dst, lim)
	if err == nil {
		// Read to the end of the compressed stream, within the limits,
		// so that the decompressor checks its checksums: a flipped bit
		// in the core must not pass for a good upload.
		if _, derr := io.Copy(io.Discard, content); derr != nil {
			err = fmt.Errorf("%w: after the tar archive: %w", ErrBadArchive, derr)
		}
	}
	if err != nil {
		return nil, packed.explain(archiveErr(err, lim))
	}
	return names, nil
}

// archiveErr names a decompression error: a stream over a limit is
// ErrTooLarge, whatever it interrupted; malformed data is ErrBadArchive.
func archiveErr(err error, lim unpackLimits) error {
	var le *decompress.LimitError
	switch {
	case errors.As(err, &le) && le.What == "output":
		return fmt.Errorf("%w: content larger than %d bytes", ErrTooLarge, lim.unpacked)
	case errors.As(err, &le):
		return fmt.Errorf("%w: %w", ErrTooLarge, le)
	case errors.Is(err, decompress.ErrFormat) && !errors.Is(err, ErrBadArchive):
		return fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	return err
}

// expectMagic checks that the stream has magic at offset off.
func expectMagic(br *bufio.Reader, off int, magic []byte, what string) error {
	b, err := br.Peek(off + len(magic))
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if len(b) < off+len(magic) || !bytes.Equal(b[off:off+len(magic)], magic) {
		return fmt.Errorf("%w: body is not %s data", ErrBadArchive, what)
	}
	return nil
}

// untar writes the regular files of the tar stream r into dst.
func untar(r io.Reader, dst string, lim unpackLimits) ([]string, error) {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	var names []string
	var total int64
	for members := 0; ; members++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: tar member %d: %w", ErrBadArchive, members+1, err)
		}
		if members >= lim.files {
			return nil, fmt.Errorf("%w: more than %d members", ErrBadArchive, lim.files)
		}
		name, skip, err := memberName(h)
		if err != nil {
			return nil, err
		}
		if skip {
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: %s appears twice", ErrBadArchive, name)
		}
		seen[name] = true
		if max := allowedFiles[name]; max > 0 && h.Size > max {
			return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrBadArchive, name, h.Size, max)
		}
		total += h.Size
		if total > lim.unpacked {
			return nil, fmt.Errorf("%w: content larger than %d bytes", ErrTooLarge, lim.unpacked)
		}
		if err := writeMember(filepath.Join(dst, name), tr, h.Size, lim.space); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		names = append(names, name)
	}
	if !seen[RequiredFile] {
		return nil, fmt.Errorf("%w: required file %s is missing", ErrBadArchive, RequiredFile)
	}
	if err := syncDir(dst); err != nil {
		return nil, err
	}
	return names, nil
}

// memberName validates a tar header and returns the file name it writes,
// or skip for the "." directory and PAX global headers.
func memberName(h *tar.Header) (name string, skip bool, err error) {
	raw := h.Name
	bad := func(format string, args ...any) (string, bool, error) {
		return "", false, fmt.Errorf("%w: member %q: %s", ErrBadArchive, raw, fmt.Sprintf(format, args...))
	}
	if h.Typeflag == tar.TypeXGlobalHeader {
		return "", true, nil
	}
	if raw == "" {
		return bad("empty name")
	}
	if strings.HasPrefix(raw, "/") {
		return bad("absolute name")
	}
	for _, part := range strings.Split(raw, "/") {
		if part == ".." {
			return bad("name contains ..")
		}
	}
	clean := path.Clean(raw)
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
	case tar.TypeDir:
		if clean == "." {
			return "", true, nil
		}
		return bad("subfolders are not allowed")
	case tar.TypeSymlink, tar.TypeLink:
		return bad("links are not allowed")
	default:
		return bad("type %q is not a regular file", h.Typeflag)
	}
	if strings.Contains(clean, "/") {
		return bad("subfolders are not allowed")
	}
	if _, ok := allowedFiles[clean]; !ok {
		return bad("not an allowed file name (allowed: %s)", strings.Join(allowedNames(), ", "))
	}
	return clean, false, nil
}

// writeMember creates path, which must not exist, with the n bytes of r,
// zeros as holes (a sparse member, a core's untouched pages), asking
// space as it writes.
func writeMember(path string, r io.Reader, n int64, space *diskspace.Policy) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return diskErr(err)
	}
	written, err := space.Copy(f, io.LimitReader(r, n))
	if err == nil && written != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		f.Close()
		var pe *os.PathError
		if errors.As(err, &pe) || errors.Is(err, diskspace.ErrLow) {
			return diskErr(err) // the write failed, or would leave too little free
		}
		return fmt.Errorf("%w: %w", ErrBadArchive, err) // the read failed
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return diskErr(err)
	}
	return diskErr(f.Close())
}

// diskErr marks an error of a full disk or quota as ErrNoSpace.
func diskErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, diskspace.ErrLow) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// limitedReader reads at most n bytes of r; reading more fails with err.
// explain turns any later error into err once the limit was hit, and
// names the first error of r itself, since decompressors do not always
// pass the underlying error on.
type limitedReader struct {
	r   io.Reader
	n   int64
	err error
	hit atomic.Bool // set by the reading goroutine, read by the handler's

	mu     sync.Mutex
	srcErr error // the first error of r but io.EOF
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Is there anything beyond the limit?
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.hit.Store(true)
			return 0, l.err
		}
		return 0, l.note(err)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, l.note(err)
}

func (l *limitedReader) note(err error) error {
	if err != nil && err != io.EOF {
		l.mu.Lock()
		if l.srcErr == nil {
			l.srcErr = err
		}
		l.mu.Unlock()
	}
	return err
}

func (l *limitedReader) explain(err error) error {
	if err == nil {
		return nil
	}
	if l.hit.Load() && !errors.Is(err, ErrTooLarge) {
		return l.err
	}
	l.mu.Lock()
	src := l.srcErr
	l.mu.Unlock()
	if src != nil && !errors.Is(err, src) {
		return fmt.Errorf("%w (reading: %w)", err, src)
	}
	return err
}
