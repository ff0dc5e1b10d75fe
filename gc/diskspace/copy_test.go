package diskspace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCopySparse: zeros become holes (the file's blocks on disk are a
// fraction of its size) and the content reads back the same, a trailing
// hole included.
func TestCopySparse(t *testing.T) {
	var src bytes.Buffer
	src.WriteString("head")
	src.Write(make([]byte, 64<<20)) // 64 MiB of zeros
	src.WriteString("middle")
	src.Write(make([]byte, 8<<20)) // a trailing hole
	want := src.Bytes()
	f, err := os.Create(filepath.Join(t.TempDir(), "core"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := (*Policy)(nil).Copy(f, bytes.NewReader(want))
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Copy = %d, %v; want %d", n, err, len(want))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("content differs (%d bytes read, %v)", len(got), err)
	}
	fi, _ := f.Stat()
	onDisk := fi.Sys().(*syscall.Stat_t).Blocks * 512
	if onDisk > 1<<20 {
		t.Errorf("%d bytes on disk for a %d-byte file of zeros and 10 bytes", onDisk, len(want))
	}
}

// TestCopyChecksAsItWrites: a copy that would take the file system below
// the minimum stops with ErrLow after at most one check interval.
func TestCopyChecksAsItWrites(t *testing.T) {
	old := checkEvery
	checkEvery = 1 << 20
	defer func() { checkEvery = old }()
	free := int64(10 << 20)
	p := &Policy{Dir: "/", MinBytes: 8 << 20, statfs: func(string) (int64, int64, error) { return free, 100 << 20, nil }}
	f, err := os.Create(filepath.Join(t.TempDir(), "core"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Each MiB written takes a MiB off the free space.
	src := io.TeeReader(io.LimitReader(bytes.NewReader(bytes.Repeat([]byte{1}, 32<<20)), 32<<20), writeFunc(func(b []byte) { free -= int64(len(b)) }))
	n, err := p.Copy(f, src)
	if !errors.Is(err, ErrLow) {
		t.Fatalf("Copy = %d, %v; want ErrLow", n, err)
	}
	if n > 4<<20 {
		t.Errorf("copied %d bytes before stopping, want about 2 MiB", n)
	}
}

type writeFunc func([]byte)

func (w writeFunc) Write(b []byte) (int, error) { w(b); return len(b), nil }
