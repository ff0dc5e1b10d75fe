package decompress

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

// FuzzNewReader reads arbitrary input in every format, through the Go xz
// decoder or through an XZDecoder, as lzma when it has no magic or as it is. It
// must not panic or hang, must answer only with its own errors (the input
// never fails), must stay within its limits, and must return raw input
// unchanged.
func FuzzNewReader(f *testing.F) {
	data := []byte("retraced mirrors every version of every RPM. ")
	x := decompresstest.XZ(f, bytes.Repeat(data, 100), 1000)
	z := zstdOf(f, data)
	for _, b := range [][]byte{
		data,
		gzipOf(f, data),
		x,
		decompresstest.WithXZDict(f, x, 40, decompresstest.XZBlocks(f, x)[1]),
		append(bytes.Clone(x), x...),
		z,
		zstdWithWindow(f, z, 31),
		[]byte("BZh91AY&SY garbage"),
		lzmaOf(f, data),
	} {
		for sel := range uint8(4) {
			f.Add(b, sel)
		}
	}
	const (
		maxDict   = 1 << 20 // the seeds' xz dictionary and zstd window
		maxWindow = 1 << 20
		maxOutput = 1 << 20
	)
	// The XZDecoder stand-in is strict about chunk sizes, as liblzma and
	// xz are (xz.Reader is not: TestXZChunkEndsEarly), and has no limit of
	// its own but tells of a dictionary the guard should have refused
	// (its own limit, the same as the guard's, refused it first).
	errPastGuard := errors.New("a dictionary over the limit reached the decoder")
	strictXZ := func(r *bufio.Reader) (io.ReadCloser, error) {
		return io.NopCloser(pastGuard{newXZReader(r, maxDict), errPastGuard}), nil
	}
	f.Fuzz(func(t *testing.T, b []byte, sel uint8) {
		c := Config{Formats: all, MaxDict: maxDict, MaxWindow: maxWindow, MaxOutput: maxOutput}
		if sel&1 != 0 {
			c.XZDecoder = strictXZ
		}
		if sel&2 != 0 {
			c.NoMagic = LZMA
		}
		z, err := NewReader(bytes.NewReader(b), c)
		var out []byte
		if err == nil {
			out, err = io.ReadAll(z)
			z.Close()
		}
		if len(out) > maxOutput {
			t.Fatalf("%d bytes out, over the %d bound", len(out), maxOutput)
		}
		if err == nil && z.Format() == Raw && !bytes.Equal(out, b[:min(len(b), maxOutput)]) {
			t.Fatalf("raw input changed")
		}
		if errors.Is(err, errPastGuard) {
			t.Fatal(err)
		}
		var le *LimitError
		switch {
		case err == nil:
		case errors.As(err, &le):
			if le.Need != 0 && le.Need <= le.Limit {
				t.Fatalf("%v: refused within the limit", err)
			}
		case errors.Is(err, ErrFormat):
		default:
			t.Fatalf("error of another kind: %T %v", err, err)
		}
	})
}

// pastGuard reads an xzReader with the guard's limit and fails with err
// where that reader refuses a dictionary: the guard in front should have.
type pastGuard struct {
	x   *xzReader
	err error
}

func (p pastGuard) Read(b []byte) (int, error) {
	n, err := p.x.Read(b)
	if _, ok := err.(*LimitError); ok {
		return n, p.err
	}
	return n, err
}
