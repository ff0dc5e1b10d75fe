package worker

import (
	"fmt"
	"regexp"
	"strings"
)

// A Rating says how useful a GDB backtrace is, as ABRT rates one
// (abrt-action-analyze-backtrace, after satyr's
// sr_gdb_stacktrace_quality_complex): a frame is good when GDB names its
// function (anything but "??"), and
//
//	quality = 0.25 q1 + 0.35 q2 + 0.40 q3
//
// where q1 is the share of good frames in the crashing thread, q2 that
// share among its top three frames (where the crash is), and q3 the share
// in all the other threads together (q1 when there are none). Score maps
// quality to ABRT's 0-4 scale: 4 from 0.9, 3 from 0.8, 2 from 0.7, 1 from
// 0.6, else 0. ABRT asks for 3 or more before reporting a bug.
//
// The crashing thread is the one GDB makes current when it loads the core
// ("[Current thread is N ...]"), which for a kernel core is the thread the
// signal killed; without that line, the first thread printed.
type Rating struct {
	Score   int
	Quality float64
	// Frames and Named count the crashing thread's frames and those with
	// a function name.
	Frames, Named int
	// OtherFrames and OtherNamed count the other threads' frames.
	OtherFrames, OtherNamed int
	Threads                 int
}

// Usable reports whether the backtrace says anything about the crash: at
// least one frame of the crashing thread has a function name. A task
// whose backtrace is not usable ends FINISHED_FAILURE (its backtrace is
// kept), because "#0 ?? ()" points nowhere and must not pass for a
// result.
func (r Rating) Usable() bool { return r.Named > 0 }

// String says the rating in words, for the task status and log.
func (r Rating) String() string {
	s := fmt.Sprintf("%d/4 (quality %.2f: %d of %d frames of the crashing thread have a function name",
		r.Score, r.Quality, r.Named, r.Frames)
	if r.Threads > 1 {
		s += fmt.Sprintf(", %d of %d in the %d other threads", r.OtherNamed, r.OtherFrames, r.Threads-1)
	}
	return s + ")"
}

var (
	rateThreadRE  = regexp.MustCompile(`^Thread (\d+) `)
	rateCurrentRE = regexp.MustCompile(`(?m)^\[Current thread is (\d+) `)
	// "#3  0x00007f... in name (args) at f.c:1", "#0  name (...) at ...",
	// "#1  <signal handler called>".
	rateFrameRE = regexp.MustCompile(`^#\d+\s+(?:0x[0-9a-fA-F]+ in )?(\S+)`)
)

// RateBacktrace rates GDB's "thread apply all backtrace" output (with the
// lines GDB prints before it, which name the current thread). A backtrace
// without "Thread N" heads (a single "bt") is rated as one thread.
func RateBacktrace(out string) Rating {
	current := ""
	if m := rateCurrentRE.FindStringSubmatch(out); m != nil {
		current = m[1]
	}
	type thread struct {
		id            string
		frames, named int
	}
	var threads []thread
	start := strings.Index(out, "\nThread ")
	if strings.HasPrefix(out, "Thread ") {
		start = 0
	}
	body := out
	if start >= 0 {
		body = out[start:]
	} else {
		threads = append(threads, thread{})
	}
	for line := range strings.Lines(body) {
		line = strings.TrimRight(line, "\n")
		if m := rateThreadRE.FindStringSubmatch(line); m != nil {
			threads = append(threads, thread{id: m[1]})
			continue
		}
		m := rateFrameRE.FindStringSubmatch(line)
		if m == nil || len(threads) == 0 {
			continue
		}
		t := &threads[len(threads)-1]
		t.frames++
		if m[1] != "??" {
			t.named++
		}
	}
	var r Rating
	crash := -1
	for i, t := range threads {
		if t.frames == 0 {
			continue
		}
		r.Threads++
		if crash < 0 || (current != "" && t.id == current) {
			crash = i
		}
	}
	if crash < 0 {
		return r
	}
	for i, t := range threads {
		if i == crash {
			r.Frames, r.Named = t.frames, t.named
		} else {
			r.OtherFrames += t.frames
			r.OtherNamed += t.named
		}
	}
	q1 := share(r.Named, r.Frames)
	q2 := share(topNamed(body, threads[crash].id, 3))
	q3 := q1
	if r.OtherFrames > 0 {
		q3 = share(r.OtherNamed, r.OtherFrames)
	}
	r.Quality = 0.25*q1 + 0.35*q2 + 0.40*q3
	switch q := r.Quality + 1e-9; {
	case q >= 0.9:
		r.Score = 4
	case q >= 0.8:
		r.Score = 3
	case q >= 0.7:
		r.Score = 2
	case q >= 0.6:
		r.Score = 1
	}
	return r
}

// topNamed counts the named frames among the first n frames of thread id
// ("" for a backtrace without thread heads).
func topNamed(body, id string, n int) (named, frames int) {
	in := id == ""
	for line := range strings.Lines(body) {
		line = strings.TrimRight(line, "\n")
		if m := rateThreadRE.FindStringSubmatch(line); m != nil {
			if in && id != "" {
				break
			}
			in = m[1] == id
			continue
		}
		if !in {
			continue
		}
		if m := rateFrameRE.FindStringSubmatch(line); m != nil {
			frames++
			if m[1] != "??" {
				named++
			}
			if frames == n {
				break
			}
		}
	}
	return named, frames
}

func share(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}
