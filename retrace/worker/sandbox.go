package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sandbox runs one program (GDB, or a probe in tests) confined:
//
//   - in its own process group, killed as a group (SIGKILL) when its
//     context ends, and by the kernel should the worker die (Pdeathsig);
//   - as an unprivileged user (cred) when the worker runs as root;
//   - in its own, empty network namespace (only a down loopback) when
//     netns is set; a worker that is not root gets it inside a user
//     namespace that maps only its own uid and gid, when the kernel lets
//     it create one (userNamespaces), else the host's network (hostWhy
//     says why);
//   - with RLIMIT_AS (address space), RLIMIT_CORE 0 and RLIMIT_FSIZE set
//     before the program starts: util-linux's prlimit (or, without it,
//     sh's ulimit) sets them on itself, already as the sandbox user, and
//     execs the program. (Setting them from outside with prlimit(2)
//     would need CAP_SYS_RESOURCE for a process of another user, and
//     leaves the program unlimited for its first instants.)
//   - with a minimal environment (no DEBUGINFOD_URLS, HOME and TMPDIR in a
//     private run directory) and /dev/null as stdin;
//   - with stdout kept up to maxOutput bytes and stderr up to maxStderr,
//     the rest counted and dropped.
type sandbox struct {
	cred      *syscall.Credential // nil: run as the worker's own user
	uid, gid  int                 // whom the program runs as
	userName  string
	netns     bool
	userns    bool   // netns needs a user namespace (not root)
	hostWhy   string // why the network is the host's when none was wanted
	memLimit  int64  // RLIMIT_AS in bytes; 0: none
	maxOutput int64
	maxStderr int64
	prlimit   string // util-linux prlimit, "" to use sh's ulimit
}

// Limits of the sandbox beyond the configurable ones.
const (
	sandboxFileSizeLimit = 64 << 20 // RLIMIT_FSIZE: GDB writes no files
	sandboxKillGrace     = 2 * time.Second
)

// newSandbox resolves the user and checks what isolation is possible.
// userName "" means "nobody" when the worker is root, else the worker's
// own user. network is "none" (fail when gdb cannot get a network
// namespace), "host", or "": none when possible, else the host's network
// with hostWhy saying why.
func newSandbox(userName, network string, memLimit, maxOutput int64) (*sandbox, error) {
	s := &sandbox{uid: os.Getuid(), gid: os.Getgid(), memLimit: memLimit, maxOutput: maxOutput, maxStderr: 1 << 20}
	root := os.Geteuid() == 0
	if userName == "" && root {
		userName = "nobody"
	}
	if userName != "" {
		u, err := lookupSandboxUser(userName)
		if err != nil {
			return nil, err
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("sandbox user %q: uid %q gid %q are not numbers", userName, u.Uid, u.Gid)
		}
		if uid != os.Geteuid() || gid != os.Getegid() {
			if !root {
				return nil, fmt.Errorf("sandbox user %q: only root can run gdb as another user", userName)
			}
			s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		}
		s.uid, s.gid, s.userName = uid, gid, u.Username
	}
	switch network {
	case "", "none":
		if root {
			s.netns = true
			break
		}
		switch err := userNamespaces(); {
		case err == nil:
			s.netns, s.userns = true, true
		case network == "none":
			return nil, fmt.Errorf("sandbox network none: gdb cannot get its own network namespace: %w; configure the network as host to run gdb with the host's", err)
		default:
			s.hostWhy = fmt.Sprintf("not isolated: %v", err)
		}
	case "host":
	default:
		return nil, fmt.Errorf("sandbox network %q: want none or host", network)
	}
	if s.userns && s.cred != nil {
		return nil, errors.New("sandbox: a user namespace and a user switch do not mix")
	}
	if p, err := exec.LookPath("prlimit"); err == nil {
		s.prlimit = p
	} else if _, err := os.Stat("/bin/sh"); err != nil {
		return nil, errors.New("sandbox: neither prlimit nor /bin/sh to set the limits with")
	}
	return s, nil
}

// userNSProbe is the outcome of the one probe for userNamespaces.
var userNSProbe struct {
	once sync.Once
	err  error
}

// userNamespaces reports whether this process may create a user
// namespace with a network namespace in it, as a worker that is not root
// needs to isolate gdb's network: kernels may forbid it to unprivileged
// users (a sysctl, max_user_namespaces = 0, a seccomp or LSM policy). It
// probes once, starting /bin/sh there.
func userNamespaces() error {
	userNSProbe.once.Do(func() {
		cmd := exec.Command("/bin/sh", "-c", "exit 0")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}},
		}
		out, err := cmd.CombinedOutput()
		why := ""
		switch {
		case errors.Is(err, syscall.ENOSPC):
			why = ": the user namespace limit (max_user_namespaces) is reached"
		case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
			why = ": forbidden to unprivileged users (sysctl or security policy)"
		}
		if err != nil {
			userNSProbe.err = fmt.Errorf("this user may not create a user namespace%s (%v%s)", why, err, strings.TrimSpace(" "+string(out)))
		}
	})
	return userNSProbe.err
}

func lookupSandboxUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, nerr := strconv.Atoi(name); nerr == nil {
		if u, ierr := user.LookupId(name); ierr == nil {
			return u, nil
		}
	}
	return nil, fmt.Errorf("sandbox user %q: %w", name, err)
}

// sandboxResult is how a sandboxed run ended.
type sandboxResult struct {
	Stdout        []byte
	Stderr        []byte
	StdoutDropped int64 // bytes of stdout beyond maxOutput
	ExitCode      int   // -1 when killed by a signal
	Signal        syscall.Signal
	TimedOut      bool // killed because ctx ended
	Elapsed       time.Duration
}

// run runs name with args in dir under the sandbox until it exits or ctx
// ends; then the whole process group is killed. The error is for a
// program that could not be started; how it ended is in the result.
func (s *sandbox) run(ctx context.Context, dir string, env []string, name string, args ...string) (*sandboxResult, error) {
	return s.runFiles(ctx, dir, env, nil, name, args...)
}

// runFiles is run with files open in the program as descriptors 3, 4, ...
func (s *sandbox) runFiles(ctx context.Context, dir string, env []string, files []*os.File, name string, args ...string) (*sandboxResult, error) {
	argv := append(s.limitArgs(), name)
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], args...)...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.ExtraFiles = files
	stdout := &boundedBuffer{max: s.maxOutput}
	stderr := &boundedBuffer{max: s.maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	if s.netns {
		attr.Cloneflags |= syscall.CLONE_NEWNET
	}
	if s.userns {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: s.uid, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: s.gid, HostID: os.Getgid(), Size: 1}}
	}
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error {
		// The negative pid names the process group: GDB and whatever it
		// started (shell commands, python subprocesses).
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = sandboxKillGrace
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(name), err)
	}
	res := &sandboxResult{}
	werr := cmd.Wait()
	res.Elapsed = time.Since(start)
	res.Stdout, res.Stderr, res.StdoutDropped = stdout.buf.Bytes(), stderr.buf.Bytes(), stdout.dropped
	res.TimedOut = ctx.Err() != nil
	res.ExitCode = -1
	if ps := cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) && !errors.Is(werr, exec.ErrWaitDelay) && !res.TimedOut {
		return res, fmt.Errorf("wait for %s: %w", filepath.Base(name), werr)
	}
	return res, nil
}

// limitArgs is the command that sets the limits and execs the program
// named after it.
func (s *sandbox) limitArgs() []string {
	if s.prlimit != "" {
		a := []string{s.prlimit, "--core=0", fmt.Sprintf("--fsize=%d", sandboxFileSizeLimit)}
		if s.memLimit > 0 {
			a = append(a, fmt.Sprintf("--as=%d", s.memLimit))
		}
		return append(a, "--")
	}
	// ulimit counts -v in KiB and -f in 512-byte blocks.
	script := fmt.Sprintf("ulimit -c 0 && ulimit -f %d", sandboxFileSizeLimit/512)
	if s.memLimit > 0 {
		script += fmt.Sprintf(" && ulimit -v %d", s.memLimit/1024)
	}
	return []string{"/bin/sh", "-c", script + ` && exec "$0" "$@"`}
}

// env is the whole environment of a sandboxed program: no variable of the
// worker's leaks in (DEBUGINFOD_URLS, proxies, credentials).
func (s *sandbox) env(runDir string) []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + runDir,
		"TMPDIR=" + runDir,
		"LC_ALL=C",
		"TERM=dumb",
		"SHELL=/bin/sh",
	}
}

// describe says in words how programs run, for the log.
func (s *sandbox) describe() string {
	var parts []string
	if s.cred != nil {
		parts = append(parts, fmt.Sprintf("as %s (uid %d)", s.userName, s.uid))
	} else {
		parts = append(parts, fmt.Sprintf("as uid %d", s.uid))
	}
	switch {
	case s.netns:
		parts = append(parts, "no network")
	case s.hostWhy != "":
		parts = append(parts, "host network ("+s.hostWhy+")")
	default:
		parts = append(parts, "host network")
	}
	if s.memLimit > 0 {
		parts = append(parts, "address space "+gdbSize(s.memLimit))
	}
	return strings.Join(parts, ", ")
}

// boundedBuffer keeps the first max bytes written and counts the rest.
type boundedBuffer struct {
	buf     bytes.Buffer
	max     int64
	dropped int64
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := b.max - int64(b.buf.Len())
	if room < 0 {
		room = 0
	}
	if int64(len(p)) <= room {
		b.buf.Write(p)
		return len(p), nil
	}
	b.buf.Write(p[:room])
	b.dropped += int64(len(p)) - room
	return len(p), nil
}
