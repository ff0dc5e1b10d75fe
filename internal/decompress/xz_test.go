package decompress

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

func runTool(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return out
}

// compressedCore is a fixture core as committed: zstd, so incompressible.
func compressedCore(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path("cores", "crashme-1.0.core.zst"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// TestXZGuard: the xz structure guard passes every stream the xz tool
// writes through unchanged, and refuses broken structure and a dictionary
// over its limit.
func TestXZGuard(t *testing.T) {
	fixtures.RequireTools(t, "xz")
	data := append(compressedCore(t), bytes.Repeat([]byte("retraced "), 50000)...)
	one := runTool(t, data, "xz", "-2", "-c")
	tests := []struct {
		name string
		body []byte
	}{
		{"xz -0", runTool(t, data, "xz", "-0", "-c")},
		{"xz -9e", runTool(t, data, "xz", "-9e", "-c")},
		{"sha256 check", runTool(t, data, "xz", "--check=sha256", "-c")},
		{"crc64 check", runTool(t, data, "xz", "--check=crc64", "-c")},
		{"no check", runTool(t, data, "xz", "--check=none", "-c")},
		{"multi-block", runTool(t, data, "xz", "-T2", "--block-size=32KiB", "-c")},
		{"x86 BCJ filter", runTool(t, data, "xz", "--x86", "--lzma2=preset=1", "-c")},
		{"small dictionary", runTool(t, data, "xz", "--lzma2=dict=4KiB", "-c")},
		{"uncompressible", runTool(t, compressedCore(t), "xz", "-0", "-c")},
		{"two streams with padding", append(append(bytes.Clone(one), 0, 0, 0, 0, 0, 0, 0, 0), one...)},
		{"empty input", runTool(t, nil, "xz", "-c")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := io.ReadAll(newXZGuard(bufioReader(tt.body), DefaultMaxDict, false))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tt.body) {
				t.Errorf("passed %d bytes of %d, differently", len(out), len(tt.body))
			}
		})
	}
	for _, tt := range []struct {
		name string
		body []byte
		want error
	}{
		{"truncated", one[:len(one)-5], io.ErrUnexpectedEOF},
		{"bad padding", append(bytes.Clone(one), 0, 0), ErrFormat},
		{"bad magic in second stream", append(bytes.Clone(one), []byte("garbage!garbage!")...), ErrFormat},
		{"dictionary too large", decompresstest.WithXZDict(t, one, 38, 12), ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := io.ReadAll(newXZGuard(bufioReader(tt.body), DefaultMaxDict, false)); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestXZGuardStops: a single-stream guard ends with its stream and leaves
// what follows unread; the guard never reads past the structure it checked.
func TestXZGuardStops(t *testing.T) {
	stream := decompresstest.XZ(t, []byte("one stream"), 0)
	br := bufioReader(append(bytes.Clone(stream), "trailing"...))
	out, err := io.ReadAll(newXZGuard(br, DefaultMaxDict, true))
	if err != nil || !bytes.Equal(out, stream) {
		t.Fatalf("passed %d bytes of %d, err %v", len(out), len(stream), err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "trailing" {
		t.Fatalf("left %q unread, want %q", rest, "trailing")
	}

	// A refused block header is not passed on, not even in part.
	bad := decompresstest.WithXZDict(t, stream, 40, 12)
	g := newXZGuard(bufioReader(bad), DefaultMaxDict, false)
	out, err = io.ReadAll(g)
	if !errors.Is(err, ErrTooLarge) || len(out) != 12 {
		t.Fatalf("passed %d bytes, err %v; want the 12-byte stream header, then ErrTooLarge", len(out), err)
	}
}

// TestXZChunkEndsEarly decodes, with the Go decoder, an input the fuzzer
// found: its LZMA chunk at byte 24 says it has 60 bytes of data, the
// LZMA decoder is done with its 1000 bytes after 53, and xz.Reader (which
// does not check the chunk's size) then took bytes 83-91 for the block's
// end and byte 92, inside the next chunk, for a block header asking for a
// 4 GiB dictionary, and allocated it. Framed here, the block fails where
// its data ends early, and nothing near that size is allocated.
func TestXZChunkEndsEarly(t *testing.T) {
	b, err := hex.DecodeString("fd377a585a000004e6d6b4460200210110000000a8708e86" +
		"e003e7003b5d0039194aeff0d321843da482eb6b2fa2f85926efe5c16124c76b86578a7b" +
		"76cd8ea4caad4befbcb11ef1ded76487b81ff5ce100000005b8dd12c68aecf8202002101" +
		"28000000e6a011b3e003e700335d00349cacde7488c5603d425a291f9a1a017b")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	z, err := NewReader(bytes.NewReader(b), Config{Formats: []Format{XZ}, MaxDict: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(z)
	runtime.ReadMemStats(&after)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Off != 83 {
		t.Errorf("err = %v, want a *FormatError at byte 83", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
		t.Errorf("%d bytes allocated decoding 128", n)
	}
}
