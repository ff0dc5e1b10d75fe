package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// The pretty-printer that toolbox-libs ships for libtoolbox, as the
// fixture's sources hold it (the file the package installs under
// /usr/share/gdb/auto-load).
const toolboxPrinter = "src/toolbox/libtoolbox.so.1.0.0-gdb.py"

// TestDistCoresMatchDebuginfod retraces each core of the Fedora-style
// fixture repository (repo-dist: dwz multifiles, per-subpackage debuginfo,
// MiniDebugInfo, LTO, a C++ program, glibc and libstdc++ as packages)
// as a task of serve, and compares the crashing thread's `bt full` —
// frames, file:line, arguments and locals — with what gdb prints for the
// same core with DEBUGINFOD_URLS at the same server (a fresh client
// cache), and with the reference that fixtures/build.sh made with gdb
// in the crashed system's root. On the crashed machine the
// pretty-printers of libtoolbox and libstdc++ are installed, so the gdb
// run loads them as well; the task must print what they print. It also checks that
// coredump2packages names the main toolbox-debuginfo, which ships only
// the dwz multifile, for the subpackage's crash.
func TestDistCoresMatchDebuginfod(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	cfg := testConfig(t)
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "dist", fixtures.Path("repo-dist")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "fx", fixtures.Path("repo")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, stderr)
	}
	url := startServe(t, cfg)
	printer := fixtures.Path(toolboxPrinter)
	if _, err := os.Stat(printer); err != nil {
		t.Fatal(err)
	}
	printers := []string{"source " + printer, libstdcxxPrinters(t)}
	printed := false
	for _, c := range slices.Concat(fixtures.DistCores(t), fixtures.Cores(t)) {
		t.Run(c.File, func(t *testing.T) {
			core := fixtures.CoreFile(t, c.File)
			task := createTask(t, url, crashTarball(t, core, map[string]string{"executable": c.Executable}))
			status, step, logText, bt := task.finish(t)
			if status != "FINISHED_SUCCESS" {
				t.Fatalf("task: %s\n%s\n%s", status, step, logText)
			}
			if !regexp.MustCompile(`(?m)^Backtrace rating: [0-4]/4 `).MatchString(step) {
				t.Errorf("status body has no rating:\n%s", step)
			}
			if strings.Contains(logText, "could not find '.gnu_debugaltlink'") || strings.Contains(logText, "unresolved: dwz multifile") {
				t.Errorf("gdb lacked a dwz multifile:\n%s", logText)
			}
			got := crashingThread(t, bt)

			plain := debuginfodGDB(t, url, core)
			withPrinter := debuginfodGDB(t, url, core, printers...)
			if !slices.Equal(got, withPrinter) {
				t.Errorf("the task's crashing thread differs from gdb with DEBUGINFOD_URLS:\n%s", diffLines(withPrinter, got))
			}
			if !slices.Equal(plain, withPrinter) {
				printed = true
			}
			// thrower's locals are libstdc++ strings and vectors, which
			// the task prints through libstdc++'s printers, from the
			// package's auto-load script and modules.
			if strings.HasPrefix(c.File, "thrower-") {
				for _, want := range []string{`what = "job broken: negative step -8"`, "__for_range = std::vector of length 3, capacity 3 = {7, -8, 9}"} {
					if !slices.Contains(got, want) {
						t.Errorf("the task's crashing thread lacks %q, libstdc++'s printers' output:\n%s", want, strings.Join(got, "\n"))
					}
				}
			}
			// The cores of repo-dist have build.sh's bt full beside them.
			ref, err := os.ReadFile(fixtures.Path("cores", strings.TrimSuffix(c.File, ".core.zst")+".btfull.txt"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if want := normalizeFrames(strings.Split(string(ref), "\n")); err == nil && !slices.Equal(got, want) {
				t.Errorf("the task's crashing thread differs from gdb in the crashed system's root (%s.btfull.txt):\n%s",
					strings.TrimSuffix(c.File, ".core.zst"), diffLines(want, got))
			}
			frames, named := 0, 0
			for _, l := range got {
				if strings.HasPrefix(l, "#") {
					frames++
					if !strings.Contains(l, "?? (") {
						named++
					}
				}
			}
			t.Logf("%s: %d frames, %d named, %d lines of frames and locals equal in the task and gdb+debuginfod; %s",
				c.File, frames, named, len(got), strings.SplitN(step, "\n", 3)[1])

			if strings.HasPrefix(c.File, "toolbox-extra") {
				var rep struct {
					DebuginfoPackages []string `json:"debuginfo_packages"`
				}
				f, err := os.Open(core)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				resp, err := http.Post(url+"/api/v1/coredump2packages", "application/octet-stream", f)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(rep.DebuginfoPackages, func(p string) bool { return strings.HasPrefix(p, "toolbox-debuginfo-") }) {
					t.Errorf("coredump2packages lists %v: no toolbox-debuginfo, which ships the dwz multifile", rep.DebuginfoPackages)
				}
			}
		})
	}
	if !printed {
		t.Error("the pretty-printer changed no core's output: the test does not test it")
	}
}

// libstdcxxPrinters returns the gdb command that registers libstdc++'s
// pretty-printers from the fixture's libstdc++ package, as its
// auto-load script does on the crashed machine: the package's payload is
// unpacked (rpm2cpio, cpio) and its Python modules put on gdb's path.
func libstdcxxPrinters(t *testing.T) string {
	t.Helper()
	fixtures.RequireTools(t, "rpm2cpio", "cpio")
	rpms, err := filepath.Glob(fixtures.Path("repo-dist", "Packages", "libstdc++-[0-9]*.rpm"))
	if err != nil || len(rpms) != 1 {
		t.Fatalf("repo-dist's libstdc++ package: %v %v", rpms, err)
	}
	root := t.TempDir()
	cmd := exec.Command("sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet --no-absolute-filenames`, "sh", rpms[0])
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", rpms[0], err, out)
	}
	dir := filepath.Join(root, "usr", "share", "gcc", "python")
	if _, err := os.Stat(filepath.Join(dir, "libstdcxx", "v6", "printers.py")); err != nil {
		t.Fatalf("the libstdc++ package ships no printers: %v", err)
	}
	return "python import sys; sys.path.insert(0, '" + dir + "'); from libstdcxx.v6 import register_libstdcxx_printers; register_libstdcxx_printers(None)"
}

// debuginfodGDB is gdb on the core alone, fetching everything from url
// by build-id, after the given commands (those that load pretty-printers);
// it returns the crashing thread's normalized frames and locals.
func debuginfodGDB(t *testing.T, url, core string, printers ...string) []string {
	t.Helper()
	home := t.TempDir()
	// Only what the server has: not the debug files this machine has
	// installed (its libc's, under /usr/lib/debug).
	args := []string{"-batch", "-nx", "-iex", "set debuginfod enabled on", "-iex", "set debuginfod urls " + url,
		"-iex", "set debug-file-directory " + filepath.Join(home, "no-debug"),
		"-iex", "set width 0", "-iex", "set height 0", "-c", core}
	for _, p := range printers {
		args = append(args, "-ex", p)
	}
	args = append(args, "-ex", "echo --bt--\\n", "-ex", "bt full")
	cmd := exec.Command("gdb", args...)
	cmd.Env = []string{"HOME=" + home, "DEBUGINFOD_URLS=" + url, "DEBUGINFOD_CACHE_PATH=" + filepath.Join(home, "cache"), "PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gdb with debuginfod: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "--bt--\n")
	if !ok {
		t.Fatalf("gdb printed no backtrace:\n%s", out)
	}
	return normalizeFrames(strings.Split(after, "\n"))
}

// crashingThread takes, from the task's "thread apply all backtrace
// full", the thread gdb made current on loading the core.
func crashingThread(t *testing.T, bt string) []string {
	t.Helper()
	cur := "1"
	if m := regexp.MustCompile(`(?m)^\[Current thread is (\d+) `).FindStringSubmatch(bt); m != nil {
		cur = m[1]
	}
	lines := strings.Split(bt, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Thread "+cur+" ") {
			return normalizeFrames(lines[i+1:])
		}
	}
	t.Fatalf("no Thread %s in the backtrace:\n%s", cur, bt)
	return nil
}

var frameLineRE = regexp.MustCompile(`^#(\d+)\s+(?:0x[0-9a-f]+ in )?(.*?)(?: from \S+)?$`)

// normalizeFrames keeps the frames and their locals, up to the first
// blank line or other output, without what depends on where gdb found the files: the
// frame's pc prefix ("0x... in", the same in both but absent for frame 0
// with debuginfo) and "from PATH" of frames without debuginfo.
func normalizeFrames(lines []string) []string {
	var out []string
	started := false
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			if started {
				break
			}
			continue
		}
		if m := frameLineRE.FindStringSubmatch(l); m != nil {
			started = true
			out = append(out, "#"+m[1]+" "+m[2])
			continue
		}
		if !started {
			continue
		}
		if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "No ") {
			break // the next command's output
		}
		out = append(out, strings.TrimSpace(l))
	}
	return out
}

// diffLines shows want and got side by side where they differ.
func diffLines(want, got []string) string {
	var b strings.Builder
	for i := range max(len(want), len(got)) {
		w, g := "", ""
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		mark := "  "
		if w != g {
			mark = "! "
		}
		b.WriteString(mark + "want: " + w + "\n" + mark + "got:  " + g + "\n")
	}
	return b.String()
}

// distCore returns repo-dist's core whose file name starts with prefix,
// decompressed.
func distCore(t *testing.T, prefix string) (fixtures.Core, string) {
	t.Helper()
	for _, c := range fixtures.DistCores(t) {
		if strings.HasPrefix(c.File, prefix) {
			return c, fixtures.CoreFile(t, c.File)
		}
	}
	t.Fatalf("no core %s* in cores-dist.txt", prefix)
	return fixtures.Core{}, ""
}

// multifileOf returns, from the fixture's reference lists (eu-unstrip's
// modules of the core, eu-readelf's build-ids and .gnu_debugaltlink
// sections), the dwz multifile that the .debug files of c's objects
// point at: its build-id, the package that ships it, and those .debug
// files' paths.
func multifileOf(t *testing.T, c fixtures.Core) (altID, nevra string, debugPaths []string) {
	t.Helper()
	inCore := make(map[string]bool)
	for _, m := range c.Modules {
		inCore[m.BuildID] = true
	}
	for _, l := range fixtures.AltLinks(t) {
		if inCore[l.BuildID] {
			if altID != "" && l.AltBuildID != altID {
				t.Fatalf("%s's objects point at two multifiles", c.File)
			}
			altID = l.AltBuildID
			debugPaths = append(debugPaths, l.Path)
		}
	}
	for _, f := range fixtures.DistELFFiles(t) {
		if f.BuildID == altID && f.Kind == "debuginfo" {
			nevra = f.NEVRA
		}
	}
	if altID == "" || nevra == "" {
		t.Fatalf("the reference lists give %s no dwz multifile: the test tests nothing", c.File)
	}
	return altID, nevra, debugPaths
}

// missingMultifileRE matches the line that names the multifile altID as
// missing, after prefix ("Missing: " in the status body, "missing from
// the mirror: " in the log), for any of the .debug files that point at
// it.
func missingMultifileRE(prefix, altID string, debugPaths []string) *regexp.Regexp {
	var alts []string
	for _, p := range debugPaths {
		alts = append(alts, regexp.QuoteMeta(p))
	}
	return regexp.MustCompile(regexp.QuoteMeta(prefix) + `(?:` + strings.Join(alts, "|") + `)'s dwz multifile ` + altID + `\b`)
}

// TestDistMissingMultifile is the issue's own case, on the real worker
// and gdb: a mirror of repo-dist without the main toolbox-debuginfo
// package, the only one that ships the dwz multifile, and a crash of the
// subpackage toolbox-extra. gdb drops every symbol of the objects whose
// .debug files point at the multifile ("could not find
// '.gnu_debugaltlink' file"), so no frame is named: the task ends
// FINISHED_FAILURE, its status body and log give the rating (0/4: none
// of the crashing thread's frames has a function name) and name the
// missing multifile by build-id with the .debug file that needs it, and
// the backtrace is still served.
func TestDistMissingMultifile(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	c, core := distCore(t, "toolbox-extra-")
	altID, shipper, debugPaths := multifileOf(t, c)
	cfg := testConfig(t)
	exclude := "/" + regexp.QuoteMeta(shipper) + `\.rpm$`
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "dist", fixtures.Path("repo-dist"), "--exclude", exclude); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, stderr)
	}
	// coredump2packages cannot list what the mirror lacks: its --json
	// names the multifile among unresolved_altlinks (the text output's
	// third section is the core's own objects only).
	out, _, err := run(t, "--data", cfg.Data, "coredump2packages", "--json", core)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		DebuginfoPackages  []string `json:"debuginfo_packages"`
		UnresolvedAltlinks []struct {
			BuildID string `json:"build_id"`
			Path    string `json:"path"`
		} `json:"unresolved_altlinks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if slices.Contains(rep.DebuginfoPackages, shipper) || len(rep.UnresolvedAltlinks) == 0 ||
		rep.UnresolvedAltlinks[0].BuildID != altID || !slices.Contains(debugPaths, rep.UnresolvedAltlinks[0].Path) {
		t.Errorf("coredump2packages without %s:\n%s", shipper, out)
	}

	url := startServe(t, cfg)
	task := createTask(t, url, crashTarball(t, core, map[string]string{"executable": c.Executable}))
	status, step, logText, bt := task.finish(t)
	if status != "FINISHED_FAILURE" {
		t.Fatalf("task: %s, want FINISHED_FAILURE\n%s\n%s", status, step, logText)
	}
	rating := regexp.MustCompile(`(?m)^Backtrace rating: 0/4 \(quality 0\.00: 0 of [1-9]\d* frames of the crashing thread, `)
	if !rating.MatchString(step) {
		t.Errorf("status body lacks %s:\n%s", rating, step)
	}
	if re := missingMultifileRE("\nMissing: ", altID, debugPaths); !re.MatchString(step) {
		t.Errorf("status body lacks %s:\n%s", re, step)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`backtrace rating: 0/4 \(quality 0\.00: 0 of [1-9]\d* frames of the crashing thread`),
		missingMultifileRE("missing from the mirror: ", altID, debugPaths),
		regexp.MustCompile(`could not find '\.gnu_debugaltlink' file`),
		regexp.MustCompile(`unusable backtrace: no frame of the crashing thread has a function name`),
	} {
		if !want.MatchString(logText) {
			t.Errorf("log lacks %s:\n%s", want, logText)
		}
	}
	if !regexp.MustCompile(`(?m)^#0  0x[0-9a-f]+ in \?\? \(\)`).MatchString(bt) {
		t.Errorf("the unusable backtrace is not served:\n%s", bt)
	}
	t.Logf("%s without %s: %s; %s", c.File, shipper, status, strings.SplitN(step, "\n", 3)[1])
}

// TestDistCoredump2PackagesCLI: `retraced coredump2packages` on the
// data directory (no server), for the crash of the subpackage
// toolbox-extra, lists the main toolbox-debuginfo package, which ships
// the dwz multifile its .debug files point at, with the -debuginfo
// packages of the core's own objects, in text and with --json; which
// packages those are comes from the fixture's reference lists.
func TestDistCoredump2PackagesCLI(t *testing.T) {
	c, core := distCore(t, "toolbox-extra-")
	altID, shipper, _ := multifileOf(t, c)
	// The -debuginfo packages of the core's objects, as eu-readelf read
	// the build-ids of their files, and the multifile's.
	want := []string{shipper}
	for _, m := range c.Modules {
		for _, f := range fixtures.DistELFFiles(t) {
			if f.BuildID == m.BuildID && f.Kind == "debuginfo" && !slices.Contains(want, f.NEVRA) {
				want = append(want, f.NEVRA)
			}
		}
	}
	slices.Sort(want)
	if len(want) < 3 {
		t.Fatalf("expected debuginfo packages %v: the core's objects have no .debug files of their own", want)
	}
	cfg := testConfig(t)
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "dist", fixtures.Path("repo-dist")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, stderr)
	}
	out, _, err := run(t, "--data", cfg.Data, "coredump2packages", core)
	if err != nil {
		t.Fatal(err)
	}
	// Text: the crash package, the binary packages, the debuginfo
	// packages, the unresolved objects, in sections apart by blank lines.
	sections := strings.Split(strings.TrimRight(out, "\n"), "\n\n")
	if len(sections) < 3 || sections[0] != c.NEVRA {
		t.Fatalf("coredump2packages:\n%s", out)
	}
	var debuginfo []string
	for l := range strings.SplitSeq(sections[1], "\n") {
		if strings.Contains(l, "-debuginfo-") {
			debuginfo = append(debuginfo, l)
		}
	}
	if !slices.Equal(debuginfo, want) {
		t.Errorf("coredump2packages lists the debuginfo packages %v, want %v (%s ships the multifile %s):\n%s", debuginfo, want, shipper, altID, out)
	}
	if strings.Contains(out, altID) {
		t.Errorf("the multifile %s is listed as unresolved:\n%s", altID, out)
	}

	out, _, err = run(t, "--data", cfg.Data, "coredump2packages", "--json", core)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		CrashPackage       string            `json:"crash_package"`
		DebuginfoPackages  []string          `json:"debuginfo_packages"`
		UnresolvedAltlinks []json.RawMessage `json:"unresolved_altlinks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if rep.CrashPackage != c.NEVRA || !slices.Equal(rep.DebuginfoPackages, want) || len(rep.UnresolvedAltlinks) != 0 {
		t.Errorf("--json: crash package %q, debuginfo packages %v, unresolved altlinks %d; want %q, %v, 0",
			rep.CrashPackage, rep.DebuginfoPackages, len(rep.UnresolvedAltlinks), c.NEVRA, want)
	}
}
