package mirror

import (
	"testing"

	"github.com/retraced/retraced/mirror/rpmfile"
)

// TestPolicy applies the keep policy to header entries as rpmbuild
// classifies them (libmagic strings as rpm 4.18 writes them).
func TestPolicy(t *testing.T) {
	p, err := NewPolicy(nil, DefaultDrop)
	if err != nil {
		t.Fatal(err)
	}
	const reg, lnk = rpmfile.ModeRegular | 0o755, rpmfile.ModeSymlink | 0o777
	files := []rpmfile.Entry{
		{Path: "/usr/bin/mount", Mode: reg | 0o4000, Size: 60000, Class: "setuid ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), dynamically linked"},
		{Path: "/usr/bin/ssh-agent", Mode: reg | 0o2000, Size: 60000, Class: "setgid ELF 64-bit LSB pie executable, x86-64"},
		{Path: "/usr/bin/su", Mode: reg | 0o6000, Size: 60000, Class: "setuid, setgid ELF 64-bit LSB pie executable, x86-64"},
		{Path: "/usr/lib64/libx.so.1.0", Mode: reg, Size: 9000, Class: "ELF 64-bit LSB shared object, x86-64"},
		{Path: "/usr/bin/script.sh", Mode: reg, Size: 900, Class: "POSIX shell script, ASCII text executable"},
		{Path: "/usr/share/doc/x/README", Mode: reg, Size: 900, Class: "ASCII text"},
		{Path: "/usr/share/man/man1/x.1.gz", Mode: reg, Size: 900, Class: "gzip compressed data"},
		{Path: "/usr/share/locale/de/LC_MESSAGES/x.mo", Mode: reg, Size: 900, Class: "GNU message catalog"},
		{Path: "/usr/share/doc/x/weird-elf", Mode: reg, Size: 9000, Class: "ELF 64-bit LSB executable"},
		{Path: "/usr/lib/debug/usr/bin/x.debug", Mode: reg, Size: 9000, Class: "ELF 64-bit LSB shared object, with debug_info"},
		{Path: "/usr/src/debug/x-1-1.x86_64/x.c", Mode: reg, Size: 900, Class: "C source, ASCII text"},
		{Path: "/usr/share/gdb/auto-load/usr/lib64/libx.so.1.0-gdb.py", Mode: reg, Size: 900, Class: "Python script"},
		{Path: "/usr/share/gcc-14/python/libstdcxx/v6/printers.py", Mode: reg, Size: 90000, Class: "Python script, ASCII text executable"},
		{Path: "/usr/share/gcc/python/libstdcxx/__init__.py", Mode: reg, Size: 1, Class: "ASCII text"},
		{Path: "/usr/share/gcc-14/README", Mode: reg, Size: 900, Class: "ASCII text"},
		{Path: "/usr/lib64/libghost.so", Mode: reg, Size: 9000, Class: "ELF 64-bit", Flags: rpmfile.FlagGhost},
		{Path: "/usr/lib64/libx.so.1", Mode: lnk, Link: "libx.so.1.0"},
		{Path: "/usr/share/doc/x/link", Mode: lnk, Link: "README"},
	}
	pl := p.plan(files)
	want := map[string]verdict{
		"/usr/bin/mount": probe, "/usr/bin/ssh-agent": probe, "/usr/bin/su": probe, "/usr/lib64/libx.so.1.0": probe,
		"/usr/lib/debug/usr/bin/x.debug": keep, "/usr/src/debug/x-1-1.x86_64/x.c": keep,
		"/usr/share/gdb/auto-load/usr/lib64/libx.so.1.0-gdb.py": keep,
		"/usr/share/gcc-14/python/libstdcxx/v6/printers.py":     keep, "/usr/share/gcc/python/libstdcxx/__init__.py": keep,
	}
	if len(pl.regular) != len(want) {
		t.Errorf("plan keeps %v, want %v", pl.regular, want)
	}
	for path, v := range want {
		if pl.regular[path] != v {
			t.Errorf("%s: verdict %d, want %d", path, pl.regular[path], v)
		}
	}
	links := p.keptLinks(pl, map[string]bool{"/usr/lib64/libx.so.1.0": true})
	if len(links) != 1 || links[0].Path != "/usr/lib64/libx.so.1" {
		t.Errorf("kept links %v, want only /usr/lib64/libx.so.1", links)
	}
}

func TestGlobs(t *testing.T) {
	tests := []struct {
		glob, path string
		want       bool
	}{
		{"/usr/share/doc/**", "/usr/share/doc/x/README", true},
		{"/usr/share/doc/**", "/usr/share/doc", false},
		{"/usr/share/doc/**", "/usr/share/docs/x", false},
		{"/opt/*/lib/**", "/opt/app/lib/libx.so", true},
		{"/opt/*/lib/**", "/opt/app/bin/x", false},
		{"/usr/lib64/*.a", "/usr/lib64/libx.a", true},
	}
	for _, tt := range tests {
		if got := matchGlob(tt.glob, tt.path); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.glob, tt.path, got, tt.want)
		}
	}
	if _, err := NewPolicy([]string{"relative/**"}, nil); err == nil {
		t.Error("a relative glob was accepted")
	}
}
