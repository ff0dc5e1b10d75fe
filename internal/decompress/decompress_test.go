package decompress

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

var all = []Format{Gzip, XZ, Zstd, Bzip2}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		head string
		want Format
	}{
		{"gzip", "\x1f\x8b\x08\x00", Gzip},
		{"xz", "\xfd7zXZ\x00\x00\x04", XZ},
		{"zstd", "\x28\xb5\x2f\xfd\x04\x00", Zstd},
		{"bzip2", "BZh91AY&SY", Bzip2},
		{"ELF", "\x7fELF\x02\x01", Raw},
		{"XML", "<?xml version", Raw},
		{"cpio", "070701", Raw},
		{"empty", "", Raw},
		{"half a gzip magic", "\x1f", Raw},
		{"xz magic without its NUL", "\xfd7zXZ", Raw},
		{"zstd skippable frame", "\x50\x2a\x4d\x18", Raw},
		{"BZ without h", "BZ0", Raw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect([]byte(tt.head)); got != tt.want {
				t.Errorf("Detect(%q) = %v, want %v", tt.head, got, tt.want)
			}
		})
	}
}

// sample is what the format tests compress: some text and a core
// (compressed, so the stream has incompressible parts).
func sample(t testing.TB) []byte {
	t.Helper()
	return append([]byte(strings.Repeat("retraced ", 20000)), compressedCore(t)...)
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func lzmaOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := lzma.WriterConfig{DictCap: 1 << 20}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(b []byte, c Config) ([]byte, Format, error) {
	z, err := NewReader(bytes.NewReader(b), c)
	if err != nil {
		return nil, Raw, err
	}
	defer z.Close()
	out, err := io.ReadAll(z)
	return out, z.Format(), err
}

// TestFormats: each format decodes to what went in, whatever its
// encoder; a format the caller does not take is read as it is.
func TestFormats(t *testing.T) {
	fixtures.RequireTools(t, "bzip2")
	data := sample(t)
	goXZ := func(r *bufio.Reader) (io.ReadCloser, error) {
		d, err := xz.ReaderConfig{SingleStream: true}.NewReader(r)
		return io.NopCloser(d), err
	}
	tests := []struct {
		name   string
		body   []byte
		cfg    Config
		format Format
		want   []byte
	}{
		{"raw", data, Config{Formats: all}, Raw, data},
		{"gzip", gzipOf(t, data), Config{Formats: all}, Gzip, data},
		{"xz", decompresstest.XZ(t, data, 0), Config{Formats: all}, XZ, data},
		{"xz, multi-block", decompresstest.XZ(t, data, 64<<10), Config{Formats: all}, XZ, data},
		{"xz through an XZDecoder", decompresstest.XZ(t, data, 64<<10), Config{Formats: all, XZDecoder: goXZ}, XZ, data},
		{"zstd", zstdOf(t, data), Config{Formats: all}, Zstd, data},
		{"bzip2", runTool(t, data, "bzip2", "-c"), Config{Formats: all}, Bzip2, data},
		{"lzma when there is no magic", lzmaOf(t, data), Config{Formats: all, NoMagic: LZMA}, LZMA, data},
		{"gzip not taken", gzipOf(t, data), Config{Formats: []Format{XZ}}, Raw, gzipOf(t, data)},
		{"nothing taken", zstdOf(t, data), Config{}, Raw, zstdOf(t, data)},
		{"empty", nil, Config{Formats: all}, Raw, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, f, err := readAll(tt.body, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if f != tt.format || !bytes.Equal(got, tt.want) {
				t.Errorf("read %v, %d bytes; want %v, %d bytes", f, len(got), tt.format, len(tt.want))
			}
		})
	}
}

// zstdWithWindow rewrites the Window_Descriptor of the first frame of a
// zstd stream written by zstd.NewWriter (not single-segment).
func zstdWithWindow(t testing.TB, b []byte, log byte) []byte {
	t.Helper()
	b = bytes.Clone(b)
	if b[4]&(1<<5) != 0 {
		t.Fatal("single-segment frame has no window descriptor")
	}
	b[5] = (log - 10) << 3
	return b
}

// TestLimits: a stream asking for a dictionary or window over the limit is
// refused before the decoder allocates it, when the stream is opened for
// the first header and while reading for the others, whichever decoder
// reads it; the error says what was asked and where.
func TestLimits(t *testing.T) {
	data := sample(t)
	one := decompresstest.XZ(t, data, 0)
	multi := decompresstest.XZ(t, data, 64<<10)
	blocks := decompresstest.XZBlocks(t, multi)
	if len(blocks) < 3 {
		t.Fatalf("%d blocks, want 3 or more", len(blocks))
	}
	goXZ := func(r *bufio.Reader) (io.ReadCloser, error) {
		d, err := xz.ReaderConfig{SingleStream: true}.NewReader(r)
		return io.NopCloser(d), err
	}
	z := zstdOf(t, data)
	lz := lzmaOf(t, data)
	binary.LittleEndian.PutUint32(lz[1:], 1<<30)
	singleSegment := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0}

	tests := []struct {
		name   string
		body   []byte
		cfg    Config
		atOpen bool
		want   LimitError
	}{
		{"xz 4 GiB", decompresstest.WithXZDict(t, one, 40, 12), Config{Formats: all}, true,
			LimitError{Format: XZ, What: "dictionary", Off: 12, Need: 1<<32 - 1, Limit: DefaultMaxDict}},
		{"xz 1.5 GiB", decompresstest.WithXZDict(t, one, 37, 12), Config{Formats: all}, true,
			LimitError{Format: XZ, What: "dictionary", Off: 12, Need: 3 << 29, Limit: DefaultMaxDict}},
		{"xz over a smaller limit", one, Config{Formats: all, MaxDict: 512 << 10}, true,
			LimitError{Format: XZ, What: "dictionary", Off: 12, Need: 1 << 20, Limit: 512 << 10}},
		{"zstd over a smaller limit", z, Config{Formats: all, MaxWindow: 512 << 10}, true,
			LimitError{Format: Zstd, What: "window", Off: 0, Need: 1 << 20, Limit: 512 << 10}},
		{"xz third block", decompresstest.WithXZDict(t, multi, 40, blocks[2]), Config{Formats: all}, false,
			LimitError{Format: XZ, What: "dictionary", Off: int64(blocks[2]), Need: 1<<32 - 1, Limit: DefaultMaxDict}},
		{"xz third block, XZDecoder", decompresstest.WithXZDict(t, multi, 40, blocks[2]), Config{Formats: all, XZDecoder: goXZ}, false,
			LimitError{Format: XZ, What: "dictionary", Off: int64(blocks[2]), Need: 1<<32 - 1, Limit: DefaultMaxDict}},
		{"xz second stream", append(bytes.Clone(one), decompresstest.WithXZDict(t, one, 40, 12)...), Config{Formats: all}, false,
			LimitError{Format: XZ, What: "dictionary", Off: int64(len(one) + 12), Need: 1<<32 - 1, Limit: DefaultMaxDict}},
		{"zstd 2 GiB window", zstdWithWindow(t, z, 31), Config{Formats: all}, true,
			LimitError{Format: Zstd, What: "window", Off: 0, Need: 2 << 30, Limit: DefaultMaxWindow}},
		{"zstd single segment of 1 TiB", singleSegment, Config{Formats: all}, true,
			LimitError{Format: Zstd, What: "window", Off: 0, Need: 1 << 40, Limit: DefaultMaxWindow}},
		{"zstd second frame", append(bytes.Clone(z), zstdWithWindow(t, z, 31)...), Config{Formats: all}, false,
			LimitError{Format: Zstd, What: "window", Off: -1, Limit: DefaultMaxWindow}},
		{"lzma 1 GiB", lz, Config{NoMagic: LZMA}, true,
			LimitError{Format: LZMA, What: "dictionary", Off: 1, Need: 1 << 30, Limit: DefaultMaxDict}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, err := NewReader(bytes.NewReader(tt.body), tt.cfg)
			var n int64
			if err == nil {
				if tt.atOpen {
					t.Error("opened")
				}
				n, err = io.Copy(io.Discard, z)
				z.Close()
			} else if !tt.atOpen {
				t.Errorf("refused when opened: %v", err)
			}
			var le *LimitError
			if !errors.As(err, &le) || !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v after %d bytes, want a *LimitError", err, n)
			}
			if *le != tt.want {
				t.Errorf("err = %+v, want %+v", *le, tt.want)
			}
		})
	}
	msg := (&LimitError{Format: XZ, What: "dictionary", Off: 12, Need: 1<<32 - 1, Limit: 64 << 20}).Error()
	if want := "xz block at byte 12 needs a 4095 MiB dictionary, more than the 64 MiB allowed"; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
}

// TestMaxOutput: exactly MaxOutput bytes is fine, one more is a
// *LimitError, in every format.
func TestMaxOutput(t *testing.T) {
	data := sample(t)
	size := int64(len(data))
	bodies := map[string][]byte{
		"raw":  data,
		"gzip": gzipOf(t, data),
		"xz":   decompresstest.XZ(t, data, 0),
		"zstd": zstdOf(t, data),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			got, _, err := readAll(body, Config{Formats: all, MaxOutput: size})
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("at the bound: %d bytes, %v", len(got), err)
			}
			got, _, err = readAll(body, Config{Formats: all, MaxOutput: size - 1})
			var le *LimitError
			if !errors.As(err, &le) || le.What != "output" || le.Limit != size-1 || int64(len(got)) != size-1 {
				t.Fatalf("over the bound: %d bytes, %v; want %d bytes and an output *LimitError", len(got), err, size-1)
			}
		})
	}
}

// TestMalformed: broken streams are *FormatError naming the format; a
// truncated one also matches io.ErrUnexpectedEOF.
func TestMalformed(t *testing.T) {
	data := sample(t)
	x := decompresstest.XZ(t, data, 0)
	corrupt := bytes.Clone(x)
	corrupt[len(corrupt)/2] ^= 0x55
	g := gzipOf(t, data)
	z := zstdOf(t, data)
	tests := []struct {
		name      string
		body      []byte
		format    Format
		truncated bool
	}{
		{"xz truncated", x[:len(x)/2], XZ, true},
		{"xz corrupt", corrupt, XZ, false},
		{"xz bad LZMA2 properties", decompresstest.WithXZDict(t, x, 41, 12), XZ, false},
		{"gzip header only", g[:5], Gzip, true},
		{"gzip truncated", g[:len(g)/2], Gzip, true},
		{"zstd truncated", z[:len(z)/2], Zstd, true},
		{"bzip2 garbage", []byte("BZh9garbage garbage garbage"), Bzip2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(tt.body, Config{Formats: all})
			var fe *FormatError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) || fe.Format != tt.format {
				t.Fatalf("err = %v, want a %v *FormatError", err, tt.format)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tt.truncated {
				t.Errorf("err = %v matches io.ErrUnexpectedEOF: %v, want %v", err, !tt.truncated, tt.truncated)
			}
		})
	}
}

// TestReaderErrors: the source's errors come back (wrapped or not) and
// every error is sticky; a closed Reader is not read.
func TestReaderErrors(t *testing.T) {
	errDisk := errors.New("disk on fire")
	x := decompresstest.XZ(t, sample(t), 0)
	src := io.MultiReader(bytes.NewReader(x[:len(x)/2]), &failing{errDisk})
	z, err := NewReader(src, Config{Formats: all})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, z); !errors.Is(err, errDisk) {
		t.Fatalf("err = %v, want the source's", err)
	}
	if _, err := z.Read(make([]byte, 10)); !errors.Is(err, errDisk) {
		t.Fatalf("read again: %v", err)
	}
	z.Close()
	if _, err := z.Read(make([]byte, 10)); err == nil {
		t.Fatal("read after close")
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }
