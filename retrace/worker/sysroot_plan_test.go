package worker

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

func TestSysrootPaths(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"/usr/bin/x", "usr/bin/x", true},
		{"/usr//bin/x", "", false},
		{"/usr/../etc/passwd", "", false},
		{"usr/bin/x", "", false},
		{"/", "", false},
		{"/usr/bin/", "", false},
		{"/usr/./bin", "", false},
		{"/a\x00b", "", false},
	} {
		got, ok := sysrootRel(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("sysrootRel(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		rel, target, want string
	}{
		// Fedora's .build-id links.
		{"usr/lib/debug/.build-id/6f/9ed0", "../../../../../usr/bin/crashme", "../../../../bin/crashme"},
		{"usr/lib64/libx.so.1", "libx.so.1.0.0", "libx.so.1.0.0"},
		// Absolute targets stay inside.
		{"usr/lib64/libx.so", "/usr/lib64/libx.so.1", "libx.so.1"},
		{"usr/lib64/evil", "/etc/shadow", "../../etc/shadow"},
		// ".." past the root stops at the root, as in a chroot.
		{"usr/evil", "../../../../../etc/shadow", "../etc/shadow"},
		{"lib64", "usr/lib64", "usr/lib64"},
	} {
		got, ok := sysrootLinkTarget(tc.rel, tc.target)
		if !ok || got != tc.want {
			t.Errorf("sysrootLinkTarget(%q, %q) = %q %v, want %q", tc.rel, tc.target, got, ok, tc.want)
		}
	}
	if _, ok := sysrootLinkTarget("usr/x", ""); ok {
		t.Error("empty link target accepted")
	}
}

// TestSysrootAutoLoad: a package's gdb auto-load script lands beside its
// object file and beside the soname link that leads to it, where GDB with
// "set sysroot" finds it; nothing a package ships is replaced.
func TestSysrootAutoLoad(t *testing.T) {
	var d blob.Digest
	d[0] = 1
	reg := func(p string) index.File { return index.File{Path: p, Mode: 0o644, Blob: d, Size: 1} }
	link := func(p, to string) index.File { return index.File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: to} }
	lib := &index.Package{NEVRA: index.NEVRA{Name: "tb-libs", Version: "2.0", Release: "1", Arch: "x86_64"}, Files: []index.File{
		reg("/usr/lib64/libtb.so.1.0.0"),
		link("/usr/lib64/libtb.so.1", "libtb.so.1.0.0"),
		reg("/usr/share/gdb/auto-load/usr/lib64/libtb.so.1.0.0-gdb.py"),
		// A script for a path through /lib64 (a link to usr/lib64).
		reg("/usr/share/gdb/auto-load/lib64/libother.so.2-gdb.py"),
		reg("/usr/lib64/libother.so.2"),
		// A package that ships the file beside its object already.
		reg("/usr/lib64/libown.so.3"),
		reg("/usr/lib64/libown.so.3-gdb.py"),
		reg("/usr/share/gdb/auto-load/usr/lib64/libown.so.3-gdb.py"),
	}}
	pl := planSysroot([]*index.Package{lib}, nil)
	got := map[string]string{}
	for _, l := range pl.links {
		got[l.rel] = l.target
	}
	want := map[string]string{
		"usr/lib64/libtb.so.1.0.0-gdb.py": "../share/gdb/auto-load/usr/lib64/libtb.so.1.0.0-gdb.py",
		"usr/lib64/libtb.so.1-gdb.py":     "../share/gdb/auto-load/usr/lib64/libtb.so.1.0.0-gdb.py",
		"usr/lib64/libother.so.2-gdb.py":  "../share/gdb/auto-load/lib64/libother.so.2-gdb.py",
	}
	for rel, target := range want {
		if got[rel] != target {
			t.Errorf("link %s -> %q, want %q", rel, got[rel], target)
		}
	}
	if _, ok := got["usr/lib64/libown.so.3-gdb.py"]; ok {
		t.Error("a shipped file was replaced by a link")
	}
	for rel := range got {
		if strings.HasPrefix(rel, "usr/share/gdb/") {
			t.Errorf("link %s inside the auto-load directory", rel)
		}
	}
}

// TestSysrootAliases: an object the core names at another path than its
// package's gets a link there, placed through the sysroot's own links
// (lib -> usr/lib), never over a file a package ships.
func TestSysrootAliases(t *testing.T) {
	var d blob.Digest
	d[0] = 1
	glibc := &index.Package{NEVRA: index.NEVRA{Name: "glibc", Version: "2.36", Release: "1", Arch: "x86_64"}, Files: []index.File{
		{Path: "/usr/lib64/libc.so.6", Mode: 0o755, Blob: d, Size: 1},
		{Path: "/usr/lib64/libm.so.6", Mode: 0o755, Blob: d, Size: 1},
	}}
	pl := planSysroot([]*index.Package{glibc}, map[string]string{
		"/lib/x86_64-linux-gnu/libc.so.6": "/usr/lib64/libc.so.6",
		"/usr/lib64/libm.so.6":            "/usr/lib64/libc.so.6", // shipped: kept
		"relative/path":                   "/usr/lib64/libc.so.6",
	})
	got := map[string]string{}
	for _, l := range pl.links {
		got[l.rel] = l.target
	}
	if got["usr/lib/x86_64-linux-gnu/libc.so.6"] != "../../lib64/libc.so.6" {
		t.Errorf("alias link: %v", got)
	}
	if _, ok := got["lib/x86_64-linux-gnu/libc.so.6"]; ok {
		t.Error("alias placed under the lib link instead of through it")
	}
	if _, ok := got["usr/lib64/libm.so.6"]; ok {
		t.Error("alias replaced a shipped file")
	}
	if len(pl.skipped) != 1 || !strings.Contains(pl.skipped[0], "relative/path") {
		t.Errorf("skipped %v", pl.skipped)
	}
}
