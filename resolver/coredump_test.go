package resolver

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/index"
)

// TestCoreToPackagesFixtures feeds each fixture core's module list, as
// eu-unstrip printed it, through CoreToPackages.
func TestCoreToPackagesFixtures(t *testing.T) {
	idx, _ := newFixtureStore(t)
	for _, c := range fixtures.Cores(t) {
		t.Run(c.File, func(t *testing.T) {
			var objs []Object
			unknown := 0
			for _, m := range c.Modules {
				id, err := index.ParseBuildID(m.BuildID)
				if err != nil {
					continue
				}
				path := m.Name
				if m.File != "." && m.File != "-" {
					path = m.File
				}
				objs = append(objs, Object{Path: path, BuildID: id})
				if !strings.Contains(m.Name, filepath.Base(c.Executable)) && !strings.HasPrefix(m.Name, "lib"+filepath.Base(c.Executable)) {
					unknown++ // libc, ld.so, vdso: not in the fixture mirror
				}
			}
			rep, err := CoreToPackages(idx, c.Executable, objs)
			if err != nil {
				t.Fatal(err)
			}
			n, err := index.ParseNEVRA(c.NEVRA)
			if err != nil {
				t.Fatal(err)
			}
			dbg := n
			dbg.Name += "-debuginfo"
			if crashOf(rep) != c.NEVRA {
				t.Errorf("crash package %q, want %q", crashOf(rep), c.NEVRA)
			}
			if joinNEVRAs(rep.Packages) != c.NEVRA || joinNEVRAs(rep.DebuginfoPackages) != dbg.String() {
				t.Errorf("packages %v + %v, want [%s] + [%s]", rep.Packages, rep.DebuginfoPackages, c.NEVRA, dbg)
			}
			if len(rep.Unresolved) != unknown {
				t.Errorf("unresolved %v, want %d entries", rep.Unresolved, unknown)
			}
			var out bytes.Buffer
			if err := rep.WriteText(&out); err != nil {
				t.Fatal(err)
			}
			sections := strings.Split(out.String(), "\n\n")
			if len(sections) != 3 || sections[0] != c.NEVRA || sections[1] != strings.Join([]string{c.NEVRA, dbg.String()}, "\n") {
				t.Errorf("text output:\n%s", out.String())
			}
		})
	}
}

// TestCoreToPackagesPicksAgreedVersion: a library identical in two
// releases resolves to the release the executable comes from.
func TestCoreToPackagesPicksAgreedVersion(t *testing.T) {
	idx := fixturestore.Empty(t).Index
	exe, _ := index.ParseBuildID("aa01")
	lib, _ := index.ParseBuildID("bb02")
	put := func(nevra string, files ...index.File) {
		n, err := index.ParseNEVRA(nevra)
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.PutPackage(&index.Package{NEVRA: n, Sources: []string{"s"}, Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	put("app-1.0-1.x86_64", index.File{Path: "/usr/bin/app", BuildID: exe, Kind: index.KindExecutable},
		index.File{Path: "/usr/lib64/libapp.so.1", BuildID: lib, Kind: index.KindExecutable})
	put("app-1.0-2.x86_64", index.File{Path: "/usr/lib64/libapp.so.1", BuildID: lib, Kind: index.KindExecutable})
	put("app-debuginfo-1.0-1.x86_64", index.File{Path: "/usr/lib/debug/usr/bin/app.debug", BuildID: exe, Kind: index.KindDebuginfo})
	rep, err := CoreToPackages(idx, "/usr/bin/app", []Object{{Path: "/usr/bin/app", BuildID: exe}, {Path: "/usr/lib64/libapp.so.1", BuildID: lib}})
	if err != nil {
		t.Fatal(err)
	}
	if joinNEVRAs(rep.Packages) != "app-1.0-1.x86_64" || crashOf(rep) != "app-1.0-1.x86_64" {
		t.Fatalf("report %+v: the library should come from the executable's release", rep)
	}
	if joinNEVRAs(rep.DebuginfoPackages) != "app-debuginfo-1.0-1.x86_64" {
		t.Fatalf("debuginfo %v", rep.DebuginfoPackages)
	}
	// Alone, the library resolves to the newest build.
	rep, err = CoreToPackages(idx, "/usr/bin/other", []Object{{Path: "/usr/lib64/libapp.so.1", BuildID: lib}})
	if err != nil || joinNEVRAs(rep.Packages) != "app-1.0-2.x86_64" || crashOf(rep) != "" {
		t.Fatalf("lone library: %+v %v", rep, err)
	}
}

// TestCoreToPackagesMultifile: with _debuginfo_subpackages, a library's
// debug file sits in tb-libs-debuginfo but points (.gnu_debugaltlink) at
// the dwz multifile that only tb-debuginfo ships: that package joins the
// set although no object of the core is in it, the one of the same build
// when several builds ship the multifile's build-id. A multifile the
// index lacks is reported.
func TestCoreToPackagesMultifile(t *testing.T) {
	idx := fixturestore.Empty(t).Index
	id := func(s string) index.BuildID {
		b, err := index.ParseBuildID(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	exe, lib, multi, lost, other := id("aa01"), id("bb02"), id("cc03"), id("dd04"), id("ee05")
	put := func(nevra string, files ...index.File) {
		n, err := index.ParseNEVRA(nevra)
		if err != nil {
			t.Fatal(err)
		}
		if err := idx.PutPackage(&index.Package{NEVRA: n, Sources: []string{"s"}, Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	put("tb-extra-2.0-1.x86_64", index.File{Path: "/usr/bin/tb-extra", BuildID: exe, Kind: index.KindExecutable})
	put("tb-libs-2.0-1.x86_64", index.File{Path: "/usr/lib64/libtb.so.1.0.0", BuildID: lib, Kind: index.KindExecutable})
	put("tb-extra-debuginfo-2.0-1.x86_64", index.File{Path: "/usr/lib/debug/usr/bin/tb-extra-2.0-1.x86_64.debug", BuildID: exe, Kind: index.KindDebuginfo, AltLink: multi})
	put("tb-libs-debuginfo-2.0-1.x86_64", index.File{Path: "/usr/lib/debug/usr/lib64/libtb.so.1.0.0-2.0-1.x86_64.debug", BuildID: lib, Kind: index.KindDebuginfo, AltLink: multi})
	put("tb-debuginfo-2.0-1.x86_64", index.File{Path: "/usr/lib/debug/.dwz/tb-2.0-1.x86_64", BuildID: multi, Kind: index.KindDebuginfo})
	// A later build whose multifile came out byte-identical.
	put("tb-debuginfo-2.0-2.x86_64", index.File{Path: "/usr/lib/debug/.dwz/tb-2.0-2.x86_64", BuildID: multi, Kind: index.KindDebuginfo})

	rep, err := CoreToPackages(idx, "/usr/bin/tb-extra", []Object{{Path: "/usr/bin/tb-extra", BuildID: exe}, {Path: "/usr/lib64/libtb.so.1", BuildID: lib}})
	if err != nil {
		t.Fatal(err)
	}
	want := "tb-debuginfo-2.0-1.x86_64 tb-extra-debuginfo-2.0-1.x86_64 tb-libs-debuginfo-2.0-1.x86_64"
	if got := joinNEVRAs(rep.DebuginfoPackages); got != want {
		t.Errorf("debuginfo %s, want %s", got, want)
	}
	if len(rep.UnresolvedAltLinks) != 0 {
		t.Errorf("unresolved altlinks %v", rep.UnresolvedAltLinks)
	}

	put("lost-1-1.x86_64", index.File{Path: "/usr/bin/lost", BuildID: other, Kind: index.KindExecutable})
	put("lost-debuginfo-1-1.x86_64", index.File{Path: "/usr/lib/debug/usr/bin/lost.debug", BuildID: other, Kind: index.KindDebuginfo, AltLink: lost})
	rep, err = CoreToPackages(idx, "/usr/bin/lost", []Object{{Path: "/usr/bin/lost", BuildID: other}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.UnresolvedAltLinks) != 1 || rep.UnresolvedAltLinks[0] != (Unresolved{BuildID: "dd04", Path: "/usr/lib/debug/usr/bin/lost.debug"}) {
		t.Errorf("unresolved altlinks %+v, want the lost multifile", rep.UnresolvedAltLinks)
	}
}
