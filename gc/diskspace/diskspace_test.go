package diskspace

import (
	"errors"
	"strings"
	"testing"
)

// fakeFS is a file system of 100 GiB with free bytes free.
func fakeFS(free int64) func(string) (int64, int64, error) {
	return func(string) (int64, int64, error) { return free, 100 << 30, nil }
}

func TestCheck(t *testing.T) {
	statErr := errors.New("no such file system")
	tests := []struct {
		name   string
		policy Policy
		write  int64
		low    bool   // want a *LowError
		says   string // in its message
		err    error  // or this error
	}{
		{name: "no minimum", policy: Policy{statfs: func(string) (int64, int64, error) { return 0, 0, statErr }}},
		{name: "percent met", policy: Policy{MinPercent: 10, statfs: fakeFS(20 << 30)}},
		{name: "percent not met", policy: Policy{MinPercent: 10, statfs: fakeFS(5 << 30)}, low: true,
			says: "5.0 GiB free is below the 10% minimum (10.0 GiB)"},
		{name: "a write past the percent", policy: Policy{MinPercent: 10, statfs: fakeFS(11 << 30)}, write: 2 << 30, low: true,
			says: "11.0 GiB free, 2.0 GiB to write: less than the 10% minimum (10.0 GiB) would stay free"},
		{name: "a write within the percent", policy: Policy{MinPercent: 10, statfs: fakeFS(11 << 30)}, write: 1 << 30},
		{name: "bytes beat percent", policy: Policy{MinPercent: 1, MinBytes: 8 << 30, statfs: fakeFS(5 << 30)}, low: true,
			says: "5.0 GiB free is below the minimum of 8.0 GiB"},
		{name: "negative write", policy: Policy{MinBytes: 1 << 30, statfs: fakeFS(2 << 30)}, write: -5 << 30},
		{name: "more than the disk", policy: Policy{MinPercent: 100.1, statfs: fakeFS(100 << 30)}, low: true, says: "100.1% minimum"},
		{name: "statfs fails", policy: Policy{MinPercent: 10, statfs: func(string) (int64, int64, error) { return 0, 0, statErr }}, err: statErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.write)
			var le *LowError
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) || errors.Is(err, ErrLow) {
					t.Fatalf("Check: %v, want %v", err, tt.err)
				}
			case tt.low:
				if !errors.As(err, &le) || !errors.Is(err, ErrLow) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("Check: %v, want a LowError saying %q", err, tt.says)
				}
			case err != nil:
				t.Fatalf("Check: %v, want nil", err)
			}
		})
	}
}

// TestPauseAndLow: Pause says a sync paused only when the disk is low (a
// statfs failure does not stop syncs); Low reports the free bytes for the
// status page; a nil policy has no minimum.
func TestPauseAndLow(t *testing.T) {
	low := &Policy{MinPercent: 10, statfs: fakeFS(1 << 30)}
	if err := low.Pause(); !errors.Is(err, ErrLow) || !strings.HasPrefix(err.Error(), "paused: ") || !strings.HasSuffix(err.Error(), "; run gc") {
		t.Errorf("Pause on a low disk: %v", err)
	}
	if free, isLow, err := low.Low(); free != 1<<30 || !isLow || err != nil {
		t.Errorf("Low on a low disk: %d %v %v", free, isLow, err)
	}
	broken := &Policy{MinPercent: 10, statfs: func(string) (int64, int64, error) { return 0, 0, errors.New("EIO") }}
	if err := broken.Pause(); err != nil {
		t.Errorf("Pause when statfs fails: %v, want nil", err)
	}
	if _, _, err := broken.Low(); err == nil {
		t.Error("Low when statfs fails: no error")
	}
	var none *Policy
	if err := none.Check(1 << 60); err != nil {
		t.Errorf("nil policy Check: %v", err)
	}
	if free, isLow, err := none.Low(); free != 0 || isLow || err != nil {
		t.Errorf("nil policy Low: %d %v %v", free, isLow, err)
	}
	real := &Policy{Dir: t.TempDir(), MinPercent: 100.1}
	if err := real.Check(0); !errors.Is(err, ErrLow) {
		t.Errorf("100.1%% of a real file system: %v, want ErrLow", err)
	}
	if free, total, err := real.Usage(); err != nil || free <= 0 || total < free {
		t.Errorf("Usage of a real file system: %d of %d, %v", free, total, err)
	}
}
