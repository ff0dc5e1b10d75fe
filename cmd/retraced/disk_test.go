package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/mirror"
)

// mountTmpfs mounts a tmpfs of size (as mount's -o size= takes it) on
// dir, creating dir; the test is skipped without root (CI runs as root).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// freeBytes is what statfs says is free for dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillTo writes a file of 0x55 bytes at path until dir has at most left
// bytes free (or the file system is full).
func fillTo(t *testing.T, path, dir string, left int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := freeBytes(t, dir) - left
	if n <= 0 {
		return
	}
	_, err = io.Copy(f, io.LimitReader(pattern{}, n))
	if err != nil && !strings.Contains(err.Error(), "no space left") {
		t.Fatal(err)
	}
}

// pattern reads an endless run of 0x55: data no hole can stand for.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0x55
	}
	return len(p), nil
}

// gzipCrash is a tar.gz of a flat crash directory whose coredump is n
// bytes read from r.
func gzipCrash(t *testing.T, r io.Reader, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "coredump", Mode: 0o644, Size: n, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(tw, io.LimitReader(r, n)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listFiles lists the regular files below dir, relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return nil
	})
	return files
}

// TestCreateFillsDiskMidUnpack: on a data directory of a 400 MiB tmpfs,
// a 0.2 MB tar.gz whose coredump unpacks to 100 MiB past what the free
// space minimum (256 MiB at least) leaves is accepted by its size and
// refused with 507 as unpacking crosses the minimum: free space never
// goes more than 40 MiB below it (without the check as it writes, it
// went 100 MiB below, and the 507 came only after); the task's
// directory is removed and the space given back, and the next create
// that fits is accepted.
func TestCreateFillsDiskMidUnpack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	mountTmpfs(t, dir, "400m")
	cfg := testConfig(t)
	cfg.Data = dir
	cfg.MinFree = 0 // the 256 MiB floor is the minimum
	url := startServe(t, cfg)
	free := freeBytes(t, dir)
	size := free - indexReserve + 100<<20
	if size <= 0 || size > 1000<<20 {
		t.Fatalf("%d bytes free on the tmpfs", free)
	}
	body := gzipCrash(t, pattern{}, size)
	t.Logf("%d bytes free, the minimum %d; the upload is %d bytes unpacking to %d", free, int64(indexReserve), len(body), size)
	// The least free while the create runs: unpacking stops at the
	// minimum (checked every 16 MiB written), not after writing it all.
	least := free
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			least = min(least, freeBytes(t, dir))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	code, _, msg := httpDo(t, http.MethodPost, url+"/create", map[string]string{"Content-Type": "application/x-gzip"}, bytes.NewReader(body))
	close(stop)
	<-watched
	t.Logf("at least %d bytes free while unpacking", least)
	if least < indexReserve-(40<<20) {
		t.Errorf("free space went down to %d while unpacking, want it stopped near the minimum %d", least, int64(indexReserve))
	}
	if code != http.StatusInsufficientStorage || !strings.Contains(msg, "storage") {
		t.Fatalf("create crossing the minimum: %d %q, want 507", code, msg)
	}
	if left := listFiles(t, filepath.Join(dir, "tasks")); len(left) != 0 {
		t.Errorf("left behind in tasks/: %v", left)
	}
	if now := freeBytes(t, dir); now < free-(4<<20) {
		t.Errorf("%d bytes free after the refused create, %d before", now, free)
	}
	task := createTask(t, url, crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"), nil))
	if task.id == "" {
		t.Error("no task after the refused one")
	}
}

// TestCreateKeepsHoles: a crash whose coredump is 128 MiB of zeros,
// sent as a tar.gz (128 KB) or as a GNU sparse tar (10 KB), is accepted
// by /create and lands as a sparse file: its size is the core's, its
// blocks on disk under 1 MiB. Before, unpacking wrote every zero.
func TestCreateKeepsHoles(t *testing.T) {
	const size = 128 << 20
	gnuSparse := func(t *testing.T) []byte {
		tarCmd, err := exec.LookPath("tar")
		if err != nil {
			t.Skip("GNU tar not installed")
		}
		src := t.TempDir()
		f, err := os.Create(filepath.Join(src, "coredump"))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("ELF")
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out, err := exec.Command(tarCmd, "--sparse", "--format=gnu", "-C", src, "-cf", "-", "coredump").Output()
		if err != nil {
			t.Fatalf("tar --sparse: %v", err)
		}
		return out
	}
	for _, tc := range []struct {
		name, ct string
		body     func(t *testing.T) []byte
	}{
		{"gzip of zeros", "application/x-gzip", func(t *testing.T) []byte { return gzipCrash(t, zeros{}, size) }},
		{"GNU sparse tar", "application/x-tar", gnuSparse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Retrace.MaxRunningTasks = 1
			url := startServe(t, cfg)
			body := tc.body(t)
			code, h, msg := httpDo(t, http.MethodPost, url+"/create", map[string]string{"Content-Type": tc.ct}, bytes.NewReader(body))
			if code != http.StatusCreated {
				t.Fatalf("create: %d %s", code, msg)
			}
			core := filepath.Join(cfg.Data, "tasks", h.Get("X-Task-Id"), "crash", "coredump")
			fi, err := os.Stat(core)
			if err != nil {
				t.Fatal(err)
			}
			onDisk := fi.Sys().(*syscall.Stat_t).Blocks * 512
			t.Logf("%d bytes sent, a coredump of %d bytes taking %d on disk", len(body), fi.Size(), onDisk)
			if fi.Size() != size || onDisk > 1<<20 {
				t.Errorf("coredump of %d bytes takes %d bytes on disk, want %d bytes in under 1 MiB", fi.Size(), onDisk, size)
			}
		})
	}
}

// TestSyncFillsDisk: a sync whose disk fills while it runs answers
// POST .../sync?wait=true, serve stays up, no temp file is left, and the
// next sync, with room again, lands everything. The upstream (a real
// server on loopback, serving the fixture repository one package at a
// time: workers = 1) fills the disk when the second package is asked
// for, after the first has landed:
//   - "data crosses the floor": the data directory's tmpfs (400 MiB) is
//     filled to 1 MiB under the 256 MiB floor; the sync pauses before the
//     next package and says so.
//   - "blob file system full": the blobs are on a tmpfs of their own
//     (4 MiB, mounted on DATA/blobs), filled to the last byte: the
//     packages after the first fail with "no space left on device", and
//     compaction of the first, which runs after the sync, hits the full
//     disk too; neither leaves a blob or compact-*.tmp temp file.
//
// The floor cannot be lowered by configuration (it keeps Badger's
// memory-mapped files from SIGBUS on a full disk), so the data
// directory itself is never filled to the last byte: that is what the
// blobs' own file system is for.
func TestSyncFillsDisk(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fill fills the disk; data is the data directory.
		fill func(t *testing.T, data string)
		want string
	}{
		{"data crosses the floor", func(t *testing.T, data string) {
			fillTo(t, filepath.Join(data, "fill"), data, indexReserve-(1<<20))
		}, "paused"},
		{"blob file system full", func(t *testing.T, data string) {
			fillTo(t, filepath.Join(data, "blobs", "fill"), filepath.Join(data, "blobs"), 0)
		}, "no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			mountTmpfs(t, data, "400m")
			if tc.name == "blob file system full" {
				mountTmpfs(t, filepath.Join(data, "blobs"), "4m")
			}
			repo := fixtures.FS("repo")
			inner := fixtures.NewServer(repo)
			var armed atomic.Bool
			var rpms atomic.Int32
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !armed.Load() {
					http.Error(w, "not yet", http.StatusServiceUnavailable)
					return
				}
				if strings.HasSuffix(r.URL.Path, ".rpm") && rpms.Add(1) == 2 {
					tc.fill(t, data)
				}
				inner.ServeHTTP(w, r)
			}))
			defer hs.Close()

			cfg := testConfig(t)
			cfg.Data = data
			cfg.MinFree = 0
			cfg.Mirror.Workers = 1
			cfg.APISources = "private"
			s, err := openStore(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.mirror.Add(context.Background(), mirror.Source{Name: "up", Kind: mirror.KindYum, URL: hs.URL}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			url := startServe(t, cfg) // its first sync fails: the upstream is not up yet
			armed.Store(true)

			done := make(chan struct{})
			var code int
			var body string
			go func() {
				defer close(done)
				code, _, body = httpDo(t, http.MethodPost, url+"/api/v1/mirrors/up/sync?wait=true", nil, nil)
			}()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("sync?wait=true gave no answer as the disk filled")
			}
			t.Logf("%d %s", code, body)
			if !strings.Contains(body, tc.want) {
				t.Errorf("sync filling the disk: %d %s, want it to say %q", code, body, tc.want)
			}
			if tc.name == "blob file system full" && !strings.Contains(body, "compact") {
				t.Errorf("sync answer %s does not show compaction meeting the full disk", body)
			}
			mid, _ := mirrorView(t, url, "up")["packages"].(float64)
			if code, _, _ := httpDo(t, http.MethodGet, url+"/healthz", nil, nil); code != http.StatusOK {
				t.Errorf("healthz after: %d", code)
			}
			for _, f := range listFiles(t, data) {
				if strings.HasPrefix(f, filepath.Join("blobs", "tmp")+"/") || strings.Contains(filepath.Base(f), ".tmp") {
					t.Errorf("temp file left: %s", f)
				}
			}
			// Room again: the next sync lands every package.
			for _, fill := range []string{filepath.Join(data, "fill"), filepath.Join(data, "blobs", "fill")} {
				os.Remove(fill)
			}
			code, _, body = httpDo(t, http.MethodPost, url+"/api/v1/mirrors/up/sync?wait=true", nil, nil)
			if code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
				t.Errorf("sync with room again: %d %s", code, body)
			}
			// Some landed before the disk filled, not all.
			if all, _ := mirrorView(t, url, "up")["packages"].(float64); mid < 1 || mid >= all {
				t.Errorf("%v packages landed before the disk filled, %v after, want some and not all", mid, all)
			}
		})
	}
}
