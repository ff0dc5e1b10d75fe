package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func testPool(t *testing.T) *Pool {
	t.Helper()
	return codecPool(t, CodecZstd)
}

func codecPool(t *testing.T, c Codec) *Pool {
	t.Helper()
	p, err := Open(t.TempDir(), Config{Codec: c, Level: LevelFastest})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// eachCodec runs fn on a fresh pool writing each codec.
func eachCodec(t *testing.T, fn func(t *testing.T, p *Pool)) {
	for _, c := range []Codec{CodecZstd, CodecS2} {
		t.Run(c.String(), func(t *testing.T) { fn(t, codecPool(t, c)) })
	}
}

func content(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b[:n/2]); err != nil { // half random, half zeros: compressible
		panic(err)
	}
	return b
}

// prose returns n bytes of words in a fixed pseudo-random order:
// compressible, better by a strong codec than a fast one.
func prose(n int) []byte {
	words := strings.Fields("retraced mirrors every version of every package and keeps what a " +
		"crash needs: executables libraries debuginfo sources build-id index core gdb sysroot")
	var b bytes.Buffer
	for x := uint32(1); b.Len() < n; {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.WriteString(words[x%uint32(len(words))])
		b.WriteByte(" \n"[x>>31])
	}
	return b.Bytes()[:n]
}

func TestPutOpenRoundTrip(t *testing.T) { eachCodec(t, testPutOpenRoundTrip) }

func testPutOpenRoundTrip(t *testing.T, p *Pool) {
	for _, n := range []int{0, 1, 1000, 3 << 20} {
		b := content(n)
		d := Sum(b)
		stored, err := p.Put(d, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if n > 1000 && stored >= int64(n) {
			t.Errorf("%d bytes stored as %d: not compressed", n, stored)
		}
		again, err := p.Put(d, bytes.NewReader(b))
		if err != nil || again != 0 {
			t.Fatalf("second Put = %d, %v; want 0 (stored once)", again, err)
		}
		r, err := p.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%d bytes: read back %d, %v", n, len(got), err)
		}
	}
}

func TestPutRejectsWrongDigest(t *testing.T) {
	p := testPool(t)
	d := Sum([]byte("the truth"))
	if _, err := p.Put(d, bytes.NewReader([]byte("a lie"))); err == nil {
		t.Fatal("Put stored content under another digest")
	}
	if p.Has(d) {
		t.Fatal("a rejected blob is visible")
	}
	ents, _ := os.ReadDir(p.Dir() + "/tmp")
	if len(ents) != 0 {
		t.Fatalf("rejected write left %d temp files", len(ents))
	}
}

func TestOpenMissingAndCorrupt(t *testing.T) { eachCodec(t, testOpenMissingAndCorrupt) }

func testOpenMissingAndCorrupt(t *testing.T, p *Pool) {
	if _, err := p.Open(Sum([]byte("x"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	d, raw := putRaw(t, p, content(100000))
	if err := os.Chmod(p.Path(d), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Path(d), raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := readBlob(p, d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated blob read: %v, want ErrCorrupt", err)
	}
	if _, err := p.Plain(d); err == nil {
		t.Fatal("Plain of a corrupt blob succeeded")
	}
}

func TestConcurrentPutSameDigest(t *testing.T) {
	p := testPool(t)
	b := content(1 << 20)
	d := Sum(b)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Put(d, bytes.NewReader(b)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r, err := p.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); !bytes.Equal(got, b) {
		t.Fatal("content differs after concurrent writes")
	}
}

func TestCompactAndPlain(t *testing.T) {
	for _, cmd := range []string{"", "zstd"} {
		name := "go"
		if cmd != "" {
			path, err := exec.LookPath(cmd)
			if err != nil {
				t.Skip("zstd not installed (CI installs it)")
			}
			cmd, name = path, "zstd"
		}
		t.Run(name, func(t *testing.T) {
			eachCodec(t, func(t *testing.T, p *Pool) {
				b := prose(1 << 20)
				d := Sum(b)
				if _, err := p.Put(d, bytes.NewReader(b)); err != nil {
					t.Fatal(err)
				}
				before, after, err := p.Compact(context.Background(), d, cmd)
				if err != nil {
					t.Fatal(err)
				}
				if after >= before {
					t.Fatalf("compaction %d -> %d bytes", before, after)
				}
				if done, _ := p.IsCompacted(d); !done {
					t.Fatal("not marked compacted")
				}
				if b2, a2, err := p.Compact(context.Background(), d, cmd); err != nil || b2 != after || a2 != after {
					t.Fatalf("second compaction: %d %d %v", b2, a2, err)
				}
				path, err := p.Plain(d)
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("plain copy differs: %v", err)
				}
				raw, err := os.ReadFile(p.Path(d))
				if err != nil || !bytes.HasPrefix(raw, magicZstd) {
					t.Fatalf("compacted blob is not zstd: % x, %v", raw[:min(len(raw), 8)], err)
				}
			})
		})
	}
}

// TestS2EndChunk checks what the end chunk is for: an S2 blob cut at a
// chunk boundary, or whose end chunk gives another length, is corrupt.
func TestS2EndChunk(t *testing.T) {
	p := codecPool(t, CodecS2)
	d, raw := putRaw(t, p, content(3<<20)) // three 1 MiB chunks
	if !bytes.HasPrefix(raw, magicS2) {
		t.Fatalf("not an S2 stream: % x", raw[:10])
	}
	end := len(raw) - 12 // 4-byte chunk header, 8-byte length
	if raw[end] != s2EndChunk {
		t.Fatalf("last chunk is type %#x, want the end chunk", raw[end])
	}
	short := bytes.Clone(raw[:end])
	wrong := bytes.Clone(raw)
	wrong[end+4]++
	for name, bad := range map[string][]byte{"no end chunk": short, "wrong length": wrong} {
		if err := os.WriteFile(p.Path(d), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := readBlob(p, d); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: read %v, want ErrCorrupt", name, err)
		}
	}
}

// putRaw stores b and returns its digest and the stored file's bytes.
func putRaw(t *testing.T, p *Pool, b []byte) (Digest, []byte) {
	t.Helper()
	d := Sum(b)
	if _, err := p.Put(d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p.Path(d))
	if err != nil {
		t.Fatal(err)
	}
	return d, raw
}

// readBlob opens blob d and reads it to the end, for the error.
func readBlob(p *Pool, d Digest) error {
	r, err := p.Open(d)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

// TestWriter streams a blob whose digest is known only at the end: its
// content reads back before Commit, a second Commit of the same digest
// stores nothing, and neither Commit nor Abort leaves a temp file.
func TestWriter(t *testing.T) { eachCodec(t, testWriter) }

func testWriter(t *testing.T, p *Pool) {
	b := content(1 << 20)
	d := Sum(b)
	commit := func() int64 {
		t.Helper()
		w, err := p.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		for rest := b; len(rest) > 0; rest = rest[min(len(rest), 7000):] {
			if _, err := w.Write(rest[:min(len(rest), 7000)]); err != nil {
				t.Fatal(err)
			}
		}
		rc, err := w.Content()
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, rc); !bytes.Equal(got, b) {
			t.Fatalf("Content before Commit: %d bytes, want %d", len(got), len(b))
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("Write after Content succeeded")
		}
		n, err := w.Commit(d)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := commit(); n <= 0 || n >= int64(len(b)) {
		t.Fatalf("first Commit stored %d bytes of %d", n, len(b))
	}
	if n := commit(); n != 0 {
		t.Fatalf("second Commit of the same digest stored %d bytes", n)
	}
	w, err := p.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b[:100])
	w.Abort()
	r, err := p.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); !bytes.Equal(got, b) {
		t.Fatalf("committed blob reads back %d bytes, want %d", len(got), len(b))
	}
	left, err := os.ReadDir(p.Dir() + "/tmp")
	if err != nil || len(left) > 0 {
		t.Fatalf("temp files left: %v %v", left, err)
	}
}

// readAll reads and closes rc.
func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkOpen reads a stored blob whole, as a cold debuginfod request
// does before it has a plain copy: small (a debuginfo file of the
// fixtures) and large.
func BenchmarkOpen(b *testing.B) {
	for _, c := range []Codec{CodecZstd, CodecS2} {
		for _, n := range []int{8 << 10, 4 << 20} {
			p, err := Open(b.TempDir(), Config{Codec: c, Level: LevelFastest, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			content := prose(n)
			d := Sum(content)
			if _, err := p.Put(d, bytes.NewReader(content)); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%dKiB", c, n>>10), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if err := readBlob(p, d); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestCompactLowPriority checks that compaction runs zstd at niceness
// 19: serve compacts in the background, and requests must come first.
func TestCompactLowPriority(t *testing.T) {
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd not installed (CI installs it)")
	}
	dir := t.TempDir()
	// The wrapper waits for Compact to renice it, records its niceness
	// (field 19 of /proc/PID/stat), then becomes zstd.
	wrapper := dir + "/zstd"
	script := "#!/bin/sh\nsleep 0.3\nawk '{print $19}' /proc/$$/stat > " + dir + "/nice\nexec " + zstdBin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := codecPool(t, CodecS2)
	d, _ := putRaw(t, p, prose(1<<16))
	if _, _, err := p.Compact(context.Background(), d, wrapper); err != nil {
		t.Fatal(err)
	}
	nice, err := os.ReadFile(dir + "/nice")
	if err != nil || strings.TrimSpace(string(nice)) != "19" {
		t.Fatalf("zstd ran at niceness %q (%v), want 19", nice, err)
	}
	if err := readBlob(p, d); err != nil {
		t.Fatalf("compacted blob: %v", err)
	}
}

// TestPlanCleanup: PlanPlain marks the copies of unwanted blobs and evicts
// the least recently used wanted ones beyond the budget; StaleTemps lists
// only old entries of tmp/, and RemoveTemp removes nothing outside it.
func TestPlanCleanup(t *testing.T) {
	p := testPool(t)
	var ds []Digest
	for i := range 3 {
		d, _ := putRaw(t, p, content(1000+i))
		path, err := p.Plain(d)
		if err != nil {
			t.Fatal(err)
		}
		used := time.Now().Add(time.Duration(i-10) * time.Hour) // ds[0] least recently used
		if err := os.Chtimes(path, used, used); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	wantAll := func(Digest) bool { return true }
	for _, tc := range []struct {
		name     string
		budget   int64
		wanted   func(Digest) bool
		evict    []Digest
		unwanted []Digest
	}{
		{"within budget", 1 << 20, wantAll, nil, nil},
		{"over budget", 2500, wantAll, []Digest{ds[0]}, nil},
		{"no budget", 0, wantAll, ds, nil},
		{"unwanted count but stay", 2500, func(d Digest) bool { return d != ds[0] }, []Digest{ds[1]}, []Digest{ds[0]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := p.PlanPlain(tc.budget, tc.wanted)
			if err != nil {
				t.Fatal(err)
			}
			var evict, unwanted []Digest
			for _, c := range plan.Evict {
				evict = append(evict, c.Digest)
			}
			for _, d := range ds {
				if plan.Unwanted[d] {
					unwanted = append(unwanted, d)
				}
			}
			if !slices.Equal(evict, tc.evict) || !slices.Equal(unwanted, tc.unwanted) {
				t.Errorf("evict %v unwanted %v, want %v %v", evict, unwanted, tc.evict, tc.unwanted)
			}
		})
	}

	old, err := p.TempFile("old-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	fresh, err := p.TempFile("fresh-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	fresh.Close()
	cutoff := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old.Name(), cutoff, cutoff); err != nil {
		t.Fatal(err)
	}
	temps, err := p.StaleTemps(cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if len(temps) != 1 || temps[0].Path != old.Name() {
		t.Fatalf("stale temps %+v, want only %s", temps, old.Name())
	}
	if err := p.RemoveTemp(p.Path(ds[0])); err == nil || !p.Has(ds[0]) {
		t.Fatalf("RemoveTemp of a blob: %v", err)
	}
	if err := p.RemoveTemp(temps[0].Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old.Name()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temp still there: %v", err)
	}
}

// TestBatch: a batch's blobs are in the pool only after Finish, never
// after Abort; a digest staged twice is stored (and counted) once; no
// temp file is left either way.
func TestBatch(t *testing.T) {
	p := newTestPool(t, Config{})
	content := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), 1000+i) }
	b := p.NewBatch()
	var total int64
	for _, i := range []int{1, 2, 1} {
		c := content(i)
		n, err := b.PutHashed(Sum(c), bytes.NewReader(c))
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if p.Has(Sum(content(1))) || p.Has(Sum(content(2))) {
		t.Fatal("a staged blob is in the pool before Finish")
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, i := range []int{1, 2} {
		n, err := p.StoredSize(Sum(content(i)))
		if err != nil {
			t.Fatalf("blob %d after Finish: %v", i, err)
		}
		stored += n
	}
	if total != stored {
		t.Errorf("the batch said %d bytes, the pool holds %d", total, stored)
	}
	b = p.NewBatch()
	c := content(3)
	if _, err := b.PutHashed(Sum(c), bytes.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	b.Abort()
	b.Abort()
	if p.Has(Sum(c)) {
		t.Error("an aborted blob is in the pool")
	}
	if temps, _ := filepath.Glob(filepath.Join(p.Dir(), "tmp", "*")); len(temps) != 0 {
		t.Errorf("temp files left: %v", temps)
	}
}
