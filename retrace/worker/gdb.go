package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrGDBTimeout reports a GDB run killed at the worker's time limit.
var ErrGDBTimeout = errors.New("gdb ran out of time")

// ErrGDBFailed reports a GDB run that ended without a backtrace: it
// crashed, hit its memory limit, or could not read the core.
var ErrGDBFailed = errors.New("gdb gave no backtrace")

// GDB reaches the sysroot and its run directory through these descriptors
// when it cannot by path: /proc/self/fd/N of an inherited directory
// resolves without searching the directories above it.
const (
	fdSysroot = "/proc/self/fd/3"
	fdRun     = "/proc/self/fd/4"
)

// What GDB's backtrace is made of: "Thread N (...):" heads, frames "#N ",
// frames without a function name "#N  0xADDR in ?? ()".
var (
	threadRE       = regexp.MustCompile(`(?m)^Thread \d+ `)
	frameRE        = regexp.MustCompile(`(?m)^#0 `)
	anyFrameRE     = regexp.MustCompile(`(?m)^#\d+ `)
	unknownFrameRE = regexp.MustCompile(`(?m)^#\d+ .* in \?\? \(`)
)

// runGDB is step 5 of a retrace: it runs GDB on the core with the
// sysroot, in a private run directory, and returns the backtrace: what GDB printed, paths inside
// the sysroot shown as the crashed system saw them.
func (w *Worker) runGDB(ctx context.Context, sl *stepLog, sysroot, exe, corePath string) (string, error) {
	run, err := w.prepareRun(sl, sysroot, exe, corePath)
	if err != nil {
		return "", err
	}
	defer run.cleanup(sl)
	gctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	sl.printf("gdb: running %s %s", w.gdb, run.how)
	res, err := w.sb.runFiles(gctx, run.wd, run.env, run.files, w.gdb, run.script.args()...)
	if err != nil {
		return "", fmt.Errorf("gdb: %w", err)
	}
	if err := w.gdbOutcome(ctx, sl, run.script, res); err != nil {
		return "", err
	}
	logBacktraceCounts(sl, res.Stdout)
	return strings.ReplaceAll(string(res.Stdout), run.script.sysroot+"/", "/"), nil
}

// gdbRun is one GDB run: its private run directory and how GDB starts
// there.
type gdbRun struct {
	dir    string // the run directory: the core, a link to the executable, GDB's HOME
	script gdbScript
	wd     string     // GDB's working directory
	env    []string   // GDB's environment
	files  []*os.File // inherited as fd 3 and 4 when GDB reaches the sysroot and dir by descriptor
	how    string     // how GDB runs, for the log
}

// prepareRun makes the run directory of one GDB run in the sysroot
// directory: the core (GDB's user's own copy, or a link when GDB runs as
// the worker's user) and a link to the executable exe, inside sysroot.
// When GDB cannot reach them by path, the sysroot and the run directory
// are opened for it to inherit. cleanup undoes it.
func (w *Worker) prepareRun(sl *stepLog, sysroot, exe, corePath string) (_ *gdbRun, err error) {
	dir, err := os.MkdirTemp(w.cfg.SysrootDir, ".run-")
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	run := &gdbRun{dir: dir}
	defer func() {
		if err != nil {
			run.cleanup(sl)
		}
	}()
	core := filepath.Join(dir, "core")
	if w.sb.cred != nil {
		// GDB's user gets its own copy of the core, readable by it alone.
		if err := os.Chown(dir, w.sb.uid, w.sb.gid); err != nil {
			return nil, fmt.Errorf("run directory: %w", err)
		}
		if err := copyCoreFor(corePath, core, w.sb.uid, w.sb.gid); err != nil {
			return nil, fmt.Errorf("copy the core: %w", err)
		}
	} else {
		abs, err := filepath.Abs(corePath)
		if err != nil {
			return nil, err
		}
		if err := os.Symlink(abs, core); err != nil {
			return nil, fmt.Errorf("run directory: %w", err)
		}
	}
	run.script = gdbScript{sysroot: sysroot, exe: filepath.Join(dir, "exe"), core: core, extra: w.gdbExtra}
	run.wd, run.env, run.how = dir, w.sb.env(dir), w.sb.describe()
	if w.byFD {
		rel, err := filepath.Rel(sysroot, exe)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("executable %s is not in the sysroot", exe)
		}
		exe = fdSysroot + "/" + rel
		run.script = gdbScript{sysroot: fdSysroot, exe: fdRun + "/exe", core: fdRun + "/core", extra: w.gdbExtra}
		for _, d := range []string{sysroot, dir} { // fd 3, fd 4
			f, err := os.Open(d)
			if err != nil {
				return nil, fmt.Errorf("run directory: %w", err)
			}
			run.files = append(run.files, f)
		}
		run.wd, run.env = "/", w.sb.env(fdRun)
		run.how += ", sysroot and run directory as descriptors (their parents are closed to it)"
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	return run, nil
}

// cleanup closes the inherited directories and removes the run
// directory; a failure to remove it is logged.
func (r *gdbRun) cleanup(sl *stepLog) {
	for _, f := range r.files {
		f.Close() // a directory, read-only
	}
	if err := os.RemoveAll(r.dir); err != nil {
		sl.printf("remove run directory: %v", err)
	}
}

// gdbOutcome logs how GDB ended (its stderr, exit, time and output) and
// says whether it gave a backtrace: killed at the time limit is
// ErrGDBTimeout, at ctx's end ctx's cause, no frame ErrGDBFailed.
func (w *Worker) gdbOutcome(ctx context.Context, sl *stepLog, script gdbScript, res *sandboxResult) error {
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
		return fmt.Errorf("gdb: %w", context.Cause(ctx))
	case res.TimedOut:
		return fmt.Errorf("%w: killed after %s", ErrGDBTimeout, w.cfg.Timeout)
	case !frameRE.Match(res.Stdout):
		return fmt.Errorf("%w (%s)", ErrGDBFailed, how)
	}
	return nil
}

// logBacktraceCounts logs the threads and frames of GDB's output, and
// the frames without a function name: those of the threads' backtraces,
// not the frame GDB shows when it loads the core.
func logBacktraceCounts(sl *stepLog, out []byte) {
	threads, frames, unknown := 0, 0, 0
	if loc := threadRE.FindIndex(out); loc != nil {
		all := out[loc[0]:]
		threads = len(threadRE.FindAllIndex(all, -1))
		frames = len(anyFrameRE.FindAllIndex(all, -1))
		unknown = len(unknownFrameRE.FindAllIndex(all, -1))
	}
	sl.printf("backtrace: %d threads, %d frames, %d without a function name", threads, frames, unknown)
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

// gdbScript is what GDB is told to do for one core.
type gdbScript struct {
	sysroot string // absolute, made of gdbSafePath characters
	exe     string // the executable, inside the run directory
	core    string // the core, inside the run directory
	extra   []string
}

// args builds GDB's command line. Settings that must hold before any file
// loads go in -iex; the rest run in order with -ex. In batch mode an
// error in one -ex command is printed and the next one runs.
func (g gdbScript) args() []string {
	debugDir := g.sysroot + "/usr/lib/debug"
	a := []string{
		"-nx", "-batch",
		"-iex", "set debuginfod enabled off",
		"-iex", "set auto-load safe-path " + g.sysroot,
		"-iex", "set auto-load scripts-directory " + debugDir + ":" + g.sysroot + "/usr/share/gdb/auto-load",
		"-iex", "set sysroot " + g.sysroot,
		"-iex", "set debug-file-directory " + debugDir,
		"-iex", "set width 0",
		"-iex", "set height 0",
		"-ex", "set substitute-path /usr/src/debug " + g.sysroot + "/usr/src/debug",
		"-ex", "file " + g.exe,
		"-ex", "core-file " + g.core,
	}
	for _, e := range g.extra {
		a = append(a, "-ex", e)
	}
	return append(a,
		"-ex", "thread apply all -ascending backtrace full 1024",
		"-ex", "info sharedlibrary",
		"-ex", "info registers",
		// The function around the pc, when gdb knows one (symbols)...
		"-ex", "disassemble",
		// ...and, in any case, the instructions from the pc on.
		"-ex", "echo \\nInstructions from the pc:\\n",
		"-ex", "x/16i $pc",
	)
}

// gdbSafePath reports whether p can go on a GDB command line unquoted:
// GDB splits some arguments at blanks, expands ~ and treats ':' as a
// list separator in debug-file-directory.
func gdbSafePath(p string) bool {
	if p == "" {
		return false
	}
	for _, c := range p {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("/._-+@,=", c):
		default:
			return false
		}
	}
	return true
}

// gdbSize writes a byte count for people.
func gdbSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
