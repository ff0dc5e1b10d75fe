package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// TestRPMSpec: packaging/retraced.spec builds retraced from this tree
// with rpmbuild; the RPM installs into a scratch root (without its
// scriptlets, which would need a shell inside it), where the installed
// binary runs and the unit, sysusers and tmpfiles files, the config, the
// man pages generated from the CLI and the shell completions are in
// place.
func TestRPMSpec(t *testing.T) {
	if testing.Short() {
		t.Skip("builds retraced twice with rpmbuild")
	}
	fixtures.RequireTools(t, "rpmbuild", "rpm", "tar", "go")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	top := t.TempDir()
	const version = "0.1.0"
	for _, d := range []string{"SOURCES", "SPECS", "BUILD", "RPMS", "SRPMS", "BUILDROOT"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(top, "SOURCES", "retraced-"+version+".tar.gz")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("tar", "-C", root, "--exclude=./.git", "--exclude=./artifacts", "--exclude=./bin",
		"--transform", "s,^\\.,retraced-"+version+",", "-czf", tarball, ".")
	run("rpmbuild", "-bb", "--nodeps", "--define", "_topdir "+top, filepath.Join(root, "packaging", "retraced.spec"))
	rpms, _ := filepath.Glob(filepath.Join(top, "RPMS", "*", "retraced-"+version+"-*.rpm"))
	if len(rpms) != 1 {
		t.Fatalf("rpmbuild made %v, want one retraced RPM", rpms)
	}

	scratch := t.TempDir()
	run("rpm", "--root", scratch, "--initdb")
	run("rpm", "--root", scratch, "-i", "--nodeps", "--noscripts", rpms[0])
	out := run(filepath.Join(scratch, "usr", "bin", "retraced"), "version")
	if !strings.Contains(out, "retraced") {
		t.Errorf("installed retraced version printed %q", out)
	}
	run(filepath.Join(scratch, "usr", "bin", "retrace-client"), "--help")
	for _, pattern := range []string{
		"usr/lib/systemd/system/retraced.service",
		"usr/lib/sysusers.d/retraced.conf",
		"usr/lib/tmpfiles.d/retraced.conf",
		"etc/retraced/retraced.toml",
		"usr/share/man/man1/retraced.1*",
		"usr/share/man/man1/retraced-serve.1*",
		"usr/share/man/man1/retraced-mirror-add.1*",
		"usr/share/bash-completion/completions/retraced",
		"usr/share/zsh/site-functions/_retraced",
		"var/lib/retraced",
	} {
		if m, _ := filepath.Glob(filepath.Join(scratch, pattern)); len(m) == 0 {
			t.Errorf("the installed RPM lacks %s", pattern)
		}
	}
	if b, err := os.ReadFile(filepath.Join(scratch, "usr/share/bash-completion/completions/retraced")); err != nil || !strings.Contains(string(b), "__start_retraced") {
		t.Errorf("bash completion: %v\n%.200s", err, b)
	}
	unit, err := os.ReadFile(filepath.Join(scratch, "usr/lib/systemd/system/retraced.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/bin/retraced --config /etc/retraced/retraced.toml serve") {
		t.Errorf("unit: %v\n%s", err, unit)
	}
}
