package worker

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// Backtraces as GDB prints them for the fixture programs: glibc 2.36 and
// libstdc++ with their debuginfo, and without it ("from /lib64/...").
const (
	terminateBT = `[Current thread is 1 (LWP 9)]
#0  __pthread_kill_implementation (threadid=<optimized out>, signo=signo@entry=6, no_tid=no_tid@entry=0) at ./nptl/pthread_kill.c:44

Thread 1 (LWP 9):
#0  __pthread_kill_implementation (threadid=<optimized out>, signo=signo@entry=6, no_tid=no_tid@entry=0) at ./nptl/pthread_kill.c:44
        tid = <optimized out>
#1  0x00007f0000091f1f in __pthread_kill_internal (signo=6, threadid=<optimized out>) at ./nptl/pthread_kill.c:78
#2  0x00007f0000042472 in __GI_raise (sig=sig@entry=6) at ../sysdeps/posix/raise.c:26
#3  0x00007f000002c4b2 in __GI_abort () at ./stdlib/abort.c:79
#4  0x00007f00002a0919 in __gnu_cxx::__verbose_terminate_handler () at ../../../../src/libstdc++-v3/libsupc++/vterminate.cc:95
#5  0x00007f00002abe1a in __cxxabiv1::__terminate (handler=<optimized out>) at ../../../../src/libstdc++-v3/libsupc++/eh_terminate.cc:48
#6  0x00007f00002abe85 in std::terminate () at ../../../../src/libstdc++-v3/libsupc++/eh_terminate.cc:58
#7  0x00007f00002ac0d8 in __cxxabiv1::__cxa_throw (obj=<optimized out>, tinfo=0x4010 <typeinfo for std::runtime_error>, dest=0x7f00002c1e40 <std::runtime_error::~runtime_error()>) at ../../../../src/libstdc++-v3/libsupc++/eh_throw.cc:98
#8  0x0000555555555234 in parse (s="bad (input)") at thrower.cc:10
        msg = "bad (input)"
#9  0x0000555555555189 in main () at thrower.cc:20
`
	noLibcDebuginfoBT = `[Current thread is 1 (LWP 9)]
Thread 1 (LWP 9):
#0  0x00007ffff7a8e0fc in ?? () from /lib64/libc.so.6
#1  0x00007ffff7a40472 in raise () from /lib64/libc.so.6
#2  0x00007ffff7a2a4b2 in abort () from /lib64/libc.so.6
#3  0x0000555555555189 in main () at t.cc:9
`
)

// TestRateBacktrace: the quality and score are satyr's
// sr_gdb_stacktrace_quality_complex and abrt-action-analyze-backtrace's
// mapping of it, worked out by hand for each backtrace (0.25 q1 + 0.35 q2
// + 0.40 q3 over good frames: a function name and a source file, after
// normalisation).
func TestRateBacktrace(t *testing.T) {
	tests := []struct {
		name             string
		out              string
		score            int
		quality          float64
		all, crash, top  FrameCount
		named            int
		usable, crashHit bool
	}{
		{"all named, one thread", `[Current thread is 1 (LWP 42)]
#0  crashme_dispatch (cmd=0x0) at libcrashme.c:12

Thread 1 (LWP 42):
#0  crashme_dispatch (cmd=0x0) at libcrashme.c:12
        x = 1
#1  0x00007ffff7fb9123 in crashme_run (cmd=0x0) at libcrashme.c:20
#2  0x0000555555555189 in main () at crashme.c:9
`, 4, 1, FrameCount{3, 3}, FrameCount{3, 3}, FrameCount{3, 3}, 3, true, true},
		{"nothing named", "Thread 1 (LWP 7):\n#0  0x00007ffff7fb9123 in ?? ()\n#1  0x00007ffff7fb9456 in ?? ()\n",
			0, 0, FrameCount{0, 2}, FrameCount{0, 2}, FrameCount{0, 2}, 0, false, true},
		// The abort and terminate path goes (the deepest exit frame,
		// abort, and all above it; then the removable C++ frames): what
		// is left is the program's.
		{"uncaught exception, glibc and libstdc++ with debuginfo", terminateBT,
			4, 1, FrameCount{2, 2}, FrameCount{2, 2}, FrameCount{2, 2}, 10, true, true},
		// "from" a shared library is no source file, so raise and abort
		// are no exit frames and stay: 1 good frame of 4 everywhere.
		{"abort path without libc debuginfo", noLibcDebuginfoBT,
			0, 0.25, FrameCount{1, 4}, FrameCount{1, 4}, FrameCount{1, 4}, 3, true, true},
		// The brief's case: q1 = 2/4 (two unnamed frames of thread 1),
		// q2 = q3 = 1: 0.125 + 0.35 + 0.4.
		{"crash thread is the current one", `[Current thread is 2 (LWP 11)]
Thread 1 (LWP 10):
#0  0x00007ffff7a8e0fc in ?? ()
#1  0x00007ffff7a8e0fc in ?? ()
Thread 2 (LWP 11):
#0  f () at a.c:1
#1  main () at a.c:2
`, 3, 0.875, FrameCount{2, 4}, FrameCount{2, 2}, FrameCount{2, 2}, 2, true, true},
		// Without "[Current thread is", the thread whose top frame is the
		// function of the frame GDB printed on loading the core.
		{"crash thread from the crash frame", `#0  0x0000555555555139 in crash_here (p=0x0) at c.c:5
5	  *p = 1;

Thread 2 (LWP 11):
#0  0x00007ffff7a8e0fc in ?? ()
#1  0x00007ffff7a8e0fc in ?? ()
#2  0x00007ffff7a8e0fc in ?? ()
Thread 1 (LWP 10):
#0  0x0000555555555139 in crash_here (p=0x0) at c.c:5
#1  0x00007ffff7a8e0fc in ?? ()
`, 0, 0.25*0.2 + 0.35*0.5 + 0.4*0.5, FrameCount{1, 5}, FrameCount{1, 2}, FrameCount{1, 2}, 1, true, true},
		// No crashing thread: the quality is q1 alone.
		{"no crashing thread found", "Thread 2 (LWP 11):\n#0  f () at a.c:1\n#1  0x1 in ?? ()\nThread 1 (LWP 10):\n#0  g () at a.c:3\n",
			1, 2.0 / 3, FrameCount{2, 3}, FrameCount{}, FrameCount{}, 2, true, false},
		// A call through a null pointer: the top "0x0 in ??" frame goes.
		{"null call", "Thread 1 (LWP 3):\n#0  0x0000000000000000 in ?? ()\n#1  0x0000555555555139 in main () at n.c:4\n",
			4, 1, FrameCount{1, 1}, FrameCount{1, 1}, FrameCount{1, 1}, 1, true, true},
		// Recursion folds into one frame: f and ?? are left, 1 of 2.
		{"recursion", "Thread 1 (LWP 3):\n#0  f (n=0) at r.c:2\n#1  0x1139 in f (n=1) at r.c:3\n#2  0x1139 in f (n=2) at r.c:3\n#3  0x1189 in ?? ()\n",
			0, 0.5, FrameCount{1, 2}, FrameCount{1, 2}, FrameCount{1, 2}, 3, true, true},
		// A fortify failure: everything down to __strcpy_chk goes.
		{"fortify failure", `Thread 1 (LWP 5):
#0  __pthread_kill_implementation (threadid=<optimized out>, signo=signo@entry=6, no_tid=no_tid@entry=0) at ./nptl/pthread_kill.c:44
#1  0x00007f0000042472 in __GI_raise (sig=sig@entry=6) at ../sysdeps/posix/raise.c:26
#2  0x00007f000002c4b2 in __GI_abort () at ./stdlib/abort.c:79
#3  0x00007f000002d1e2 in __libc_message (action=action@entry=do_abort, fmt=fmt@entry=0x7f00001a0b3d "*** %s ***: terminated\n") at ../sysdeps/posix/libc_fatal.c:155
#4  0x00007f0000125f32 in __GI___fortify_fail (msg=msg@entry=0x7f00001a0ad3 "buffer overflow detected") at ./debug/fortify_fail.c:26
#5  0x00007f0000124770 in __chk_fail () at ./debug/chk_fail.c:28
#6  0x00007f0000123f66 in __strcpy_chk (dest=0x7ffc0, src=0x2004 "too long", destlen=4) at ./debug/strcpy_chk.c:30
#7  0x0000555555555172 in copy (s=0x2004 "too long") at f.c:4
#8  0x0000555555555189 in main () at f.c:9
`, 4, 1, FrameCount{2, 2}, FrameCount{2, 2}, FrameCount{2, 2}, 9, true, true},
		// Only the top five frames make q3: 5 of 5 here, 5 of 7 in the
		// thread.
		{"top five", "Thread 1 (LWP 5):\n#0  a () at t.c:1\n#1  b () at t.c:2\n#2  c () at t.c:3\n#3  d () at t.c:4\n#4  e () at t.c:5\n#5  0x1 in ?? ()\n#6  0x2 in ?? ()\n",
			3, 0.25*5/7.0 + 0.35*5/7.0 + 0.4, FrameCount{5, 7}, FrameCount{5, 7}, FrameCount{5, 5}, 5, true, true},
		// A signal handler frame is good; "from" an executable (not a
		// shared library) counts as a source file, as satyr reads it.
		{"signal handler, from an executable", "Thread 1 (LWP 5):\n#0  0x1 in handler () from /usr/bin/prog\n#1  <signal handler called>\n#2  0x2 in ?? ()\n",
			1, 2.0 / 3, FrameCount{2, 3}, FrameCount{2, 3}, FrameCount{2, 3}, 1, true, true},
		{"no thread heads", "#0  f () at a.c:1\n#1  0x1 in ?? ()\n",
			0, 0.5, FrameCount{1, 2}, FrameCount{1, 2}, FrameCount{1, 2}, 1, true, true},
		{"empty", "", 0, 0, FrameCount{}, FrameCount{}, FrameCount{}, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := RateBacktrace(tt.out)
			if r.Score != tt.score || math.Abs(r.Quality-tt.quality) > 1e-6 || r.All != tt.all || r.Crash != tt.crash ||
				r.Top != tt.top || r.Named != tt.named || r.Usable() != tt.usable || r.CrashFound != tt.crashHit {
				t.Errorf("RateBacktrace = %+v (usable %v)\nwant score %d quality %.4f all %v crash %v top %v named %d usable %v crash found %v",
					r, r.Usable(), tt.score, tt.quality, tt.all, tt.crash, tt.top, tt.named, tt.usable, tt.crashHit)
			}
		})
	}
}

// TestRatingThresholds: ABRT's mapping of quality to 0-4 on its
// thresholds, in single precision as abrt-action-analyze-backtrace
// computes and compares (0.7 and 0.9 come out a hair under the decimal
// but equal to 0.7f and 0.9f: ratings 2 and 4).
func TestRatingThresholds(t *testing.T) {
	// frames returns good frames (each its own function) then bad ones.
	frames := func(good, bad int) string {
		s := ""
		for i := range good {
			s += fmt.Sprintf("#%d  f%d () at a.c:%d\n", i, i, i+1)
		}
		for i := range bad {
			s += fmt.Sprintf("#%d  0x%x in ?? ()\n", good+i, i+1)
		}
		return s
	}
	tests := []struct {
		name    string
		out     string
		quality float64
		score   int
	}{
		{"2 of 5", "Thread 1 (LWP 1):\n" + frames(2, 3), 0.4, 0},
		{"3 of 5", "Thread 1 (LWP 1):\n" + frames(3, 2), 0.6, 1},
		{"5 of 10, top 5 good", "Thread 1 (LWP 1):\n" + frames(5, 5), 0.7, 2},
		{"4 of 5", "Thread 1 (LWP 1):\n" + frames(4, 1), 0.8, 3},
		{"crash thread good, 2 bad elsewhere", "[Current thread is 1 (LWP 1)]\nThread 1 (LWP 1):\n" + frames(3, 0) +
			"Thread 2 (LWP 2):\n" + frames(0, 2), 0.9, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := RateBacktrace(tt.out)
			if r.Score != tt.score || math.Abs(r.Quality-tt.quality) > 1e-6 {
				t.Errorf("RateBacktrace = %v (quality %.9f), want score %d quality %.2f", r, r.Quality, tt.score, tt.quality)
			}
		})
	}
}

// TestParseFrame: function names as GDB prints C and C++ frames, and the
// source file satyr reads (none "from" a shared library).
func TestParseFrame(t *testing.T) {
	tests := []struct {
		line, name, source string
	}{
		{"#3  0x00007f00 in std::vector<int, std::allocator<int> >::at (this=0x1, __n=5) at /usr/include/c++/12/bits/stl_vector.h:1154",
			"std::vector<int, std::allocator<int> >::at", "/usr/include/c++/12/bits/stl_vector.h"},
		{`#1  0x1 in std::operator<< <std::char_traits<char> > (__out=..., __s=0x2 "a)") at /usr/include/c++/12/ostream:612`,
			"std::operator<< <std::char_traits<char> >", "/usr/include/c++/12/ostream"},
		{"#0  (anonymous namespace)::f (x=1) at a.cc:3", "(anonymous namespace)::f", "a.cc"},
		{"#2  0x2 in main::{lambda()#1}::operator() (__closure=0x3) at l.cc:4", "main::{lambda()#1}::operator()", "l.cc"},
		{"#0  0x00007f00 in ?? () from /lib64/libc.so.6", "??", ""},
		{"#0  0x00007f00 in g_main_loop_run () from /usr/lib64/libglib-2.0.so", "g_main_loop_run", ""},
		{"#0  0x00007f00 in f () from /usr/bin/prog", "f", "/usr/bin/prog"},
		{"#4  f (x=1)\n    at wrapped.c:7", "f", "wrapped.c"},
		{"#5  0x0000000000000002 in  ()", "", ""},
		{"#6  <signal handler called>", "", ""},
	}
	for _, tt := range tests {
		f := parseFrame(tt.line)
		if f.name != tt.name || f.source != tt.source {
			t.Errorf("parseFrame(%q) = name %q source %q, want %q %q", tt.line, f.name, f.source, tt.name, tt.source)
		}
	}
}

// TestRatingString: the rating in the words the task status shows after
// "Backtrace rating: " (retrace's TestUnusableBacktrace and the
// retrace-client tests expect the first's start).
func TestRatingString(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"nothing named", "Thread 1 (LWP 7):\n#0  0x00007f00000010fc in ?? ()\n#1  0x00007f0000001234 in ?? ()\n",
			"0/4 (quality 0.00: 0 of 2 frames of the crashing thread, 0 of 2 of its top 5 and 0 of 2 of all threads have a function name and a source file)"},
		{"other threads", "[Current thread is 2 (LWP 11)]\nThread 1 (LWP 10):\n#0  0x1 in ?? ()\n#1  0x2 in ?? ()\nThread 2 (LWP 11):\n#0  f () at a.c:1\n#1  main () at a.c:2\n",
			"3/4 (quality 0.88: 2 of 2 frames of the crashing thread, 2 of 2 of its top 5 and 2 of 4 of all threads have a function name and a source file)"},
		{"no crashing thread", "Thread 2 (LWP 11):\n#0  f () at a.c:1\nThread 1 (LWP 10):\n#0  0x1 in ?? ()\n",
			"0/4 (quality 0.50: 1 of 2 frames of all threads have a function name and a source file; no crashing thread found)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RateBacktrace(tt.out).String(); got != tt.want {
				t.Errorf("String() = %q\nwant         %q", got, tt.want)
			}
		})
	}
}

// FuzzRateBacktrace: GDB prints what a core holds, so a crafted core
// chooses the function names and arguments RateBacktrace reads; it must
// not panic, and the rating stays in range and consistent.
func FuzzRateBacktrace(f *testing.F) {
	for _, s := range []string{terminateBT, noLibcDebuginfoBT, "", "#0 ", "Thread 1 (LWP 1):\n#0  (((\n#1  0x in ",
		"Thread 1 (LWP 1):\n#0  operator<< (\"\\\n", "#0  f (x=\"a)\") at \n#0  0x0 in ?? ()\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		r := RateBacktrace(out)
		if r.Score < 0 || r.Score > 4 || r.Quality < 0 || r.Quality > 1 || r.All.Good > r.All.Frames ||
			r.Crash.Good > r.Crash.Frames || r.Top.Frames > topFrames || r.Top.Good > r.Top.Frames {
			t.Errorf("RateBacktrace(%q) = %+v", out, r)
		}
		if !strings.HasPrefix(r.String(), fmt.Sprintf("%d/4 (quality ", r.Score)) {
			t.Errorf("String() = %q", r.String())
		}
	})
}
