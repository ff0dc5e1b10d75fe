package resolver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/internal/decompress"
)

// ErrTooLarge reports an upload over its bound.
var ErrTooLarge = errors.New("too large")

// ErrBadUpload reports an upload that cannot be decompressed.
var ErrBadUpload = errors.New("bad upload")

// SpoolCore streams a core file — raw, or gzip, xz or zstd compressed
// (detected by magic) — into a new temp file in dir and returns its path.
// At most max bytes are accepted, compressed or not; nothing is held in
// memory. An xz dictionary or zstd window over decompress's defaults is
// ErrTooLarge, refused before it is allocated. Zeros are left as holes,
// and space is asked before and while it writes (a nil space asks
// nothing): an upload that would take the disk below it fails with
// diskspace.ErrLow. The caller removes the file.
func SpoolCore(r io.Reader, dir string, max int64, space *diskspace.Policy) (path string, err error) {
	br := bufio.NewReaderSize(io.LimitReader(r, max+1), 256<<10)
	src, err := decompress.NewReader(br, decompress.Config{
		Formats:   []decompress.Format{decompress.Gzip, decompress.XZ, decompress.Zstd},
		MaxOutput: max,
	})
	if err != nil {
		return "", uploadErr(err)
	}
	defer src.Close()
	f, err := os.CreateTemp(dir, "core-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := space.Copy(f, src); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) || errors.Is(err, diskspace.ErrLow) {
			return "", err // the write failed, or would leave too little free
		}
		return "", uploadErr(err)
	}
	if _, err := br.Peek(1); err == nil {
		return "", fmt.Errorf("%w: upload larger than %d bytes", ErrTooLarge, max)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// uploadErr names a decompression error: over a limit, or malformed.
func uploadErr(err error) error {
	var le *decompress.LimitError
	switch {
	case errors.As(err, &le) && le.What == "output":
		return fmt.Errorf("%w: core larger than %d bytes", ErrTooLarge, le.Limit)
	case errors.Is(err, decompress.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, decompress.ErrFormat), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %w", ErrBadUpload, err)
	}
	return err
}
