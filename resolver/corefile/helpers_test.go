package corefile

import (
	"encoding/hex"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// An unstripModule is one line of eu-unstrip -n --core:
// "START+SIZE BUILDID@ADDR FILE DEBUGFILE NAME".
type unstripModule struct {
	start, size uint64
	id          string // lower-case hex, "" for none
	addr        uint64 // address of the build-id, 0 if unknown
	file, name  string
}

func (u unstripModule) String() string {
	return fmt.Sprintf("%#x+%#x %s@%#x %s %s", u.start, u.size, u.id, u.addr, u.file, u.name)
}

// parseUnstrip parses eu-unstrip -n output.
func parseUnstrip(t testing.TB, out string) []unstripModule {
	t.Helper()
	var ms []unstripModule
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 5 {
			t.Fatalf("eu-unstrip line %q: %d fields, want 5", line, len(f))
		}
		start, size, ok := strings.Cut(f[0], "+")
		if !ok {
			t.Fatalf("eu-unstrip line %q: no range", line)
		}
		var u unstripModule
		var err error
		if u.start, err = strconv.ParseUint(start, 0, 64); err != nil {
			t.Fatalf("eu-unstrip line %q: %v", line, err)
		}
		if u.size, err = strconv.ParseUint(size, 0, 64); err != nil {
			t.Fatalf("eu-unstrip line %q: %v", line, err)
		}
		id, addr, _ := strings.Cut(f[1], "@")
		if id != "-" {
			u.id = id
		}
		if addr != "" {
			if u.addr, err = strconv.ParseUint(addr, 0, 64); err != nil {
				t.Fatalf("eu-unstrip line %q: %v", line, err)
			}
		}
		u.file, u.name = f[2], f[4]
		ms = append(ms, u)
	}
	return ms
}

// fromFixture converts the committed eu-unstrip modules of a fixture core.
func fromFixture(ms []fixtures.Module) []unstripModule {
	var us []unstripModule
	for _, m := range ms {
		us = append(us, unstripModule{start: m.Start, size: m.Size, id: m.BuildID, file: m.File, name: m.Name})
	}
	return us
}

// liveUnstrip runs eu-unstrip -n --core=core.
func liveUnstrip(t testing.TB, core string) []unstripModule {
	t.Helper()
	return parseUnstrip(t, fixtures.Run(t, "", fixtures.Tool(t, "eu-unstrip"), "-n", "--core="+core))
}

// pathAgrees reports whether our NT_FILE path names the same object as
// eu-unstrip's module name or file. eu-unstrip prefers what the link map
// or the disk says: a symlink to the library (/lib64/ld-linux-x86-64.so.2
// for /usr/lib64/ld-linux-x86-64.so.2 in a merged-/usr tree), or the
// soname (libcounter.so.1 for libcounter.so.1.0.0). So the names agree
// when they are equal, or when our base name equals theirs or extends it
// by a version suffix. Without NT_FILE we have no path and eu-unstrip
// names the module by its type.
func pathAgrees(ours string, theirs ...string) bool {
	for _, s := range theirs {
		if ours == "" && (s == "[exe]" || s == "[pie]" || s == "[dso]") {
			return true
		}
		if s == "." || s == "-" || s == "" {
			continue
		}
		if s == ours {
			return true
		}
		b, ob := path.Base(s), path.Base(ours)
		if ob == b || strings.HasPrefix(ob, b+".") {
			return true
		}
	}
	return false
}

// compareUnstrip checks that the modules of c with a build-id are those
// eu-unstrip listed with one: the same start address and build-id, as
// sets, with agreeing names, and eu-unstrip's build-id address inside
// the module.
func compareUnstrip(t *testing.T, c *Core, want []unstripModule) {
	t.Helper()
	got := make(map[uint64]Module)
	for _, m := range c.Modules {
		if m.BuildID != nil {
			if _, dup := got[m.Start]; dup {
				t.Errorf("two modules with a build-id at %#x", m.Start)
			}
			got[m.Start] = m
		}
	}
	seen := make(map[uint64]bool)
	for _, w := range want {
		if w.id == "" {
			continue
		}
		seen[w.start] = true
		m, ok := got[w.start]
		switch {
		case !ok:
			t.Errorf("eu-unstrip lists %v; we have no module with a build-id there", w)
		case hex.EncodeToString(m.BuildID) != w.id:
			t.Errorf("module at %#x: build-id %x, eu-unstrip says %s", w.start, m.BuildID, w.id)
		case !pathAgrees(m.Path, w.name, w.file):
			t.Errorf("module at %#x: path %q, eu-unstrip says name %q file %q", w.start, m.Path, w.name, w.file)
		case w.addr != 0 && (w.addr < m.Start || w.addr >= m.End):
			t.Errorf("module at %#x-%#x: eu-unstrip's build-id address %#x lies outside", m.Start, m.End, w.addr)
		}
	}
	var extra []string
	for start, m := range got {
		if !seen[start] {
			extra = append(extra, fmt.Sprintf("%#x %x %s", m.Start, m.BuildID, m.Path))
		}
	}
	sort.Strings(extra)
	for _, e := range extra {
		t.Errorf("module %s has a build-id eu-unstrip does not list", e)
	}
	if t.Failed() {
		t.Logf("ours:\n%s", dump(c))
		var b strings.Builder
		for _, w := range want {
			fmt.Fprintf(&b, "  %v\n", w)
		}
		t.Logf("eu-unstrip:\n%s", b.String())
	}
}

// dump formats the modules of c for failure messages.
func dump(c *Core) string {
	var b strings.Builder
	for _, m := range c.Modules {
		fmt.Fprintf(&b, "  %#x-%#x +%#x %x %s\n", m.Start, m.End, m.FileOffset, m.BuildID, m.Path)
	}
	return b.String()
}
