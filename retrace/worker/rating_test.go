package worker

import (
	"math"
	"testing"
)

func TestRateBacktrace(t *testing.T) {
	tests := []struct {
		name          string
		out           string
		score         int
		quality       float64
		frames, named int
		usable        bool
	}{
		{"all named, one thread", `#0  crashme_dispatch (cmd=0x0) at libcrashme.c:12
[Current thread is 1 (LWP 42)]

Thread 1 (LWP 42):
#0  crashme_dispatch (cmd=0x0) at libcrashme.c:12
        x = 1
#1  0x00007ffff7fb9123 in crashme_run (cmd=0x0) at libcrashme.c:20
#2  0x0000555555555189 in main () at crashme.c:9
`, 4, 1, 3, 3, true},
		{"nothing named", `Thread 1 (LWP 7):
#0  0x00007ffff7fb9123 in ?? ()
#1  0x00007ffff7fb9456 in ?? ()
`, 0, 0, 2, 0, false},
		{"abort path unnamed, program named", `[Current thread is 1 (LWP 9)]
Thread 1 (LWP 9):
#0  0x00007ffff7a8e0fc in ?? () from /lib64/libc.so.6
#1  0x00007ffff7a40472 in raise () from /lib64/libc.so.6
#2  0x00007ffff7a2a4b2 in abort () from /lib64/libc.so.6
#3  0x0000555555555189 in main () at t.cc:9
`, 2, 0.25*0.75 + 0.35*(2.0/3) + 0.40*0.75, 4, 3, true},
		{"crash thread is the current one", `[Current thread is 2 (LWP 11)]
Thread 1 (LWP 10):
#0  0x00007ffff7a8e0fc in ?? ()
#1  0x00007ffff7a8e0fc in ?? ()
Thread 2 (LWP 11):
#0  f () at a.c:1
#1  main () at a.c:2
`, 1, 0.25 + 0.35 + 0, 2, 2, true},
		{"no thread heads", "#0  f () at a.c:1\n#1  0x1 in ?? ()\n", 0, 0.25*0.5 + 0.35*0.5 + 0.40*0.5, 2, 1, true},
		{"empty", "", 0, 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := RateBacktrace(tt.out)
			if r.Score != tt.score || math.Abs(r.Quality-tt.quality) > 1e-9 || r.Frames != tt.frames || r.Named != tt.named || r.Usable() != tt.usable {
				t.Errorf("RateBacktrace = %+v (usable %v), want score %d quality %.4f frames %d named %d usable %v",
					r, r.Usable(), tt.score, tt.quality, tt.frames, tt.named, tt.usable)
			}
		})
	}
}

// TestRatingString: the rating in the words the task status shows after
// "Backtrace rating: " (retrace's TestUnusableBacktrace expects the first).
func TestRatingString(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"nothing named", "Thread 1 (LWP 7):\n#0  0x00007f00000010fc in ?? ()\n#1  0x00007f0000001234 in ?? ()\n",
			"0/4 (quality 0.00: 0 of 2 frames of the crashing thread have a function name)"},
		{"other threads", "[Current thread is 2 (LWP 11)]\nThread 1 (LWP 10):\n#0  0x1 in ?? ()\n#1  0x2 in ?? ()\nThread 2 (LWP 11):\n#0  f () at a.c:1\n#1  main () at a.c:2\n",
			"1/4 (quality 0.60: 2 of 2 frames of the crashing thread have a function name, 0 of 2 in the 1 other threads)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RateBacktrace(tt.out).String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
