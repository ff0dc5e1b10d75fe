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
			if rep.CrashPackage != c.NEVRA {
				t.Errorf("crash package %q, want %q", rep.CrashPackage, c.NEVRA)
			}
			if strings.Join(rep.Packages, " ") != c.NEVRA || strings.Join(rep.DebuginfoPackages, " ") != dbg.String() {
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
	if strings.Join(rep.Packages, " ") != "app-1.0-1.x86_64" || rep.CrashPackage != "app-1.0-1.x86_64" {
		t.Fatalf("report %+v: the library should come from the executable's release", rep)
	}
	if strings.Join(rep.DebuginfoPackages, " ") != "app-debuginfo-1.0-1.x86_64" {
		t.Fatalf("debuginfo %v", rep.DebuginfoPackages)
	}
	// Alone, the library resolves to the newest build.
	rep, err = CoreToPackages(idx, "/usr/bin/other", []Object{{Path: "/usr/lib64/libapp.so.1", BuildID: lib}})
	if err != nil || strings.Join(rep.Packages, " ") != "app-1.0-2.x86_64" || rep.CrashPackage != "" {
		t.Fatalf("lone library: %+v %v", rep, err)
	}
}
