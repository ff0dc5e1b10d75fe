// Package diskspace is retraced's one free-space policy: how much of the
// data directory's file system must stay free, and whether it still is.
// Every writer that can fill the disk asks the same [Policy]: a sync
// before each package it ingests, serve before it starts a sync, and the
// retrace task server before and after it unpacks an upload (507 when the
// answer is no). What frees space again is gc.
//
// It imports the standard library and golang.org/x/sys/unix only, so
// that any package may consult it: of retraced, it may import nothing.
package diskspace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrLow is what a [LowError] matches with errors.Is: the file system has
// less free space than the policy's minimum.
var ErrLow = errors.New("free disk space below the minimum")

// Policy is the free space that must stay on the file system holding Dir:
// MinPercent of its size, or MinBytes, whichever is more. The zero
// minimum (both unset) never reports low and never asks the file system.
// A nil *Policy is a policy with no minimum.
type Policy struct {
	// Dir is a directory on the file system the policy watches (the data
	// directory).
	Dir string
	// MinPercent is the share of the file system's size, in percent,
	// that must stay free (serve's min_free).
	MinPercent float64
	// MinBytes is the bytes that must stay free.
	MinBytes int64

	// statfs reads the free and total bytes of the file system holding
	// dir; tests replace it. Nil means the statfs(2) system call.
	statfs func(dir string) (free, total int64, err error)
}

// Usage reports the bytes free (to an unprivileged writer) and the size
// of the file system holding p.Dir.
func (p *Policy) Usage() (free, total int64, err error) {
	stat := p.statfs
	if stat == nil {
		stat = statfs
	}
	free, total, err = stat(p.Dir)
	if err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", p.Dir, err)
	}
	return free, total, nil
}

func statfs(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// active reports whether p sets a minimum at all.
func (p *Policy) active() bool {
	return p != nil && (p.MinPercent > 0 || p.MinBytes > 0)
}

// minimum is the bytes that must stay free of a file system of total
// bytes.
func (p *Policy) minimum(total int64) int64 {
	return max(p.MinBytes, int64(float64(total)*p.MinPercent/100))
}

// Check reports whether writing n more bytes leaves the minimum free: nil
// when it does, a *[LowError] when it does not, and the file system's
// error when it cannot tell. A negative n counts as 0.
func (p *Policy) Check(n int64) error {
	if !p.active() {
		return nil
	}
	free, total, err := p.Usage()
	if err != nil {
		return err
	}
	n = max(n, 0)
	keep := p.minimum(total)
	if free-n >= keep {
		return nil
	}
	e := &LowError{Free: free, Write: n, Min: keep}
	if keep > p.MinBytes {
		e.MinPercent = p.MinPercent
	}
	return e
}

// Low reports the free bytes and whether they are below the minimum, for
// a status page.
func (p *Policy) Low() (free int64, low bool, err error) {
	if p == nil {
		return 0, false, nil
	}
	free, total, err := p.Usage()
	if err != nil {
		return 0, false, err
	}
	return free, p.active() && free < p.minimum(total), nil
}

// Pause is what a sync asks before it starts and before each package it
// ingests: an error saying the sync paused, and why (matching [ErrLow]),
// when the minimum is not free; nil otherwise, and when the file system
// cannot tell, so that a failing statfs does not stop every sync.
func (p *Policy) Pause() error {
	err := p.Check(0)
	if !errors.Is(err, ErrLow) {
		return nil
	}
	return fmt.Errorf("paused: %w; run gc", err)
}

// LowError is a write the policy refused: the file system has Free bytes
// free and Min must stay free after Write more.
type LowError struct {
	Free  int64
	Write int64 // 0: nothing in particular, the minimum is not free now
	Min   int64
	// MinPercent is the share of the file system Min is, when the
	// minimum came from MinPercent; 0 when it came from MinBytes.
	MinPercent float64
}

func (e *LowError) Error() string {
	keep := "the minimum of " + humanBytes(e.Min)
	if e.MinPercent > 0 {
		keep = fmt.Sprintf("the %g%% minimum (%s)", e.MinPercent, humanBytes(e.Min))
	}
	if e.Write > 0 {
		return fmt.Sprintf("%s free, %s to write: less than %s would stay free", humanBytes(e.Free), humanBytes(e.Write), keep)
	}
	return fmt.Sprintf("%s free is below %s", humanBytes(e.Free), keep)
}

// Is makes errors.Is(err, ErrLow) true.
func (e *LowError) Is(target error) bool { return target == ErrLow }

// humanBytes writes n in binary units, as mirror.HumanBytes does (this
// package imports nothing of retraced).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
