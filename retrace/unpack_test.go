package retrace

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

// TestHostileArchives: each kind of malformed crash archive is 400, in
// every format, and nothing is written anywhere.
func TestHostileArchives(t *testing.T) {
	ts := newTestServer(t, &elfRetracer{}, testConfig())
	core := []byte("\x7fELF: refused before anyone reads it")
	outside := filepath.Join(ts.root, "evil")
	var manyDirs []tarMember
	for range DefaultMaxFiles {
		manyDirs = append(manyDirs, tarMember{name: "./", typ: tar.TypeDir})
	}
	tests := []struct {
		name    string
		members []tarMember
		wantMsg string
	}{
		{"dot-dot", []tarMember{{name: "../../../evil", body: core}}, "contains .."},
		{"dot-dot inside", []tarMember{{name: "coredump", body: core}, {name: "x/../executable", body: []byte("/bin/x")}}, "contains .."},
		{"absolute name", []tarMember{{name: outside, body: core}}, "absolute name"},
		{"symlink", []tarMember{{name: "coredump", typ: tar.TypeSymlink, linkname: "/etc/passwd"}}, "links are not allowed"},
		{"symlink then write through it", []tarMember{{name: "coredump", body: core},
			{name: "executable", typ: tar.TypeSymlink, linkname: outside}, {name: "executable", body: []byte("x")}}, "links are not allowed"},
		{"hardlink", []tarMember{{name: "package", body: []byte("crashme-1.0-1")},
			{name: "coredump", typ: tar.TypeLink, linkname: "package"}}, "links are not allowed"},
		{"hardlink outside", []tarMember{{name: "coredump", typ: tar.TypeLink, linkname: "/etc/passwd"}}, "links are not allowed"},
		{"subfolder member", []tarMember{{name: "sub/coredump", body: core}}, "subfolders"},
		{"subfolder entry", []tarMember{{name: "sub/", typ: tar.TypeDir}, {name: "coredump", body: core}}, "subfolders"},
		{"character device", []tarMember{{name: "coredump", typ: tar.TypeChar}}, "not a regular file"},
		{"fifo", []tarMember{{name: "coredump", typ: tar.TypeFifo}}, "not a regular file"},
		{"unknown file", []tarMember{{name: "coredump", body: core}, {name: "notes.txt", body: []byte("hi")}}, "not an allowed file name"},
		{"unknown file, case", []tarMember{{name: "Coredump", body: core}}, "not an allowed file name"},
		{"vmcore", []tarMember{{name: "vmcore", body: core}}, "not an allowed file name"},
		{"missing coredump", []tarMember{{name: "package", body: []byte("crashme-1.0-1")}}, "required file coredump is missing"},
		{"empty archive", nil, "malformed archive"},
		{"duplicate", []tarMember{{name: "coredump", body: core}, {name: "./coredump", body: core}}, "appears twice"},
		{"oversized package", []tarMember{{name: "coredump", body: core}, {name: "package", body: bytes.Repeat([]byte("p"), 129)}}, "more than the 128 allowed"},
		{"oversized executable", []tarMember{{name: "coredump", body: core}, {name: "executable", body: bytes.Repeat([]byte("e"), 513)}}, "more than the 512 allowed"},
		{"oversized os_release", []tarMember{{name: "coredump", body: core}, {name: "os_release", body: bytes.Repeat([]byte("o"), 129)}}, "more than the 128 allowed"},
		{"too many members", append(manyDirs, tarMember{name: "coredump", body: core}), "more than 16 members"},
	}
	formats := []struct {
		ct   string
		pack func(testing.TB, []byte) []byte
	}{
		{FormatTar, func(_ testing.TB, b []byte) []byte { return b }},
		{FormatGzip, gzipBytes},
		{FormatXZ, xzBytes},
	}
	for _, tt := range tests {
		for _, f := range formats {
			t.Run(tt.name+" "+f.ct, func(t *testing.T) {
				before := listTree(t, ts.root)
				resp := ts.post(t, f.ct, bytes.NewReader(f.pack(t, tarBytes(t, tt.members...))))
				msg := readBody(t, resp)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("got %d %q, want 400 %q", resp.StatusCode, msg, tt.wantMsg)
				}
				if after := listTree(t, ts.root); strings.Join(after, "\n") != strings.Join(before, "\n") {
					t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
				}
			})
		}
	}
	if st := ts.Stats(); st.Pending != 0 || st.Running != 0 {
		t.Errorf("refused uploads hold queue slots: %+v", st)
	}
}

// TestArchiveVariants: archives as real tools write them are taken.
func TestArchiveVariants(t *testing.T) {
	ts := newTestServer(t, &elfRetracer{}, testConfig())
	core := fixtureCore(t)
	tests := []struct {
		name    string
		members []tarMember
	}{
		{"dot entry and dot-slash names", []tarMember{{name: "./", typ: tar.TypeDir}, {name: "./coredump", body: core}, {name: "./executable", body: []byte("/usr/bin/crashme")}}},
		{"PAX global header", []tarMember{{name: "pax_global_header", typ: tar.TypeXGlobalHeader}, {name: "coredump", body: core}}},
		{"every allowed name", []tarMember{{name: "coredump", body: core}, {name: "executable", body: []byte("/usr/bin/crashme")},
			{name: "package", body: bytes.Repeat([]byte("p"), 128)}, {name: "packages", body: []byte("a\nb\n")},
			{name: "os_release", body: []byte("Fedora release 40 (Forty)")}, {name: "os_release_in_rootdir", body: []byte("x")},
			{name: "rootdir", body: []byte("/var/chroot")}, {name: "release", body: []byte("Fedora release 40")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, pw := ts.create(t, FormatGzip, gzipBytes(t, tarBytes(t, tt.members...)))
			ts.waitStatus(t, id, pw, StatusSuccess)
		})
	}
}

// TestGNUTarArchives: archives made by GNU tar and xz (the tools
// abrt-retrace-client runs), including sparse cores and multi-block xz.
func TestGNUTarArchives(t *testing.T) {
	fixtures.RequireTools(t, "tar", "xz")
	cfg := testConfig()
	cfg.MaxPackedSize, cfg.MaxUnpackedSize = 8, 8
	ts := newTestServer(t, &elfRetracer{}, cfg)
	crash := t.TempDir()
	core := fixtureCore(t)
	// A sparse core: the real core, then a 1 MiB hole.
	f, err := os.Create(filepath.Join(crash, "coredump"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(core); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(core)) + 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"executable": "/usr/bin/crashme", "package": "crashme-1.0-1", "os_release": "Fedora release 40 (Forty)"} {
		if err := os.WriteFile(filepath.Join(crash, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		tar  []string
		xz   []string // nil: the tar as is
		ct   string
	}{
		{"abrt-retrace-client's command", []string{"cO", "--directory=DIR", "coredump", "executable", "package", "os_release"}, []string{"-2"}, FormatXZ},
		{"whole directory", []string{"-C", "DIR", "-c", "."}, []string{"-6"}, FormatXZ},
		{"GNU sparse", []string{"-C", "DIR", "--format=gnu", "-S", "-c", "coredump", "executable"}, []string{"-9"}, FormatXZ},
		{"PAX sparse", []string{"-C", "DIR", "--format=posix", "-S", "-c", "coredump", "package"}, []string{"--check=sha256"}, FormatXZ},
		{"multi-block xz", []string{"-C", "DIR", "-c", "coredump"}, []string{"-T2", "--block-size=64KiB", "--check=crc32"}, FormatXZ},
		{"xz without check", []string{"-C", "DIR", "-c", "coredump"}, []string{"--check=none"}, FormatXZ},
		{"plain tar", []string{"-C", "DIR", "-c", "coredump", "executable"}, nil, FormatTar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := slices.Clone(tt.tar)
			for i, a := range args {
				args[i] = strings.Replace(a, "DIR", crash, 1)
			}
			body := runTool(t, nil, "tar", args...)
			if tt.xz != nil {
				body = runTool(t, body, "xz", append(tt.xz, "-c", "-")...)
			}
			id, pw := ts.create(t, tt.ct, body)
			ts.waitStatus(t, id, pw, StatusSuccess)
			got, err := os.ReadFile(filepath.Join(ts.dir, id, crashDirName, "coredump"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(core)+1<<20 || !bytes.Equal(got[:len(core)], core) {
				t.Errorf("coredump unpacked as %d bytes", len(got))
			}
		})
	}
}

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

// bombTar streams a tar of one coredump of n zero bytes into w.
func bombTar(t testing.TB, w io.Writer, n int64) {
	t.Helper()
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "coredump", Typeflag: tar.TypeReg, Size: n, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeroReader{}, n); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestDecompressionBombs: small bodies that unpack beyond the limit fail
// fast with 413, having written nothing.
func TestDecompressionBombs(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUnpackedSize = 1 // MiB
	ts := newTestServer(t, &elfRetracer{}, cfg)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	bombTar(t, zw, 2<<20)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	bombTar(t, &raw, 2<<20)
	xzBomb := xzBytes(t, raw.Bytes())
	tests := []struct {
		name    string
		ct      string
		body    []byte
		wantMsg string
	}{
		{"gzip", FormatGzip, gz.Bytes(), "content larger than 1048576 bytes"},
		{"xz", FormatXZ, xzBomb, "content larger than 1048576 bytes"},
		{"xz asking for a 4 GiB dictionary", FormatXZ, decompresstest.WithXZDict(t, crashXZ(t), 40, 12), "needs a 4095 MiB dictionary"},
		{"xz asking for a 1.5 GiB dictionary", FormatXZ, decompresstest.WithXZDict(t, crashXZ(t), 37, 12), "needs a 1536 MiB dictionary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.body) > 16<<10 {
				t.Fatalf("bomb of %d bytes is not small", len(tt.body))
			}
			before := listTree(t, ts.root)
			start := time.Now()
			resp := ts.post(t, tt.ct, bytes.NewReader(tt.body))
			msg := readBody(t, resp)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, tt.wantMsg) || strings.Contains(msg, "malformed") {
				t.Errorf("got %d %q, want 413 %q (not \"malformed\")", resp.StatusCode, msg, tt.wantMsg)
			}
			if after := listTree(t, ts.root); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestUnpackLimits checks unpack directly: what is on disk after each
// limit is hit.
func TestUnpackLimits(t *testing.T) {
	lim := unpackLimits{packed: 2 << 20, unpacked: 1 << 20, files: 4}
	var bomb bytes.Buffer
	bombTar(t, &bomb, 2<<20)
	// 1.5 MiB of content, 1.5 MiB of tar: over a 1 MiB packed limit
	// before any header says so.
	incompressible := make([]byte, 3<<19)
	for i := range incompressible {
		incompressible[i] = byte(i ^ i>>8 ^ i>>16)
	}
	tests := []struct {
		name    string
		body    []byte
		format  string
		lim     unpackLimits
		wantErr error
		wantLS  string
	}{
		{"declared size over the limit writes nothing", gzipBytes(t, bomb.Bytes()), FormatGzip, lim, ErrTooLarge, "."},
		{"packed over the limit", tarBytes(t, tarMember{name: "coredump", body: incompressible}), FormatTar,
			unpackLimits{packed: 1 << 20, unpacked: 4 << 20, files: 4}, ErrTooLarge, ". coredump"},
		{"sum over the limit", tarBytes(t, tarMember{name: "coredump", body: make([]byte, 1<<20-100)},
			tarMember{name: "packages", body: make([]byte, 200)}), FormatTar, lim, ErrTooLarge, ". coredump"},
		{"at the limit", tarBytes(t, tarMember{name: "coredump", body: make([]byte, 1<<20-100)},
			tarMember{name: "packages", body: make([]byte, 100)}), FormatTar, lim, nil, ". coredump packages"},
		{"lying size", func() []byte {
			b := tarBytes(t, tarMember{name: "coredump", body: make([]byte, 5000)})
			return b[:512+1000]
		}(), FormatTar, lim, ErrBadArchive, ". coredump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "crash")
			if err := os.Mkdir(dst, 0o750); err != nil {
				t.Fatal(err)
			}
			_, err := unpack(bytes.NewReader(tt.body), tt.format, dst, tt.lim)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("err %v, want %v", err, tt.wantErr)
			}
			if got := strings.Join(listTree(t, dst), " "); got != tt.wantLS {
				t.Errorf("dst holds %q, want %q", got, tt.wantLS)
			}
		})
	}
}

// TestUnpackKeepsHoles: a gzip of 128 MiB of zeros (a core's untouched
// pages, or a bomb within the limits) lands as a sparse file: its blocks
// on disk are a small fraction of its size (before: all of it was
// written out).
func TestUnpackKeepsHoles(t *testing.T) {
	var raw bytes.Buffer
	zw := gzip.NewWriter(&raw)
	bombTar(t, zw, 128<<20)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "crash")
	if err := os.Mkdir(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := unpack(bytes.NewReader(raw.Bytes()), FormatGzip, dst, unpackLimits{packed: 8 << 20, unpacked: 256 << 20, files: 4}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "coredump"))
	if err != nil {
		t.Fatal(err)
	}
	onDisk := fi.Sys().(*syscall.Stat_t).Blocks * 512
	t.Logf("%d bytes packed, %d bytes unpacked, %d on disk", raw.Len(), fi.Size(), onDisk)
	if fi.Size() != 128<<20 || onDisk > 1<<20 {
		t.Errorf("coredump of %d bytes takes %d on disk", fi.Size(), onDisk)
	}
}
