package resolver

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

// TestCoredump2PackagesUploads posts a fixture core to coredump2packages
// raw and compressed, and hostile uploads: a compressed stream asking for
// gigabytes of dictionary or window is 413 with the reason, refused
// before anything is allocated for it or written; malformed ones are 400.
func TestCoredump2PackagesUploads(t *testing.T) {
	idx, _ := newFixtureStore(t)
	spool := t.TempDir()
	c := fixtures.Cores(t)[0]
	core, err := os.ReadFile(fixtures.CoreFile(t, c.File))
	if err != nil {
		t.Fatal(err)
	}
	zst, err := os.ReadFile(fixtures.Path("cores", c.File))
	if err != nil {
		t.Fatal(err)
	}
	gzipOf := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	xz := decompresstest.XZ(t, core, 0)
	multi := decompresstest.XZ(t, core, 64<<10)
	third := decompresstest.XZBlocks(t, multi)[2]
	// A frame written as a stream has a Window_Descriptor (the fixture's,
	// written by zstd from a file, is single-segment).
	var bigWindow bytes.Buffer
	zsw, err := zstd.NewWriter(&bigWindow)
	if err != nil {
		t.Fatal(err)
	}
	zsw.Write(core)
	if err := zsw.Close(); err != nil {
		t.Fatal(err)
	}
	if bigWindow.Bytes()[4]&(1<<5) != 0 {
		t.Fatal("single-segment zstd frame")
	}
	bigWindow.Bytes()[5] = (31 - 10) << 3 // Window_Descriptor: 2 GiB

	gin.SetMode(gin.TestMode)
	r := gin.New()
	NewAPI(idx, Config{SpoolDir: spool, MaxCoreSize: int64(len(core))}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	tests := []struct {
		name    string
		body    []byte
		status  int
		wantMsg string
	}{
		{"raw", core, http.StatusOK, ""},
		{"gzip", gzipOf(core), http.StatusOK, ""},
		{"xz", xz, http.StatusOK, ""},
		{"xz, multi-block", multi, http.StatusOK, ""},
		{"zstd", zst, http.StatusOK, ""},
		{"xz asking for a 4 GiB dictionary", decompresstest.WithXZDict(t, xz, 40, 12),
			http.StatusRequestEntityTooLarge, "xz block at byte 12 needs a 4095 MiB dictionary, more than the 64 MiB allowed"},
		{"xz asking for 1.5 GiB in its third block", decompresstest.WithXZDict(t, multi, 37, third),
			http.StatusRequestEntityTooLarge, "needs a 1536 MiB dictionary"},
		{"zstd asking for a 2 GiB window", bigWindow.Bytes(),
			http.StatusRequestEntityTooLarge, "zstd frame at byte 0 needs a 2048 MiB window, more than the 256 MiB allowed"},
		{"xz truncated", xz[:len(xz)/2], http.StatusBadRequest, "bad upload: xz"},
		{"gzip one byte over the limit", gzipOf(append(bytes.Clone(core), 0)),
			http.StatusRequestEntityTooLarge, fmt.Sprintf("too large: core larger than %d bytes", len(core))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			resp, err := http.Post(srv.URL+"/api/v1/coredump2packages", "application/octet-stream", bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			runtime.ReadMemStats(&after)
			if resp.StatusCode != tt.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.status == http.StatusOK {
				var rep Report
				if err := json.Unmarshal(b, &rep); err != nil || crashOf(&rep) != c.NEVRA {
					t.Fatalf("answer %s (%v), want crash package %s", b, err, c.NEVRA)
				}
				return
			}
			if !strings.Contains(string(b), tt.wantMsg) {
				t.Errorf("answer %s, want one saying %q", b, tt.wantMsg)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("allocated %d MiB to refuse it", alloc>>20)
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("left %d files in the spool", len(left))
			}
		})
	}
}

// TestReadSectionsHostile: the section reader of /buildid/ID/section/NAME
// opens pool files through elfnote.NewFile: a file debug/elf would panic
// on, a truncated one and one that is no ELF have no sections; a good one
// has debug/elf's.
func TestReadSectionsHostile(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := elf.NewFile(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	// Extended numbering (e_shnum 0, the count in section 0) with 0xff00
	// null sections and a section-name table index past them: debug/elf
	// in Go 1.26 indexes out of range.
	const n, ehsize, shent = 0xff00, 64, 64
	le := binary.LittleEndian
	panics := make([]byte, ehsize+shent*n)
	copy(panics, elf.ELFMAG)
	panics[elf.EI_CLASS], panics[elf.EI_DATA], panics[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(panics[16:], uint16(elf.ET_EXEC))
	le.PutUint32(panics[20:], 1)
	le.PutUint64(panics[40:], ehsize) // e_shoff
	le.PutUint16(panics[52:], ehsize)
	le.PutUint16(panics[58:], shent)
	le.PutUint16(panics[62:], uint16(elf.SHN_XINDEX)) // e_shstrndx: in section 0
	le.PutUint64(panics[ehsize+32:], n)               // section 0's sh_size: the count
	le.PutUint32(panics[ehsize+40:], n+5)             // section 0's sh_link: the index
	func() {
		defer func() {
			if recover() == nil {
				t.Log("debug/elf no longer panics on the crafted file")
			}
		}()
		elf.NewFile(bytes.NewReader(panics))
	}()

	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		data []byte
		want int
	}{
		{"good", good, len(ref.Sections) - 1}, // all but the unnamed section 0
		{"debug/elf panics", panics, 0},
		{"truncated", good[:100], 0},
		{"not ELF", []byte("#!/bin/sh\nexit 0\n"), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, "/", "-"))
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			secs := readSections(f)
			if len(secs) > tt.want || (tt.want > 0 && len(secs) == 0) {
				t.Fatalf("%d sections, want %d", len(secs), tt.want)
			}
			for name, s := range secs {
				rs := ref.Section(name)
				if rs == nil || int64(rs.Offset) != s.off || int64(rs.FileSize) != s.size {
					t.Errorf("section %s at %d+%d, debug/elf says %v", name, s.off, s.size, rs)
				}
			}
		})
	}
}

// TestCoredump2PackagesBounded: uploads spooled at once are bounded (one
// more is 503 with Retry-After while the others stream), and a core that
// would take the spool's file system below the free-space minimum is 507,
// leaving nothing in the spool; before, each request could spool up to
// 4 GiB with no check and no limit.
func TestCoredump2PackagesBounded(t *testing.T) {
	idx, _ := newFixtureStore(t)
	spool := t.TempDir()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	NewAPI(idx, Config{SpoolDir: spool, MaxSpools: 2}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	var writers []*io.PipeWriter
	done := make(chan int, 2)
	for range 2 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() {
			resp, err := http.Post(srv.URL+"/api/v1/coredump2packages", "application/octet-stream", pr)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		pw.Write([]byte("\x7fELF")) // started, then held
	}
	time.Sleep(200 * time.Millisecond)
	resp, err := http.Post(srv.URL+"/api/v1/coredump2packages", "application/octet-stream", strings.NewReader("\x7fELF"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a third upload while two stream: %d %s, want 503 with Retry-After", resp.StatusCode, b)
	}
	for _, w := range writers {
		w.Close()
	}
	for range 2 {
		if code := <-done; code != http.StatusBadRequest {
			t.Errorf("a held upload ended %d, want 400 (a 4-byte core)", code)
		}
	}

	// A minimum no disk has: 507, nothing left in the spool.
	r = gin.New()
	NewAPI(idx, Config{SpoolDir: spool, Space: &diskspace.Policy{Dir: spool, MinBytes: 1 << 62}}).Register(r)
	srv2 := httptest.NewServer(r)
	t.Cleanup(srv2.Close)
	core, err := os.ReadFile(fixtures.CoreFile(t, fixtures.Cores(t)[0].File))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(srv2.URL+"/api/v1/coredump2packages", "application/octet-stream", bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(b), "minimum") {
		t.Errorf("upload below the minimum: %d %s, want 507", resp.StatusCode, b)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool holds %v", left)
	}
}
