package resolver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrTooLarge reports an upload over its bound.
var ErrTooLarge = errors.New("too large")

// ErrBadUpload reports an upload that cannot be decompressed.
var ErrBadUpload = errors.New("bad upload")

// SpoolCore streams a core file — raw, or gzip, xz or zstd compressed
// (detected by magic) — into a new temp file in dir and returns its path.
// At most max bytes are accepted, compressed or not; nothing is held in
// memory. The caller removes the file.
func SpoolCore(r io.Reader, dir string, max int64) (path string, err error) {
	br := bufio.NewReaderSize(io.LimitReader(r, max+1), 256<<10)
	head, _ := br.Peek(6)
	var src io.Reader = br
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("%w: gzip: %v", ErrBadUpload, err)
		}
		defer z.Close()
		src = z
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		z, err := xz.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("%w: xz: %v", ErrBadUpload, err)
		}
		src = z
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(256<<20))
		if err != nil {
			return "", fmt.Errorf("%w: zstd: %v", ErrBadUpload, err)
		}
		defer z.Close()
		src = z
	}
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
	n, err := io.Copy(f, io.LimitReader(src, max+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || src != io.Reader(br) {
			return "", fmt.Errorf("%w: %v", ErrBadUpload, err)
		}
		return "", err
	}
	if n > max {
		return "", fmt.Errorf("%w: core larger than %d bytes", ErrTooLarge, max)
	}
	if _, err := br.Peek(1); err == nil {
		return "", fmt.Errorf("%w: upload larger than %d bytes", ErrTooLarge, max)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}
