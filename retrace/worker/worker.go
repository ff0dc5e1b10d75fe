package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/resolver/corefile"
	"github.com/retraced/retraced/retrace"
)

// ErrExecutableUnknown reports a core whose crashing executable the
// mirror does not have (or that names none): without it GDB cannot
// retrace, so it is not run.
var ErrExecutableUnknown = errors.New("the crashing executable is not in the mirror")

// errSysrootUnreachable reports a sysroot directory that GDB's
// unprivileged user cannot reach by path: a directory above it is not
// searchable (mode o+x) by that user, as /root (0700) is. The worker then
// hands GDB the directories as open descriptors (see fdSysroot).
var errSysrootUnreachable = errors.New("sysroot directory not reachable by gdb's user")

// GDB reaches the sysroot and its run directory through these descriptors
// when it cannot by path: /proc/self/fd/N of an inherited directory
// resolves without searching the directories above it.
const (
	fdSysroot = "/proc/self/fd/3"
	fdRun     = "/proc/self/fd/4"
)

// Index is what the worker needs of the index ([index.Store]).
type Index interface {
	// Lookup and HasPackage, as coredump2packages uses them.
	resolver.Packager
	// Package returns the package n with its files, or an error wrapping
	// index.ErrNotFound.
	Package(n index.NEVRA) (*index.Package, error)
}

// BlobSource is what the worker needs of the blob pool ([blob.Pool]).
type BlobSource interface {
	// Plain returns the path of an uncompressed, read-only copy of blob
	// d on the pool's file system. The worker hard-links it into
	// sysroots; the pool may delete that path later, never the content
	// of the inode.
	Plain(d blob.Digest) (string, error)
}

var (
	_ Index      = (*index.Store)(nil)
	_ BlobSource = (*blob.Pool)(nil)
)

// Config tunes a Worker. The zero value of a field means its
// default.
type Config struct {
	// SysrootDir holds the assembled sysroots and GDB's run directories
	// (required). It should be on the blob pool's file system, so that
	// sysroots are hard links. When a directory above it is closed to
	// User, GDB reaches it through descriptors. One Worker owns it (a
	// lock file says so).
	SysrootDir string
	// SysrootBudget bounds the bytes of cached sysroots; least recently
	// used ones are removed beyond it. Default 10 GiB.
	SysrootBudget int64
	// GDB is the gdb to run, a path or a name looked up in PATH.
	// Default "gdb".
	GDB string
	// Timeout is GDB's wall-clock limit; it is killed there. Default 60 s.
	Timeout time.Duration
	// MemoryLimit is GDB's address-space limit (RLIMIT_AS) in bytes.
	// Default 2 GiB; negative means none.
	MemoryLimit int64
	// MaxOutput bounds the backtrace GDB may print, in bytes; the rest
	// is dropped (and the log says so). Default 16 MiB.
	MaxOutput int64
	// User runs GDB. Default "nobody" when the worker runs as root, else
	// the worker's own user (only root can switch).
	User string
	// Network is "none" (GDB gets its own network namespace with no
	// interface up; a worker that is not root needs unprivileged user
	// namespaces for it, and New fails without them) or "host".
	// Default: "none" when root or when the kernel lets this user create
	// a user namespace (probed once), else "host", which
	// NetworkWarning and every task's log then explain.
	Network string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultSysrootBudget = 10 << 30
	DefaultGDBTimeout    = 60 * time.Second
	DefaultGDBMemory     = 2 << 30
	DefaultGDBOutput     = 16 << 20
)

func (c Config) withDefaults() Config {
	if c.SysrootBudget <= 0 {
		c.SysrootBudget = DefaultSysrootBudget
	}
	if c.GDB == "" {
		c.GDB = "gdb"
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultGDBTimeout
	}
	switch {
	case c.MemoryLimit == 0:
		c.MemoryLimit = DefaultGDBMemory
	case c.MemoryLimit < 0:
		c.MemoryLimit = 0
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = DefaultGDBOutput
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Worker retraces cores: it reads the core's build-ids, resolves them to
// packages in the index, assembles a sysroot of those packages (with
// their debuginfo and debugsource) from the blob pool, and runs GDB on it
// in a sandbox. It is safe for concurrent use; Close it when done.
//
// # GDB
//
// GDB runs in batch mode with no init files, debuginfod off, auto-load
// limited to the sysroot, `set sysroot`, `set debug-file-directory` and
// `set substitute-path /usr/src/debug` pointing into the sysroot, and
// prints what ABRT's retrace prints: `thread apply all -ascending
// backtrace full 1024`, `info sharedlibrary`, `info registers` and
// `disassemble` (the function around the crashing instruction, "=>"
// marking it; nothing when the pc is in no function gdb knows, as in a
// stripped library without its debuginfo), then, whatever the symbols,
// `x/16i $pc`: the crashing instruction ("=>") and the 15 after it.
// (Instructions before the pc are left to disassemble: x86 cannot be
// decoded backwards from an arbitrary address.) Its standard output is
// the backtrace; its standard error (warnings, such as the libraries it
// could not find, or memory the core lacks) goes to the log.
//
// # Sandbox
//
// See sandbox: own process group killed whole at Timeout, Pdeathsig,
// an unprivileged user when root, its own network namespace, RLIMIT_AS,
// RLIMIT_CORE 0, RLIMIT_FSIZE, a minimal environment, bounded output. GDB
// reads only the sysroot (0444 files, 0755 directories) and a private run
// directory (0700, owned by GDB's user) holding a copy of the core.
type Worker struct {
	idx   Index
	pool  BlobSource
	cfg   Config
	gdb   string
	sb    *sandbox
	cache *sysrootCache

	// gdbExtra are commands run before the backtrace (tests only).
	gdbExtra []string
	// byFD: GDB reaches the sysroot and run directories through
	// descriptors (fdSysroot, fdRun), not by their paths.
	byFD bool
}

// New checks the configuration (GDB found, sandbox user known,
// sysroot directory usable by that user) and opens the sysroot cache.
func New(idx Index, pool BlobSource, cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if cfg.SysrootDir == "" {
		return nil, errors.New("retrace worker: no sysroot directory")
	}
	dir, err := filepath.Abs(cfg.SysrootDir)
	if err != nil {
		return nil, fmt.Errorf("retrace worker: %w", err)
	}
	if !gdbSafePath(dir) {
		return nil, fmt.Errorf("retrace worker: sysroot directory %q: only letters, digits and /._-+@,= are allowed (the path goes on GDB's command line)", dir)
	}
	cfg.SysrootDir = dir
	gdb, err := exec.LookPath(cfg.GDB)
	if err != nil {
		return nil, fmt.Errorf("retrace worker: gdb: %w", err)
	}
	if gdb, err = filepath.Abs(gdb); err != nil {
		return nil, fmt.Errorf("retrace worker: gdb: %w", err)
	}
	sb, err := newSandbox(cfg.User, cfg.Network, cfg.MemoryLimit, cfg.MaxOutput)
	if err != nil {
		return nil, fmt.Errorf("retrace worker: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("retrace worker: %w", err)
	}
	// Under a directory GDB's user cannot search (a 0700 home), GDB gets
	// the sysroot and run directory as descriptors, and still runs
	// unprivileged.
	byFD := false
	if sb.cred != nil {
		if err := searchableBy(dir, sb.uid, sb.gid); errors.Is(err, errSysrootUnreachable) {
			byFD = true
		} else if err != nil {
			return nil, fmt.Errorf("retrace worker: %w", err)
		}
	}
	cache, err := openSysrootCache(dir, cfg.SysrootBudget, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("retrace worker: %w", err)
	}
	return &Worker{idx: idx, pool: pool, cfg: cfg, gdb: gdb, sb: sb, cache: cache, byFD: byFD}, nil
}

// NetworkWarning says why GDB runs with the host's network although the
// configuration asked for none if possible (Network ""), or is "".
func (w *Worker) NetworkWarning() string { return w.sb.hostWhy }

// Close releases the sysroot directory, recording the sysroots' last use
// for the next Worker.
func (w *Worker) Close() error { return w.cache.Close() }

// searchableBy checks that uid:gid can reach dir: every directory from /
// down to dir must grant it search (x) permission.
func searchableBy(dir string, uid, gid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := st.Mode().Perm()
		okx := perm&0o001 != 0 ||
			(int(sys.Uid) == uid && perm&0o100 != 0) ||
			(int(sys.Gid) == gid && perm&0o010 != 0)
		if !okx {
			return fmt.Errorf("%w: %s (mode %v) is not searchable by uid %d", errSysrootUnreachable, d, perm, uid)
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

// Retrace implements [retrace.Retracer]: it retraces crashDir/coredump. The
// crash directory's executable file names the crashing program when the
// core does not; its package and os_release files are logged.
func (w *Worker) Retrace(ctx context.Context, crashDir string, log io.Writer) (retrace.Result, error) {
	sl := w.newStepLog(log)
	// A task's log and error are for its client: they name the crash
	// directory and the sysroots by role, not by the server's paths.
	sl.hide(crashDir, "<crash directory>")
	sl.hide(w.cfg.SysrootDir, "<sysroots>")
	var exeHint string
	for _, name := range []string{"executable", "package", "os_release"} {
		v, err := readCrashItem(filepath.Join(crashDir, name))
		if err != nil || v == "" {
			continue
		}
		if name == "executable" {
			exeHint = v
		}
		sl.printf("crash directory: %s: %s", name, v)
	}
	return w.retrace(ctx, sl, filepath.Join(crashDir, "coredump"), "", exeHint)
}

// RetraceCore retraces the core file at corePath, as `retraced retrace
// CORE [--executable PATH]` does: executable, when not "", names the
// crashing program's path as the core maps it, overriding what the core
// says. It returns the backtrace and writes the steps to log.
func (w *Worker) RetraceCore(ctx context.Context, corePath, executable string, log io.Writer) (retrace.Result, error) {
	return w.retrace(ctx, w.newStepLog(log), corePath, executable, "")
}

// readCrashItem reads the first line of a small crash directory file.
func readCrashItem(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close() // read-only
	line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimSpace(line)
	if strings.ContainsFunc(line, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", fmt.Errorf("%s: control characters", p)
	}
	return line, nil
}

// What GDB's backtrace is made of: "Thread N (...):" heads, frames "#N ",
// frames without a function name "#N  0xADDR in ?? ()".
var (
	threadRE       = regexp.MustCompile(`(?m)^Thread \d+ `)
	frameRE        = regexp.MustCompile(`(?m)^#0 `)
	anyFrameRE     = regexp.MustCompile(`(?m)^#\d+ `)
	unknownFrameRE = regexp.MustCompile(`(?m)^#\d+ .* in \?\? \(`)
)

func (w *Worker) retrace(ctx context.Context, sl *stepLog, corePath, exeOverride, exeHint string) (retrace.Result, error) {
	var res retrace.Result
	// 1. The core: mapped objects and their build-ids.
	core, err := corefile.Open(corePath)
	if err != nil {
		return res, sl.fail(err) // corefile says "read core PATH: ..."
	}
	exe := core.Executable
	switch {
	case exeOverride != "":
		exe = exeOverride
	case exe == "" && exeHint != "":
		exe = exeHint
	}
	withID := 0
	for _, m := range core.Modules {
		if m.BuildID != nil {
			withID++
		}
	}
	sl.printf("read core: %d mapped objects (%d with a build-id), executable %s, %s",
		len(core.Modules), withID, orDash(exe), signalName(core.Signal))

	// 2. Packages.
	_, objs := resolver.ObjectsOf(core)
	var exeObj *resolver.Object
	for i := range objs {
		if objs[i].Path == exe || objs[i].Path == exe+" (deleted)" {
			exeObj = &objs[i]
			exe = objs[i].Path
			break
		}
	}
	rep, err := resolver.CoreToPackages(w.idx, exe, objs)
	if err != nil {
		return res, sl.fail(fmt.Errorf("resolve packages: %w", err))
	}
	var missing []string
	for _, u := range rep.Unresolved {
		missing = append(missing, u.BuildID+" "+u.Path)
		if !isVDSO(u.Path) { // the kernel's: no package has it, and gdb reads it from the core
			res.Missing = append(res.Missing, u.Path+" "+u.BuildID)
		}
		sl.printf("unresolved: %s %s", u.Path, u.BuildID)
	}
	for _, u := range rep.UnresolvedAltLinks {
		res.Missing = append(res.Missing, fmt.Sprintf("%s's dwz multifile %s", u.Path, u.BuildID))
		sl.printf("unresolved: dwz multifile %s, the .gnu_debugaltlink of %s: its debug information will be missing", u.BuildID, u.Path)
	}
	noID := 0
	for _, o := range objs {
		if o.BuildID.IsZero() {
			if noID < 20 {
				sl.printf("no build-id in the core: %s", orDash(o.Path))
			}
			noID++
		}
	}
	if noID > 20 {
		sl.printf("no build-id in the core: %d more", noID-20)
	}
	switch {
	case exe == "":
		return res, sl.fail(fmt.Errorf("%w: the core names no executable", ErrExecutableUnknown))
	case exeObj == nil:
		return res, sl.fail(fmt.Errorf("%w: %s is not mapped in the core", ErrExecutableUnknown, exe))
	case exeObj.BuildID.IsZero():
		return res, sl.fail(fmt.Errorf("%w: the core holds no build-id for %s", ErrExecutableUnknown, exe))
	case rep.CrashPackage == nil:
		return res, sl.fail(fmt.Errorf("%w: %s, build-id %s; unresolved build-ids: %s",
			ErrExecutableUnknown, exe, exeObj.BuildID, strings.Join(missing, ", ")))
	}
	sl.printf("resolve packages: crash package %s; packages %s; debuginfo %s; %d unresolved",
		rep.CrashPackage.String(), joinNEVRAs(rep.Packages), orDash(joinNEVRAs(rep.DebuginfoPackages)), len(rep.Unresolved))
	pkgs, err := w.packageSet(rep, sl)
	if err != nil {
		return res, sl.fail(err)
	}
	exePath, err := w.packagePath(exeObj.BuildID, *rep.CrashPackage)
	if err != nil {
		return res, sl.fail(err)
	}

	// 3. The sysroot.
	names := make([]string, len(pkgs))
	inSet := map[index.NEVRA]bool{}
	for i, p := range pkgs {
		names[i] = p.NEVRA.String()
		inSet[p.NEVRA] = true
	}
	aliases, err := w.aliases(objs, inSet)
	if err != nil {
		return res, sl.fail(err)
	}
	for _, from := range slices.Sorted(maps.Keys(aliases)) {
		sl.printf("sysroot: %s is %s (same build-id)", from, aliases[from])
		names = append(names, "alias "+from+" "+aliases[from])
	}
	key := sysrootKey(names)
	var built *sysrootManifest
	start := time.Now()
	lease, err := w.cache.acquire(ctx, key, func(ctx context.Context, dir string) (*sysrootManifest, error) {
		m, err := assembleSysroot(ctx, dir, planSysroot(pkgs, aliases), w.pool, w.cfg.Now())
		built = m
		return m, err
	})
	if err != nil {
		return res, sl.fail(fmt.Errorf("assemble sysroot: %w", err))
	}
	defer func() {
		if err := lease.Release(); err != nil {
			sl.printf("evict sysroots: %v", err)
		}
	}()
	if lease.Evict != nil {
		sl.printf("evict sysroots: %v", lease.Evict)
	}
	n, total, _ := w.cache.stats()
	if lease.Reused {
		sl.printf("sysroot %s: reused (%d packages); cache: %d sysroots, %s", key[:16], len(pkgs), n, gdbSize(total))
	} else if built != nil {
		for i, s := range built.Skipped {
			if i == 20 {
				sl.printf("sysroot: %d more entries skipped", len(built.Skipped)-20)
				break
			}
			sl.printf("sysroot: skipped %s", s)
		}
		sl.printf("sysroot %s: assembled in %.3fs from %d packages: %d files (%s; %d copied, the rest hard links), %d symbolic links; cache: %d sysroots, %s",
			key[:16], time.Since(start).Seconds(), len(pkgs), built.Files, gdbSize(built.Bytes), built.Copied, built.Links, n, gdbSize(total))
	}
	exeInRoot := filepath.Join(lease.Path, filepath.FromSlash(exePath))
	if _, err := os.Stat(exeInRoot); err != nil {
		return res, sl.fail(fmt.Errorf("sysroot lacks the executable: %w", err))
	}

	// 4. GDB.
	bt, err := w.runGDB(ctx, sl, lease.Path, exeInRoot, corePath)
	if err != nil {
		return res, sl.fail(err)
	}
	res.Backtrace = bt
	r := RateBacktrace(bt)
	res.Rating = r
	sl.printf("backtrace rating: %s", r)
	if len(res.Missing) > 0 {
		sl.printf("missing from the mirror: %s", strings.Join(res.Missing, ", "))
	}
	if !r.Usable() {
		return res, sl.fail(fmt.Errorf("%w: no frame of the crashing thread has a function name", retrace.ErrUnusable))
	}
	return res, nil
}

// aliases maps each object the core names at a path where the chosen
// packages do not ship it to the path where one of them ships the same
// build-id (see planSysroot).
func (w *Worker) aliases(objs []resolver.Object, inSet map[index.NEVRA]bool) (map[string]string, error) {
	out := map[string]string{}
	for _, o := range objs {
		if o.BuildID.IsZero() || !strings.HasPrefix(o.Path, "/") || strings.HasSuffix(o.Path, " (deleted)") {
			continue
		}
		ms, err := w.idx.Lookup(o.BuildID)
		if errors.Is(err, index.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up %s: %w", o.Path, err)
		}
		var at string
		for _, m := range ms {
			if m.Kind != index.KindExecutable || !inSet[m.NEVRA] {
				continue
			}
			if m.Path == o.Path {
				at = ""
				break
			}
			if at == "" {
				at = m.Path
			}
		}
		if at != "" {
			out[o.Path] = at
		}
	}
	return out, nil
}

// packageSet adds, to the binary and debuginfo packages of rep, the
// -debugsource packages of the same builds: NAME-debugsource-EVR.ARCH
// for the binary package's name and for its source package's name.
func (w *Worker) packageSet(rep *resolver.Report, sl *stepLog) ([]*index.Package, error) {
	var out []*index.Package
	seen := map[index.NEVRA]bool{}
	get := func(n index.NEVRA) (*index.Package, error) {
		p, err := w.idx.Package(n)
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", n, err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, p)
		}
		return p, nil
	}
	var bins []*index.Package
	for i, n := range slices.Concat(rep.Packages, rep.DebuginfoPackages) {
		p, err := get(n)
		if err != nil {
			return nil, err
		}
		if i < len(rep.Packages) {
			bins = append(bins, p)
		}
	}
	var srcs []string
	for _, p := range bins {
		names := []string{p.NEVRA.Name}
		if sn := srpmName(p.SourceRPM); sn != "" && sn != p.NEVRA.Name {
			names = append(names, sn)
		}
		found := false
		for _, name := range names {
			ds := p.NEVRA
			ds.Name = name + "-debugsource"
			if seen[ds] {
				found = true
				continue
			}
			ok, err := w.idx.HasPackage(ds)
			if err != nil {
				return nil, fmt.Errorf("package %s: %w", ds, err)
			}
			if !ok {
				continue
			}
			if _, err := get(ds); err != nil {
				return nil, err
			}
			found = true
			srcs = append(srcs, ds.String())
		}
		if !found {
			sl.printf("no debugsource package for %s", p.NEVRA)
		}
	}
	if len(srcs) > 0 {
		sl.printf("debugsource: %s", strings.Join(srcs, " "))
	}
	return out, nil
}

// srpmName is the name of a source RPM file name NAME-VERSION-RELEASE.src.rpm.
func srpmName(file string) string {
	s, ok := strings.CutSuffix(file, ".src.rpm")
	if !ok {
		if s, ok = strings.CutSuffix(file, ".nosrc.rpm"); !ok {
			return ""
		}
	}
	for range 2 {
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return ""
		}
		s = s[:i]
	}
	return s
}

// packagePath is where package nevra ships the executable with build-id
// id.
func (w *Worker) packagePath(id index.BuildID, nevra index.NEVRA) (string, error) {
	ms, err := w.idx.Lookup(id)
	if err != nil {
		return "", fmt.Errorf("look up the executable: %w", err)
	}
	for _, m := range ms {
		if m.Kind == index.KindExecutable && m.NEVRA == nevra {
			return m.Path, nil
		}
	}
	return "", fmt.Errorf("look up the executable: %s ships no file with build-id %s", nevra, id)
}

// runGDB prepares a private run directory and runs GDB there.
func (w *Worker) runGDB(ctx context.Context, sl *stepLog, sysroot, exe, corePath string) (string, error) {
	run, err := os.MkdirTemp(w.cfg.SysrootDir, ".run-")
	if err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(run); err != nil {
			sl.printf("remove run directory: %v", err)
		}
	}()
	core := filepath.Join(run, "core")
	if w.sb.cred != nil {
		// GDB's user gets its own copy of the core, readable by it alone.
		if err := os.Chown(run, w.sb.uid, w.sb.gid); err != nil {
			return "", fmt.Errorf("run directory: %w", err)
		}
		if err := copyCoreFor(corePath, core, w.sb.uid, w.sb.gid); err != nil {
			return "", fmt.Errorf("copy the core: %w", err)
		}
	} else {
		abs, err := filepath.Abs(corePath)
		if err != nil {
			return "", err
		}
		if err := os.Symlink(abs, core); err != nil {
			return "", fmt.Errorf("run directory: %w", err)
		}
	}
	script := gdbScript{sysroot: sysroot, exe: filepath.Join(run, "exe"), core: core, extra: w.gdbExtra}
	dir, env, runs := run, w.sb.env(run), w.sb.describe()
	var files []*os.File
	if w.byFD {
		rel, err := filepath.Rel(sysroot, exe)
		if err != nil || !filepath.IsLocal(rel) {
			return "", fmt.Errorf("executable %s is not in the sysroot", exe)
		}
		exe = fdSysroot + "/" + rel
		script = gdbScript{sysroot: fdSysroot, exe: fdRun + "/exe", core: fdRun + "/core", extra: w.gdbExtra}
		for _, d := range []string{sysroot, run} { // fd 3, fd 4
			f, err := os.Open(d)
			if err != nil {
				return "", fmt.Errorf("run directory: %w", err)
			}
			defer f.Close() // a directory, read-only
			files = append(files, f)
		}
		dir, env = "/", w.sb.env(fdRun)
		runs += ", sysroot and run directory as descriptors (their parents are closed to it)"
	}
	if err := os.Symlink(exe, filepath.Join(run, "exe")); err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	gctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	sl.printf("gdb: running %s %s", w.gdb, runs)
	res, err := w.sb.runFiles(gctx, dir, env, files, w.gdb, script.args()...)
	if err != nil {
		return "", fmt.Errorf("gdb: %w", err)
	}
	logGDBStderr(sl, []byte(strings.ReplaceAll(string(res.Stderr), script.sysroot+"/", "/")))
	how := fmt.Sprintf("exit status %d", res.ExitCode)
	switch {
	case res.TimedOut && ctx.Err() == nil:
		how = fmt.Sprintf("killed (%s) at the %s time limit", unix.SignalName(res.Signal), w.cfg.Timeout)
	case res.TimedOut:
		how = fmt.Sprintf("killed (%s): %v", unix.SignalName(res.Signal), context.Cause(ctx))
	case res.Signal != 0:
		how = "killed by " + unix.SignalName(res.Signal)
	}
	sl.printf("gdb: %s after %.3fs, %s of output", how, res.Elapsed.Seconds(), gdbSize(int64(len(res.Stdout))+res.StdoutDropped))
	if res.StdoutDropped > 0 {
		sl.printf("gdb: output cut at %s: %s dropped", gdbSize(w.cfg.MaxOutput), gdbSize(res.StdoutDropped))
	}
	switch {
	case res.TimedOut && ctx.Err() != nil:
		return "", fmt.Errorf("gdb: %w", context.Cause(ctx))
	case res.TimedOut:
		return "", fmt.Errorf("%w: killed after %s", ErrGDBTimeout, w.cfg.Timeout)
	case !frameRE.Match(res.Stdout):
		return "", fmt.Errorf("%w (%s)", ErrGDBFailed, how)
	}
	// Paths inside the sysroot are shown as the crashed system saw them.
	bt := strings.ReplaceAll(string(res.Stdout), script.sysroot+"/", "/")
	// Count in the threads' backtraces, not in the frame GDB shows when
	// it loads the core.
	threads, frames, unknown := 0, 0, 0
	if loc := threadRE.FindIndex(res.Stdout); loc != nil {
		all := res.Stdout[loc[0]:]
		threads = len(threadRE.FindAllIndex(all, -1))
		frames = len(anyFrameRE.FindAllIndex(all, -1))
		unknown = len(unknownFrameRE.FindAllIndex(all, -1))
	}
	sl.printf("backtrace: %d threads, %d frames, %d without a function name", threads, frames, unknown)
	return bt, nil
}

// copyCoreFor copies the core to dst (0400, owned by uid:gid).
func copyCoreFor(src, dst string, uid, gid int) error {
	return copyNew(src, dst, 0o400, func(out *os.File) error { return out.Chown(uid, gid) })
}

// logGDBStderr copies GDB's warnings into the log, a bounded number of
// lines.
func logGDBStderr(sl *stepLog, stderr []byte) {
	lines := strings.Split(strings.TrimRight(string(stderr), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return
	}
	const most = 200
	for i, l := range lines {
		if i == most {
			sl.printf("gdb: %d more lines on stderr", len(lines)-most)
			break
		}
		sl.printf("gdb: %s", l)
	}
}

func signalName(sig int) string {
	if sig == 0 {
		return "no signal (a live process's core)"
	}
	if name := unix.SignalName(syscall.Signal(sig)); name != "" {
		return fmt.Sprintf("signal %d (%s)", sig, name)
	}
	return fmt.Sprintf("signal %d", sig)
}

// isVDSO reports whether a core's module is the kernel's vDSO.
func isVDSO(path string) bool {
	switch path {
	case "linux-vdso.so.1", "linux-vdso64.so.1", "linux-gate.so.1", "[vdso]":
		return true
	}
	return false
}

// joinNEVRAs writes ns separated by spaces.
func joinNEVRAs(ns []index.NEVRA) string {
	var b strings.Builder
	for i, n := range ns {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n.String())
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// stepLog writes a retrace's steps to its log: a timestamp as the task
// log writes it, the time since the retrace began, and what happened.
type stepLog struct {
	w    io.Writer
	now  func() time.Time
	mono time.Time
	// hidden are absolute paths shown by a name instead, longest first.
	hidden []hiddenPath
}

type hiddenPath struct{ path, name string }

// hide makes the log and the errors it fails with say name for the
// directory dir (and what is below it).
func (l *stepLog) hide(dir, name string) {
	if abs, err := filepath.Abs(dir); err == nil && abs != "/" {
		l.hidden = append(l.hidden, hiddenPath{abs, name})
		slices.SortFunc(l.hidden, func(a, b hiddenPath) int { return len(b.path) - len(a.path) })
	}
}

func (l *stepLog) scrub(s string) string {
	for _, h := range l.hidden {
		s = strings.ReplaceAll(s, h.path, h.name)
	}
	return s
}

// scrubbedError is an error whose message hides the log's paths; it
// still unwraps to the original.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (w *Worker) newStepLog(log io.Writer) *stepLog {
	if log == nil {
		log = io.Discard
	}
	return &stepLog{w: log, now: w.cfg.Now, mono: time.Now()}
}

// printf writes one line. A log that fails to write does not stop the
// retrace: the log is for people, the outcome is the return value.
func (l *stepLog) printf(format string, args ...any) {
	msg := l.scrub(fmt.Sprintf(format, args...))
	msg = strings.ReplaceAll(msg, "\n", " ")
	fmt.Fprintf(l.w, "%s +%.3fs %s\n", l.now().UTC().Format("2006-01-02 15:04:05"), time.Since(l.mono).Seconds(), msg)
}

// fail logs err and returns it, its message without the hidden paths.
func (l *stepLog) fail(err error) error {
	l.printf("failed: %v", err)
	if msg := l.scrub(err.Error()); msg != err.Error() {
		return &scrubbedError{msg, err}
	}
	return err
}

var _ retrace.Retracer = (*Worker)(nil)
