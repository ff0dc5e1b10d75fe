package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// twoVersions returns a real ELF file of this machine (the test binary's
// interpreter's neighbour, /bin/ls or the like) and a second version of
// it: a security update's worth of changes (a few patched spans and a
// grown tail), as consecutive builds of one library differ.
func twoVersions(t *testing.T) (old, new []byte) {
	t.Helper()
	var err error
	for _, p := range []string{"/usr/bin/ls", "/bin/ls", "/usr/bin/env"} {
		if old, err = os.ReadFile(p); err == nil && len(old) > 64<<10 {
			break
		}
	}
	if len(old) <= 64<<10 {
		t.Skip("no ELF binary of 64 KiB or more on this machine")
	}
	new = bytes.Clone(old)
	for i := 4096; i+64 < len(new); i += len(new) / 13 {
		for j := range 64 {
			new[i+j] ^= byte(j*7 + 1)
		}
	}
	new = append(new, old[1000:9000]...)
	return old, new
}

func putCompacted(t *testing.T, p *Pool, content []byte) Digest {
	t.Helper()
	d := Sum(content)
	if _, err := p.Put(d, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CompactWith(context.Background(), d, CompactOptions{Level: 3}); err != nil {
		t.Fatal(err)
	}
	return d
}

func readContent(p *Pool, d Digest) ([]byte, error) {
	rc, err := p.Open(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestDeltaCompact: a blob compacted on a base of the older version is a
// delta, several times smaller than it is whole, reads back byte for
// byte (Open and Plain), and says what its base is.
func TestDeltaCompact(t *testing.T) {
	p := newTestPool(t, Config{Codec: CodecS2})
	old, new := twoVersions(t)
	base := putCompacted(t, p, old)
	d := Sum(new)
	if _, err := p.Put(d, bytes.NewReader(new)); err != nil {
		t.Fatal(err)
	}
	whole, err := p.StoredSize(d)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.CompactWith(context.Background(), d, CompactOptions{Base: base, Size: int64(len(new))})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Delta || r.Base != base || r.Before != whole || r.After*4 > whole {
		t.Fatalf("CompactWith: %+v; want a delta on %s of at most a quarter of %d bytes", r, base, whole)
	}
	info, err := p.Info(d)
	if err != nil || !info.Delta || info.Base != base || !info.Compacted || info.Stored != r.After {
		t.Fatalf("Info: %+v, %v", info, err)
	}
	if st, err := p.Stat(d); err != nil || !st.Delta {
		t.Fatalf("Stat: %+v, %v", st, err)
	}
	got, err := readContent(p, d)
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("Open of the delta: %d bytes, %v; want the %d bytes written", len(got), err, len(new))
	}
	p.RemovePlain(base) // the read made it; Plain must make it again
	path, err := p.Plain(d)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, new) {
		t.Fatalf("Plain of the delta: %d bytes, %v", len(got), err)
	}
	// Compacted is final: a second compaction leaves it.
	if r2, err := p.CompactWith(context.Background(), d, CompactOptions{Base: base, Size: int64(len(new))}); err != nil || r2.After != r.After {
		t.Fatalf("second CompactWith: %+v, %v", r2, err)
	}
}

// TestDeltaChainRule: a delta is never made on a delta, nor on a fresh
// blob (which may still become one), nor when it does not pay.
func TestDeltaChainRule(t *testing.T) {
	old, new := twoVersions(t)
	third := append(bytes.Clone(new), "a third version"...)
	cases := []struct {
		name string
		base func(p *Pool) Digest
	}{
		{"base is a delta", func(p *Pool) Digest {
			b := putCompacted(t, p, old)
			d := Sum(new)
			p.Put(d, bytes.NewReader(new))
			if r, err := p.CompactWith(context.Background(), d, CompactOptions{Base: b, Size: int64(len(new))}); err != nil || !r.Delta {
				t.Fatalf("setting up the delta: %+v, %v", r, err)
			}
			return d
		}},
		{"base is fresh", func(p *Pool) Digest {
			d := Sum(new)
			p.Put(d, bytes.NewReader(new))
			return d
		}},
		{"base is unrelated", func(p *Pool) Digest {
			junk := make([]byte, len(old))
			for i := range junk {
				junk[i] = byte(i * 2654435761 >> 13)
			}
			return putCompacted(t, p, junk)
		}},
		{"base is missing", func(p *Pool) Digest { return Sum([]byte("nothing stored")) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPool(t, Config{Codec: CodecS2})
			base := c.base(p)
			d := Sum(third)
			if _, err := p.Put(d, bytes.NewReader(third)); err != nil {
				t.Fatal(err)
			}
			r, err := p.CompactWith(context.Background(), d, CompactOptions{Base: base, Size: int64(len(third))})
			if err != nil || r.Delta {
				t.Fatalf("CompactWith: %+v, %v; want it whole", r, err)
			}
			if got, err := readContent(p, d); err != nil || !bytes.Equal(got, third) {
				t.Fatalf("read back: %v", err)
			}
		})
	}
}

// TestDeltaCorruptBase: a delta whose base is damaged (its stored bytes,
// or its plain copy after it was made) reports ErrCorrupt and never
// yields wrong bytes as its content: Plain makes no copy, Open's reader
// fails before or at its end.
func TestDeltaCorruptBase(t *testing.T) {
	damage := map[string]func(t *testing.T, p *Pool, base Digest){
		"stored base": func(t *testing.T, p *Pool, base Digest) {
			p.RemovePlain(base)
			flip(t, p.Path(base), 0.5)
		},
		"plain copy of the base": func(t *testing.T, p *Pool, base Digest) {
			path, err := p.Plain(base)
			if err != nil {
				t.Fatal(err)
			}
			flip(t, path, 0.3)
		},
		"base replaced by a delta": func(t *testing.T, p *Pool, base Digest) {
			// What a broken tool might leave: the chain rule is checked
			// on read too.
			hdr := deltaHeader{base: base, baseSize: 10, size: 10}.marshal()
			writeOver(t, p.Path(base), append(hdr, 0, 0, 0, 0))
			p.RemovePlain(base)
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			p := newTestPool(t, Config{Codec: CodecS2})
			old, new := twoVersions(t)
			base := putCompacted(t, p, old)
			d := Sum(new)
			p.Put(d, bytes.NewReader(new))
			if r, err := p.CompactWith(context.Background(), d, CompactOptions{Base: base, Size: int64(len(new))}); err != nil || !r.Delta {
				t.Fatalf("CompactWith: %+v, %v", r, err)
			}
			p.RemovePlain(d)
			fn(t, p, base)
			if path, err := p.Plain(d); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Plain of a delta on a damaged base: %q, %v; want ErrCorrupt", path, err)
			}
			if _, err := os.Stat(filepath.Join(p.Dir(), "plain", d.String()[:2], d.String())); err == nil {
				t.Fatal("Plain left a copy of the delta")
			}
			got, err := readContent(p, d)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open and read: %d bytes, %v; want ErrCorrupt", len(got), err)
			}
		})
	}
}

// TestOpenChecksDigest: a whole blob whose stored frame decodes cleanly
// to other content (a blob renamed by hand, a bad copy) is ErrCorrupt at
// its end, not another file's bytes.
func TestOpenChecksDigest(t *testing.T) {
	p := newTestPool(t, Config{})
	a, b := []byte("first file content"), []byte("second file content")
	da, db := Sum(a), Sum(b)
	p.Put(da, bytes.NewReader(a))
	p.Put(db, bytes.NewReader(b))
	if err := os.Rename(p.Path(db), p.Path(da)); err != nil {
		t.Fatal(err)
	}
	if got, err := readContent(p, da); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read: %q, %v; want ErrCorrupt", got, err)
	}
	if path, err := p.Plain(da); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Plain: %q, %v; want ErrCorrupt", path, err)
	}
	if plains, _ := filepath.Glob(filepath.Join(p.Dir(), "plain", "*", "*")); len(plains) != 0 {
		t.Errorf("plain copies of a corrupt blob: %v", plains)
	}
}

// TestDeltaBaseKept: DeltaBase names the base, and nothing for a whole
// blob; the base's absence makes the delta unreadable, which is why gc
// asks.
func TestDeltaBaseKept(t *testing.T) {
	p := newTestPool(t, Config{Codec: CodecS2})
	old, new := twoVersions(t)
	base := putCompacted(t, p, old)
	d := Sum(new)
	p.Put(d, bytes.NewReader(new))
	if r, err := p.CompactWith(context.Background(), d, CompactOptions{Base: base, Size: int64(len(new))}); err != nil || !r.Delta {
		t.Fatalf("CompactWith: %+v, %v", r, err)
	}
	if b, ok, err := p.DeltaBase(d); err != nil || !ok || b != base {
		t.Fatalf("DeltaBase(delta) = %s, %v, %v", b, ok, err)
	}
	if _, ok, err := p.DeltaBase(base); err != nil || ok {
		t.Fatalf("DeltaBase(whole) = %v, %v", ok, err)
	}
	p.RemovePlain(base)
	p.Remove(base)
	if _, err := readContent(p, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read without the base: %v; want ErrNotFound", err)
	}
}

// flip inverts a byte at fraction at of the file's length.
func flip(t *testing.T, path string, at float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[int(float64(len(b))*at)] ^= 0xff
	writeOver(t, path, b)
}

func writeOver(t *testing.T, path string, b []byte) {
	t.Helper()
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o444)
}

func newTestPool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	cfg.NoSync = true
	p, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
