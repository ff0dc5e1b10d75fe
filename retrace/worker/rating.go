package worker

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A Rating says how useful a GDB backtrace is, as ABRT rates one:
// abrt-action-analyze-backtrace takes satyr's
// sr_gdb_stacktrace_quality_complex and maps it to 0-4. RateBacktrace
// computes the same:
//
//  1. It finds the crashing thread (see [RateBacktrace]), then normalises
//     every thread as satyr does ([normalizeThread]): the frames every
//     crash of its kind has (the signal, abort and exit path, assertion
//     and fortify helpers, C++ termination, the process and thread
//     start) go, and recursion folds into one frame.
//  2. A frame is good when GDB gives both its function name (not "??")
//     and its source file ("at FILE:LINE", or "from FILE" when FILE is
//     not a shared library), or when it is "<signal handler called>".
//     A thread's quality is its share of good frames (1 when it has
//     none left).
//  3. quality = 0.25 q1 + 0.35 q2 + 0.40 q3, where q1 is the share of
//     good frames in all threads together, q2 the crashing thread's
//     quality and q3 that of its top five frames; quality = q1 when no
//     crashing thread is found.
//
// Score maps quality to ABRT's 0-4 scale: 4 from 0.9, 3 from 0.8, 2 from
// 0.7, 1 from 0.6, else 0. Like satyr, it computes in single precision,
// so that a quality on a threshold falls on the same side.
type Rating struct {
	Score   int
	Quality float64
	// All, Crash and Top count the good frames and the frames (after
	// normalisation) of all threads, of the crashing thread and of its
	// top five frames: q1, q2 and q3.
	All, Crash, Top FrameCount
	// CrashFound says whether a crashing thread was found; without one,
	// Crash and Top are zero.
	CrashFound bool
	// Named counts the crashing thread's frames (before normalisation)
	// that have a function name; all threads' when none was found.
	Named   int
	Threads int
}

// FrameCount counts good frames among frames.
type FrameCount struct{ Good, Frames int }

func (c FrameCount) String() string { return fmt.Sprintf("%d of %d", c.Good, c.Frames) }

// Usable reports whether the backtrace says anything about the crash: at
// least one frame of the crashing thread (any thread's when none was
// found) has a function name, source file or not. A task whose backtrace
// is not usable ends FINISHED_FAILURE (its backtrace is kept), because
// "#0 ?? ()" points nowhere and must not pass for a result; a low score
// alone does not fail a task, as frames named without source still say
// where the program was.
func (r Rating) Usable() bool { return r.Named > 0 }

// String says the rating in words, for the task status and log.
func (r Rating) String() string {
	if !r.CrashFound {
		return fmt.Sprintf("%d/4 (quality %.2f: %s frames of all threads have a function name and a source file; no crashing thread found)",
			r.Score, r.Quality, r.All)
	}
	return fmt.Sprintf("%d/4 (quality %.2f: %s frames of the crashing thread, %s of its top %d and %s of all threads have a function name and a source file)",
		r.Score, r.Quality, r.Crash, r.Top, topFrames, r.All)
}

// topFrames is how many frames of the crashing thread make q3.
const topFrames = 5

// Bounds on what RateBacktrace reads: GDB prints what the core holds.
const (
	maxRatedBytes  = 16 << 20 // of the whole output
	maxFrameHeader = 64 << 10 // of one frame's header, arguments included
)

// RateBacktrace rates GDB's "thread apply all backtrace" output (with the
// lines GDB prints before it, on loading the core). A backtrace without
// "Thread N" heads is one thread.
//
// The crashing thread is, as satyr finds it: the only thread when there
// is one; the one GDB makes current on loading the core ("[Current
// thread is N ...]", the thread the signal killed, where ABRT has the
// crashing TID); else the one whose top frame has the function of the
// frame GDB printed on loading the core, the one of those with an exit
// frame (abort, raise, exit ...) when several have it, the first of them
// when that does not decide (satyr takes the first after sorting).
func RateBacktrace(out string) Rating {
	if len(out) > maxRatedBytes {
		out = out[:maxRatedBytes]
	}
	bt := parseBacktrace(out)
	var r Rating
	r.Threads = len(bt.threads)
	crash := bt.crashThread()
	r.CrashFound = crash >= 0
	for i, t := range bt.threads {
		if i == crash || crash < 0 {
			for _, f := range t.frames {
				if f.named() {
					r.Named++
				}
			}
		}
	}
	norm := make([][]gdbFrame, len(bt.threads))
	for i, t := range bt.threads {
		norm[i] = normalizeThread(t.frames)
		c := countGood(norm[i])
		r.All.Good += c.Good
		r.All.Frames += c.Frames
	}
	var q1 float32
	if r.All.Frames > 0 {
		q1 = float32(r.All.Good) / float32(r.All.Frames)
	}
	q := q1
	if crash >= 0 {
		r.Crash = countGood(norm[crash])
		r.Top = countGood(norm[crash][:min(topFrames, len(norm[crash]))])
		// Each product and sum rounded to single precision, as C
		// computes it (no fused multiply-add).
		q = float32(float32(float32(0.25)*q1)+float32(float32(0.35)*r.Crash.quality())) +
			float32(float32(0.4)*r.Top.quality())
	}
	r.Quality = float64(q)
	switch {
	case q < 0.6:
		r.Score = 0
	case q < 0.7:
		r.Score = 1
	case q < 0.8:
		r.Score = 2
	case q < 0.9:
		r.Score = 3
	default:
		r.Score = 4
	}
	return r
}

// quality is a thread's share of good frames, 1 for no frames (satyr's
// sr_gdb_thread_quality).
func (c FrameCount) quality() float32 {
	if c.Frames == 0 {
		return 1
	}
	return float32(c.Good) / float32(c.Frames)
}

func countGood(fs []gdbFrame) FrameCount {
	c := FrameCount{Frames: len(fs)}
	for _, f := range fs {
		if f.signal || f.named() && f.source != "" {
			c.Good++
		}
	}
	return c
}

// A gdbFrame is what the rating reads of one frame's header.
type gdbFrame struct {
	name string // "" when GDB gave none (a signal handler frame)
	// source is the file after "at" or "from"; "" when there is none or
	// it is a shared library ("from /lib64/libc.so.6"), as satyr reads it.
	source  string
	addr    uint64
	hasAddr bool
	signal  bool // "<signal handler called>"
}

func (f gdbFrame) named() bool { return f.name != "" && f.name != "??" }

type gdbThread struct {
	number string
	frames []gdbFrame
}

// gdbBacktrace is a parsed backtrace: its threads, the frame GDB printed
// on loading the core (crash, nil when none) and the thread GDB made
// current ("" when it did not say).
type gdbBacktrace struct {
	threads []gdbThread
	crash   *gdbFrame
	current string
}

var (
	threadHeadRE  = regexp.MustCompile(`^Thread (\d+) `)
	frameStartRE  = regexp.MustCompile(`^#\d+ `)
	currentLineRE = regexp.MustCompile(`(?m)^\[Current thread is (\d+)[ \]]`)
)

// parseBacktrace reads GDB's output: what comes before the first "Thread
// N" head is the header (the frame GDB prints on loading the core, the
// current thread); each head starts a thread, each line "#N " a frame.
// Without heads, the frames are one thread; when that backtrace repeats
// "#0", the first one is the header's.
func parseBacktrace(out string) gdbBacktrace {
	var bt gdbBacktrace
	start := strings.Index(out, "\nThread ")
	if strings.HasPrefix(out, "Thread ") {
		start = 0
	} else if start >= 0 {
		start++
	}
	header := out
	if start >= 0 {
		header = out[:start]
	}
	if m := currentLineRE.FindStringSubmatch(header); m != nil {
		bt.current = m[1]
	}
	if start < 0 {
		frames := framesOf(out)
		if len(frames) == 0 {
			return bt // satyr reads no thread: rated 0
		}
		if len(frames) > 1 && strings.Count("\n"+out, "\n#0 ") > 1 {
			bt.crash = &frames[0].gdbFrame
			frames = frames[1:]
			for len(frames) > 0 && !frames[0].first {
				frames = frames[1:]
			}
		}
		t := gdbThread{}
		for _, f := range frames {
			t.frames = append(t.frames, f.gdbFrame)
		}
		bt.threads = []gdbThread{t}
		return bt
	}
	if hf := framesOf(header); len(hf) > 0 {
		bt.crash = &hf[0].gdbFrame
	}
	body := out[start:]
	for off := 0; off < len(body); {
		end := strings.IndexByte(body[off:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += off
		}
		line := body[off:end]
		if m := threadHeadRE.FindStringSubmatch(line); m != nil {
			bt.threads = append(bt.threads, gdbThread{number: m[1]})
		} else if len(bt.threads) > 0 && frameStartRE.MatchString(line) {
			t := &bt.threads[len(bt.threads)-1]
			t.frames = append(t.frames, parseFrame(body[off:min(len(body), off+maxFrameHeader)]))
		}
		off = end + 1
	}
	return bt
}

// numberedFrame is a frame with whether it was GDB's "#0".
type numberedFrame struct {
	gdbFrame
	first bool
}

// framesOf parses every frame line of s.
func framesOf(s string) []numberedFrame {
	var fs []numberedFrame
	for off := 0; off < len(s); {
		end := strings.IndexByte(s[off:], '\n')
		if end < 0 {
			end = len(s)
		} else {
			end += off
		}
		if frameStartRE.MatchString(s[off:end]) {
			fs = append(fs, numberedFrame{
				gdbFrame: parseFrame(s[off:min(len(s), off+maxFrameHeader)]),
				first:    strings.HasPrefix(s[off:], "#0 "),
			})
		}
		off = end + 1
	}
	return fs
}

// parseFrame reads the frame header at the start of s: "#N  [0xADDR in]
// NAME (ARGS) [at FILE:LINE | from FILE]" or "#N  <signal handler
// called>". The arguments and the "at" part may go on over the next
// lines, as GDB wraps them at its width.
func parseFrame(s string) gdbFrame {
	var f gdbFrame
	s = strings.TrimLeft(s[1:], "0123456789")
	s = strings.TrimLeft(s, " ")
	if strings.HasPrefix(s, "<signal handler called>") {
		f.signal = true
		return f
	}
	if strings.HasPrefix(s, "0x") {
		n := 2
		for n < len(s) && isHex(s[n]) {
			n++
		}
		a, err := strconv.ParseUint(s[2:n], 16, 64)
		f.addr, f.hasAddr = a, err == nil
		s = strings.TrimLeft(s[n:], " ")
		s = strings.TrimPrefix(s, "in ")
		s = strings.TrimLeft(s, " ")
		if rest, ok := strings.CutPrefix(s, "vtable for "); ok {
			s = rest
		}
	}
	f.name, s = cutFunctionName(s)
	s = skipArgs(strings.TrimLeft(s, " \n"))
	s = strings.TrimLeft(s, " \n")
	rest, ok := strings.CutPrefix(s, "at ")
	if !ok {
		rest, ok = strings.CutPrefix(s, "from ")
	}
	if !ok {
		return f
	}
	rest = strings.TrimLeft(rest, " ")
	n := 0
	for n < len(rest) && isFileChar(rest[n]) {
		n++
	}
	f.source = rest[:n]
	if isSharedLibrary(f.source) {
		f.source = ""
	}
	return f
}

// cutFunctionName splits s after the function name: it ends at the blank
// before the arguments' parenthesis, outside angle brackets and
// parentheses ("std::vector<int, std::allocator<int> >::at",
// "(anonymous namespace)::f", "operator<<", "operator()").
func cutFunctionName(s string) (name, rest string) {
	if strings.HasPrefix(s, "()") {
		return "", s // "0x2 in  ()": no name
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n':
			return s[:i], s[i:]
		case c == ' ' && depth == 0 && i+1 < len(s) && (s[i+1] == '(' || s[i+1] == '\n'):
			return s[:i], s[i:]
		case c == '<' || c == '(' || c == '[':
			depth++
		case c == '>' || c == ')' || c == ']':
			if depth > 0 {
				depth--
			}
		}
		if strings.HasSuffix(s[:i+1], "operator") {
			// The operator's own symbols are no brackets.
			for i+1 < len(s) && strings.IndexByte("<>=!+-*/%^&|~[](),", s[i+1]) >= 0 {
				if s[i+1] == '(' && strings.HasPrefix(s[i+1:], "()") {
					i += 2
					continue
				}
				if s[i+1] == '(' {
					break
				}
				i++
			}
		}
	}
	return s, ""
}

// skipArgs skips the parenthesised arguments at the start of s (quoted
// strings may hold parentheses).
func skipArgs(s string) string {
	if !strings.HasPrefix(s, "(") {
		return s
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\'':
			q := s[i]
			for i++; i < len(s) && s[i] != q; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[i+1:]
			}
		}
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isFileChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("_/\\+.-", c) >= 0
}

// isSharedLibrary reports whether a frame's file is a shared object, not
// a source file: after "/lib" it has ".so." or ends in ".so".
func isSharedLibrary(file string) bool {
	i := strings.Index(file, "/lib")
	if i < 0 {
		return false
	}
	tail := file[i:]
	return strings.Contains(tail, ".so.") || strings.HasSuffix(tail, ".so")
}

// crashThread returns the index of the crashing thread, -1 when none is
// found (see RateBacktrace).
func (bt gdbBacktrace) crashThread() int {
	switch {
	case len(bt.threads) == 0:
		return -1
	case len(bt.threads) == 1:
		return 0
	}
	if bt.current != "" {
		for i, t := range bt.threads {
			if t.number == bt.current {
				return i
			}
		}
	}
	if bt.crash == nil || bt.crash.name == "" {
		return -1
	}
	var same, withExit []int
	for i, t := range bt.threads {
		if len(t.frames) > 0 && t.frames[0].name == bt.crash.name {
			same = append(same, i)
			if lastExitFrame(t.frames) >= 0 {
				withExit = append(withExit, i)
			}
		}
	}
	switch {
	case len(same) == 1:
		return same[0]
	case len(withExit) == 1:
		return withExit[0]
	case len(same) > 0:
		return same[0]
	}
	return -1
}
