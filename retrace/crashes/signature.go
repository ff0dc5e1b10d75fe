package crashes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// FramesInSignature is how many frames with a function name, after the
// skipped ones, make a signature (as ABRT's duphash and satyr take three).
const FramesInSignature = 3

// Bounds on what a signature takes of a backtrace: GDB prints what the
// core holds, so a crafted core chooses its function names.
const (
	// MaxFunctionLen cuts a normalised function name (in bytes, at a
	// rune boundary).
	MaxFunctionLen = 160
	// maxLineLen is the longest frame line looked at; the rest is cut.
	maxLineLen = 8 << 10
	// maxScan is how much of a backtrace is read for a signature.
	maxScan = 4 << 20
)

// SkipFrames is the documented list of frames that every abort or signal
// path has, and that say nothing about which bug it was: the top frames
// of the crashing thread that match are skipped (Socorro's prefix and
// skip lists, ABRT's duphash do the same). An entry ending in '*' is a
// prefix. Names are matched after normalisation (see [Normalize]).
var SkipFrames = []string{
	// signal delivery and abort
	"raise", "gsignal", "abort", "__GI_*", "__libc_*", "__pthread_kill*", "pthread_kill",
	"__restore_rt", "__kernel_vsyscall", "<signal handler called>", "killpg", "kill",
	// assertions and glibc's fatal paths
	"__assert_fail", "__assert_fail_base", "__assert_perror_fail", "__assert",
	"__malloc_assert", "malloc_printerr", "__fortify_fail", "__chk_fail",
	"__stack_chk_fail", "__stack_chk_fail_local", "__fortify_fail_abort",
	// C++ termination
	"std::terminate", "std::__terminate", "__cxxabiv1::__terminate", "__cxa_throw",
	"__cxa_rethrow", "__cxa_call_terminate", "__cxa_pure_virtual", "__cxa_deleted_virtual",
	"__gnu_cxx::__verbose_terminate_handler", "std::__throw_*", "std::__glibcxx_assert_fail",
	"_Unwind_*", "__clang_call_terminate",
	// GLib's and Rust's abort paths
	"g_assertion_message*", "g_log*", "g_logv", "g_abort",
	"core::panicking::*", "std::panicking::*", "rust_panic", "__rust_start_panic",
}

// A Signature names one crash, the same in every version of the package:
// the package's name, the signal that killed the process and the first
// [FramesInSignature] frames of the crashing thread that have a function
// name once [SkipFrames] are skipped, normalised ([Normalize]).
type Signature struct {
	// ID is the first 16 bytes of the SHA-256 of Text, in hex: the
	// signature's name in URLs.
	ID      string   `json:"id"`
	Text    string   `json:"signature"`
	Package string   `json:"package"`
	Signal  string   `json:"signal"`
	Frames  []string `json:"frames"`
}

// Sign computes the signature of a GDB backtrace (the output of "thread
// apply all backtrace", with the lines GDB prints on loading the core,
// which name the current thread) for package name pkg and signal number
// signal (0: none, a live process's core).
//
// The crashing thread is the one GDB makes current ("[Current thread is
// N"), else the first printed. Its frames are read top down; those without
// a function name ("??") never count; the leading ones that match
// [SkipFrames] are skipped; the next FramesInSignature make the
// signature. When every named frame matches the list, the signature is
// made of those instead, so that such crashes still group. No named
// frame at all gives the frame list "??".
func Sign(bt string, signal int, pkg string) Signature {
	names := crashingFrames(bt)
	var picked []string
	start := 0
	for start < len(names) && skipped(names[start]) {
		start++
	}
	if start == len(names) {
		start = 0
	}
	for _, n := range names[start:] {
		picked = append(picked, n)
		if len(picked) == FramesInSignature {
			break
		}
	}
	if len(picked) == 0 {
		picked = []string{"??"}
	}
	s := Signature{Package: cleanText(pkg, 128), Signal: SignalName(signal), Frames: picked}
	s.Text = s.Package + " " + s.Signal + " " + strings.Join(picked, " < ")
	sum := sha256.Sum256([]byte(s.Text))
	s.ID = hex.EncodeToString(sum[:16])
	return s
}

// ValidID reports whether id can be a signature's ID.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// signalNames are the signals that end a process with a core.
var signalNames = map[int]string{
	1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
	8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
	24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS",
}

// SignalName names a signal number as a signature says it: "SIGSEGV",
// "signal 40", or "nosignal" for 0 (a live process's core).
func SignalName(sig int) string {
	if sig == 0 {
		return "nosignal"
	}
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return fmt.Sprintf("signal%d", sig)
}

var (
	sigThreadRE  = regexp.MustCompile(`^Thread (\d+) `)
	sigCurrentRE = regexp.MustCompile(`(?m)^\[Current thread is (\d+) `)
	sigFrameRE   = regexp.MustCompile(`^#\d+\s+(?:0x[0-9a-fA-F]+ in )?(.*)$`)
)

// crashingFrames returns the normalised function names of the crashing
// thread's frames, "??" dropped.
func crashingFrames(bt string) []string {
	if len(bt) > maxScan {
		bt = bt[:maxScan]
	}
	current := ""
	if m := sigCurrentRE.FindStringSubmatch(bt); m != nil {
		current = m[1]
	}
	body := bt
	if i := strings.Index(bt, "\nThread "); i >= 0 && !strings.HasPrefix(bt, "Thread ") {
		body = bt[i+1:]
	} else if i < 0 && !strings.HasPrefix(bt, "Thread ") {
		// One "bt": frames only (the frame GDB prints on loading the
		// core comes first and is the same as #0).
		return frameNames(body, "", false)
	}
	target := current
	if target == "" {
		if m := sigThreadRE.FindStringSubmatch(body); m != nil {
			target = m[1]
		}
	}
	return frameNames(body, target, true)
}

// frameNames reads the frames of thread id in body (all frames when
// threads is false).
func frameNames(body, id string, threads bool) []string {
	var out []string
	in := !threads
	for line := range strings.Lines(body) {
		line = strings.TrimRight(line, "\r\n")
		if threads {
			if m := sigThreadRE.FindStringSubmatch(line); m != nil {
				if in {
					break
				}
				in = m[1] == id
				continue
			}
		}
		if !in || !strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) > maxLineLen {
			line = line[:maxLineLen]
		}
		m := sigFrameRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if !threads && strings.HasPrefix(line, "#0 ") {
			// The frame gdb prints on loading the core, then "bt"
			// from #0 again: the last #0 starts the backtrace.
			out = out[:0]
		}
		name := Normalize(functionOf(m[1]))
		if name == "" || name == "??" {
			continue
		}
		out = append(out, name)
		if len(out) >= 64 {
			break
		}
	}
	return out
}

// functionOf cuts the function name off the rest of a frame line after
// "#N  [0xADDR in ]": "name (args) at file:line", "name () from lib",
// "<signal handler called>". The name ends at the first " (" outside
// template brackets and parentheses; C++ names hold parentheses
// ("(anonymous namespace)::f", "std::terminate()", "operator()").
func functionOf(rest string) string {
	if strings.HasPrefix(rest, "<signal handler called>") {
		return "<signal handler called>"
	}
	angle, paren := 0, 0
	for i := 0; i < len(rest); i++ {
		if strings.HasPrefix(rest[i:], "operator") {
			j := i + len("operator")
			for j < len(rest) && strings.IndexByte("<>=!+-*/%&|^~[]()", rest[j]) >= 0 && !strings.HasPrefix(rest[j:], "()") {
				j++
			}
			if strings.HasPrefix(rest[j:], "()") && j == i+len("operator") {
				j += 2 // operator()
			}
			i = j - 1
			continue
		}
		switch c := rest[i]; c {
		case '<':
			angle++
		case '>':
			if angle > 0 {
				angle--
			}
		case '(':
			if angle == 0 && paren == 0 && i > 0 && rest[i-1] == ' ' {
				return strings.TrimSpace(rest[:i])
			}
			paren++
		case ')':
			if paren > 0 {
				paren--
			}
		}
	}
	return strings.TrimSpace(rest)
}

var (
	cloneSuffixRE = regexp.MustCompile(`(\.(constprop|isra|part|cold|lto_priv|localalias|clone)(\.\d+)?)+$`)
	anonRE        = regexp.MustCompile(`\((anonymous namespace)\)|\{anonymous\}|` + "`anonymous namespace'")
	blanksRE      = regexp.MustCompile(`\s+`)
)

// Normalize makes a function name as GDB prints it the same in every
// build: GCC's clone suffixes (".constprop.0", ".isra.0", ".part.1",
// ".cold") go; C++ template arguments fold to "<T>" and a trailing
// parameter list "(…)" (with its cv-qualifiers) goes; anonymous
// namespaces are written "(anonymous)"; "@plt" goes; control characters
// become '?' and the name is cut at [MaxFunctionLen] bytes. Addresses and
// argument values are never part of it (functionOf leaves them out).
func Normalize(name string) string {
	name = strings.TrimSpace(name)
	if name == "" || name == "??" {
		return name
	}
	if name == "<signal handler called>" {
		return name
	}
	name = strings.TrimSuffix(name, "@plt")
	name = anonRE.ReplaceAllString(name, "(anonymous)")
	name = foldTemplates(name)
	name = dropParams(name)
	name = cloneSuffixRE.ReplaceAllString(name, "")
	name = blanksRE.ReplaceAllString(name, " ")
	return cleanText(name, MaxFunctionLen)
}

// foldTemplates replaces each outermost <...> by <T>, leaving operator<,
// operator<<, operator<=, operator-> and operator>> alone.
func foldTemplates(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		if depth == 0 && strings.HasPrefix(s[i:], "operator") {
			j := i + len("operator")
			for j < len(s) && strings.IndexByte("<>=-", s[j]) >= 0 {
				j++
			}
			b.WriteString(s[i:j])
			i = j - 1
			continue
		}
		switch s[i] {
		case '<':
			if depth == 0 {
				b.WriteString("<T>")
			}
			depth++
			continue
		case '>':
			if depth > 0 {
				depth--
				continue
			}
		}
		if depth == 0 {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// dropParams removes a demangled name's trailing parameter list
// ("ns::f(int, char const*) const" -> "ns::f"), but not the "()" of
// operator().
func dropParams(s string) string {
	t := strings.TrimSpace(s)
	for _, q := range []string{" const", " volatile", " &&", " &"} {
		t = strings.TrimSuffix(t, q)
	}
	if !strings.HasSuffix(t, ")") {
		return s
	}
	depth := 0
	for i := len(t) - 1; i >= 0; i-- {
		switch t[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				head := t[:i]
				if head == "" || strings.HasSuffix(head, "operator") || strings.HasSuffix(head, "::") {
					return s
				}
				return strings.TrimSpace(head)
			}
		}
	}
	return s
}

// cleanText makes hostile text safe to keep and show: invalid UTF-8 and
// control characters become '?', and it is cut at max bytes on a rune
// boundary.
func cleanText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// skipped reports whether a normalised function name is on [SkipFrames].
func skipped(name string) bool {
	for _, s := range SkipFrames {
		if p, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if name == s {
			return true
		}
	}
	return false
}
