package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/retrace"
)

// errSysrootUnreachable reports a sysroot directory that GDB's
// unprivileged user cannot reach by path: a directory above it is not
// searchable (mode o+x) by that user, as /root (0700) is. The worker then
// hands GDB the directories as open descriptors (see fdSysroot).
var errSysrootUnreachable = errors.New("sysroot directory not reachable by gdb's user")

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
	// Federation, when set, is asked for the objects of a core the
	// index lacks (their executables and debuginfo go into the task's
	// sysroot, and the log says which upstream sent them). Default: none.
	Federation Federation
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

var _ retrace.Retracer = (*Worker)(nil)
