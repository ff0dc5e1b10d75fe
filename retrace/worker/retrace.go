package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/resolver/corefile"
	"github.com/retraced/retraced/retrace"
)

// ErrExecutableUnknown reports a core whose crashing executable the
// mirror does not have (or that names none): without it GDB cannot
// retrace, so it is not run.
var ErrExecutableUnknown = errors.New("the crashing executable is not in the mirror")

// retrace retraces the core at corePath in steps: read the core, resolve
// its objects to packages, choose the package set, lease a sysroot of
// it, run GDB there, rate the backtrace. Each step logs to sl; the first
// that fails ends the retrace, its error logged, with what the Result
// has by then: what the mirror lacks once the packages are resolved, the
// backtrace once GDB gave one (ErrUnusable: rated too poor to use).
func (w *Worker) retrace(ctx context.Context, sl *stepLog, corePath, exeOverride, exeHint string) (retrace.Result, error) {
	var res retrace.Result
	c, err := readCore(sl, corePath, exeOverride, exeHint)
	if err != nil {
		return res, sl.fail(err)
	}
	rep, err := w.resolvePackages(sl, c)
	if err != nil {
		return res, sl.fail(err)
	}
	res.Missing = missing(rep)
	res.Signal = c.signal
	set, err := w.choosePackages(sl, c, rep)
	if err != nil {
		return res, sl.fail(err)
	}
	res.Package = rep.CrashPackage.String()
	fed := w.federate(ctx, sl, c, res.Missing)
	res.Missing = slices.DeleteFunc(res.Missing, func(m string) bool {
		return slices.ContainsFunc(fed, func(f fedObject) bool { return m == "/"+f.rel+" "+f.id })
	})
	lease, err := w.leaseSysroot(ctx, sl, c, set, fed)
	if err != nil {
		return res, sl.fail(err)
	}
	res.Stats = retrace.RetraceStats{Packages: len(set.pkgs), SysrootBytes: lease.bytes, SysrootReused: lease.Reused}
	defer func() {
		if err := lease.Release(); err != nil {
			sl.printf("evict sysroots: %v", err)
		}
	}()
	exe := filepath.Join(lease.Path, filepath.FromSlash(set.exePath))
	if _, err := os.Stat(exe); err != nil {
		return res, sl.fail(fmt.Errorf("sysroot lacks the executable: %w", err))
	}
	bt, err := w.runGDB(ctx, sl, lease.Path, exe, corePath)
	if err != nil {
		return res, sl.fail(err)
	}
	res.Backtrace = bt
	r := rate(sl, bt, res.Missing)
	res.Rating = r
	if !r.Usable() {
		return res, sl.fail(fmt.Errorf("%w: no frame of the crashing thread has a function name", retrace.ErrUnusable))
	}
	return res, nil
}

// crash is what a core says of the crash: its mapped objects with their
// build-ids, and which of them is the crashing executable.
type crash struct {
	objs []resolver.Object
	// exe is the crashing executable's path as the core maps it ("" when
	// nothing names one); exeObj is its object, nil when the core does
	// not map it.
	exe    string
	exeObj *resolver.Object
	// signal is the number of the signal that killed the process (0:
	// none, a live process's core).
	signal int
}

// readCore is step 1: it reads the core's mapped objects and their
// build-ids, and finds the crashing executable among them: exeOverride
// when given, else the one the core names, else exeHint (the crash
// directory's executable file).
func readCore(sl *stepLog, corePath, exeOverride, exeHint string) (*crash, error) {
	core, err := corefile.Open(corePath)
	if err != nil {
		return nil, err // corefile says "read core PATH: ..."
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
	c := &crash{exe: exe, signal: core.Signal}
	_, c.objs = resolver.ObjectsOf(core)
	for i := range c.objs {
		if c.objs[i].Path == exe || c.objs[i].Path == exe+" (deleted)" {
			c.exeObj = &c.objs[i]
			c.exe = c.objs[i].Path
			break
		}
	}
	return c, nil
}

// resolvePackages is step 2: it resolves the core's build-ids to
// packages (resolver.CoreToPackages) and logs what the index does not
// know: unresolved objects, missing dwz multifiles, objects the core
// shows no build-id for.
func (w *Worker) resolvePackages(sl *stepLog, c *crash) (*resolver.Report, error) {
	rep, err := resolver.CoreToPackages(w.idx, c.exe, c.objs)
	if err != nil {
		return nil, fmt.Errorf("resolve packages: %w", err)
	}
	for _, u := range rep.Unresolved {
		sl.printf("unresolved: %s %s", u.Path, u.BuildID)
	}
	for _, u := range rep.UnresolvedAltLinks {
		sl.printf("unresolved: dwz multifile %s, the .gnu_debugaltlink of %s: its debug information will be missing", u.BuildID, u.Path)
	}
	noID := 0
	for _, o := range c.objs {
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
	return rep, nil
}

// missing is what the mirror lacks for the core ([retrace.Result]'s
// Missing): "PATH BUILDID" of each unresolved object but the kernel's
// vDSO (no package has it, and gdb reads it from the core), then each
// dwz multifile a chosen debug file needs.
func missing(rep *resolver.Report) []string {
	var out []string
	for _, u := range rep.Unresolved {
		if !isVDSO(u.Path) {
			out = append(out, u.Path+" "+u.BuildID)
		}
	}
	for _, u := range rep.UnresolvedAltLinks {
		out = append(out, fmt.Sprintf("%s's dwz multifile %s", u.Path, u.BuildID))
	}
	return out
}

// packageSet is what a core's sysroot holds.
type packageSet struct {
	pkgs    []*index.Package // binary, debuginfo and debugsource packages
	exePath string           // where the crash package ships the executable
}

// choosePackages is step 3: it checks that the mirror has the crashing
// executable (ErrExecutableUnknown, before GDB runs, when not), adds the
// -debugsource packages to the report's and finds where the crash
// package ships the executable.
func (w *Worker) choosePackages(sl *stepLog, c *crash, rep *resolver.Report) (*packageSet, error) {
	if err := executableKnown(c, rep); err != nil {
		return nil, err
	}
	sl.printf("resolve packages: crash package %s; packages %s; debuginfo %s; %d unresolved",
		rep.CrashPackage.String(), joinNEVRAs(rep.Packages), orDash(joinNEVRAs(rep.DebuginfoPackages)), len(rep.Unresolved))
	pkgs, err := w.withDebugsource(rep, sl)
	if err != nil {
		return nil, err
	}
	exePath, err := w.packagePath(c.exeObj.BuildID, *rep.CrashPackage)
	if err != nil {
		return nil, err
	}
	return &packageSet{pkgs: pkgs, exePath: exePath}, nil
}

// executableKnown fails with ErrExecutableUnknown unless the core maps
// the crashing executable with a build-id that a package of the mirror
// ships; the error names the build-ids the index does not know.
func executableKnown(c *crash, rep *resolver.Report) error {
	switch {
	case c.exe == "":
		return fmt.Errorf("%w: the core names no executable", ErrExecutableUnknown)
	case c.exeObj == nil:
		return fmt.Errorf("%w: %s is not mapped in the core", ErrExecutableUnknown, c.exe)
	case c.exeObj.BuildID.IsZero():
		return fmt.Errorf("%w: the core holds no build-id for %s", ErrExecutableUnknown, c.exe)
	case rep.CrashPackage == nil:
		var unresolved []string
		for _, u := range rep.Unresolved {
			unresolved = append(unresolved, u.BuildID+" "+u.Path)
		}
		return fmt.Errorf("%w: %s, build-id %s; unresolved build-ids: %s",
			ErrExecutableUnknown, c.exe, c.exeObj.BuildID, strings.Join(unresolved, ", "))
	}
	return nil
}

// leaseSysroot is step 4: it leases the sysroot of the package set, with
// links for the objects the core names at other paths than the packages
// ship them (aliases), from the cache, assembling it there when no
// retrace built it before. The caller releases the lease.
func (w *Worker) leaseSysroot(ctx context.Context, sl *stepLog, c *crash, set *packageSet, fed []fedObject) (*sysrootLease, error) {
	names := make([]string, len(set.pkgs))
	inSet := map[index.NEVRA]bool{}
	for i, p := range set.pkgs {
		names[i] = p.NEVRA.String()
		inSet[p.NEVRA] = true
	}
	aliases, err := w.aliases(c.objs, inSet)
	if err != nil {
		return nil, err
	}
	for _, from := range slices.Sorted(maps.Keys(aliases)) {
		sl.printf("sysroot: %s is %s (same build-id)", from, aliases[from])
		names = append(names, "alias "+from+" "+aliases[from])
	}
	for _, f := range fed {
		names = append(names, fmt.Sprintf("federated %s %s %t", f.rel, f.id, f.debug != ""))
	}
	key := sysrootKey(names)
	var built *sysrootManifest
	start := time.Now()
	lease, err := w.cache.acquire(ctx, key, func(ctx context.Context, dir string) (*sysrootManifest, error) {
		m, err := assembleSysroot(ctx, dir, planSysroot(set.pkgs, aliases), w.pool, w.cfg.Now())
		if err == nil {
			var n int64
			n, err = placeFederated(dir, fed)
			m.Bytes += n
		}
		built = m
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("assemble sysroot: %w", err)
	}
	if lease.Evict != nil {
		sl.printf("evict sysroots: %v", lease.Evict)
	}
	n, total, _ := w.cache.stats()
	switch {
	case lease.Reused:
		sl.printf("sysroot %s: reused (%d packages); cache: %d sysroots, %s", key[:16], len(set.pkgs), n, gdbSize(total))
	case built != nil:
		for i, s := range built.Skipped {
			if i == 20 {
				sl.printf("sysroot: %d more entries skipped", len(built.Skipped)-20)
				break
			}
			sl.printf("sysroot: skipped %s", s)
		}
		lease.bytes = built.Bytes
		sl.printf("sysroot %s: assembled in %.3fs from %d packages: %d files (%s; %d copied, the rest hard links), %d symbolic links; cache: %d sysroots, %s",
			key[:16], time.Since(start).Seconds(), len(set.pkgs), built.Files, gdbSize(built.Bytes), built.Copied, built.Links, n, gdbSize(total))
	}
	return lease, nil
}

// rate is step 6: it rates the backtrace and logs
// the rating and what the mirror lacked.
func rate(sl *stepLog, bt string, missing []string) Rating {
	r := RateBacktrace(bt)
	sl.printf("backtrace rating: %s", r)
	if len(missing) > 0 {
		sl.printf("missing from the mirror: %s", strings.Join(missing, ", "))
	}
	return r
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
