package worker

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// sysrootTestPool is a blob pool holding the given contents.
func sysrootTestPool(t testing.TB, contents ...string) (*blob.Pool, map[string]blob.Digest) {
	t.Helper()
	pool, err := blob.Open(filepath.Join(t.TempDir(), "blobs"), blob.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ds := map[string]blob.Digest{}
	for _, c := range contents {
		d := blob.Sum([]byte(c))
		if _, err := pool.Put(d, strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		ds[c] = d
	}
	return pool, ds
}

// TestSysrootAssemble lays out a hostile package set: links out of the
// root, entries under links, a path that is a file in one package and a
// directory in another.
func TestSysrootAssemble(t *testing.T) {
	pool, ds := sysrootTestPool(t, "exe", "lib", "debug", "other")
	reg := func(p, c string) index.File {
		return index.File{Path: p, Mode: 0o755, Size: int64(len(c)), Blob: ds[c]}
	}
	link := func(p, target string) index.File {
		return index.File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: target}
	}
	nv := func(s string) index.NEVRA {
		n, err := index.ParseNEVRA(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pkgs := []*index.Package{
		{NEVRA: nv("b-1-1.x86_64"), Files: []index.File{
			reg("/usr/bin/b", "exe"),
			reg("/usr/bin/a", "other"), // a ships it too, and sorts first
			reg("/usr/share/x", "other"),
		}},
		{NEVRA: nv("a-1-1.x86_64"), Files: []index.File{
			reg("/usr/bin/a", "exe"),
			reg("/usr/lib64/liba.so.1.0", "lib"),
			link("/usr/lib64/liba.so.1", "liba.so.1.0"),
			link("/usr/lib64/abs.so", "/usr/lib64/liba.so.1.0"),
			link("/usr/lib64/escape", "../../../../../../etc/passwd"),
			link("/usr/lib64/tohost", "/etc"),
			reg("/usr/lib64/tohost/shadow", "other"), // below a link: never written through it
			reg("/usr/share/x/y", "other"),           // /usr/share/x is b's file: b's is skipped
			reg("/usr/lib/debug/usr/bin/a.debug", "debug"),
			{Path: "/usr/share/empty", Mode: fs.ModeDir | 0o755},
			reg("../escape", "other"),
		}},
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	pl := planSysroot(pkgs, nil)
	m, err := assembleSysroot(context.Background(), root, pl, pool, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("manifest: %+v", m)
	if !slices.Equal(m.Packages, []string{"a-1-1.x86_64", "b-1-1.x86_64"}) {
		t.Errorf("packages %v", m.Packages)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	for rel, want := range map[string]string{
		"usr/bin/a":                     "exe", // a's, not b's
		"usr/bin/b":                     "exe",
		"usr/lib64/liba.so.1":           "lib",
		"usr/lib64/abs.so":              "lib",
		"lib64/liba.so.1":               "lib", // merged /usr
		"usr/lib/debug/usr/bin/a.debug": "debug",
	} {
		if got := read(rel); got != want {
			t.Errorf("%s: %q, want %q", rel, got, want)
		}
	}
	for rel, want := range map[string]string{
		"usr/lib64/abs.so":    "liba.so.1.0",
		"usr/lib64/escape":    "../../etc/passwd",
		"usr/lib64/tohost":    "../../etc",
		"lib64":               "usr/lib64",
		"bin":                 "usr/bin",
		"usr/lib64/liba.so.1": "liba.so.1.0",
	} {
		if got, err := os.Readlink(filepath.Join(root, rel)); err != nil || got != want {
			t.Errorf("link %s -> %q (%v), want %q", rel, got, err, want)
		}
	}
	// Nothing leads out: every link resolves inside root or nowhere.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil // dangling inside root
		}
		if !strings.HasPrefix(target, root+"/") {
			t.Errorf("%s leads out to %s", p, target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/etc was created through a link: %v", err)
	}
	if st, err := os.Stat(filepath.Join(root, "usr/share/empty")); err != nil || !st.IsDir() {
		t.Errorf("directory entry: %v", err)
	}
	skipped := strings.Join(m.Skipped, "\n")
	for _, want := range []string{"/usr/lib64/tohost/shadow: below a symbolic link", "/usr/share/x: another package's directory", `"../escape": not a clean absolute path`} {
		if !strings.Contains(skipped, want) {
			t.Errorf("skipped list lacks %q:\n%s", want, skipped)
		}
	}
	// Files are hard links of the pool's plain copies, read-only.
	plain, err := pool.Plain(ds["lib"])
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(plain)
	b, err := os.Stat(filepath.Join(root, "usr/lib64/liba.so.1.0"))
	if err != nil || !os.SameFile(a, b) || b.Mode().Perm() != 0o444 {
		t.Errorf("not a read-only hard link of the plain copy: %v %v", err, b.Mode())
	}
	if m.Files != 5 || m.Copied != 0 || m.Bytes != int64(len("exe")*2+len("lib")+len("debug")+len("other")) || read("usr/share/x/y") != "other" {
		t.Errorf("manifest files %d copied %d bytes %d", m.Files, m.Copied, m.Bytes)
	}
}
