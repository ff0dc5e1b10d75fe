package web

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/retraced/retraced/mirror"
)

// DiskFree reports the free bytes of the file system holding dir, and
// whether they are below minPercent of its size.
func DiskFree(dir string, minPercent float64) (free int64, low bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	free = int64(st.Bavail) * int64(st.Bsize)
	total := int64(st.Blocks) * int64(st.Bsize)
	return free, total > 0 && float64(free) < float64(total)*minPercent/100, nil
}

// DiskLowError is what a sync stops with when the data directory's file
// system has less free space than the minimum.
type DiskLowError struct {
	Free       int64
	MinPercent float64
}

func (e *DiskLowError) Error() string {
	return fmt.Sprintf("paused: %s free is below the %.0f%% minimum; run gc", mirror.HumanBytes(e.Free), e.MinPercent)
}

// CheckDisk returns a *DiskLowError when the file system holding dir has
// less than minPercent free; nil otherwise, and when it cannot tell.
func CheckDisk(dir string, minPercent float64) error {
	free, low, err := DiskFree(dir, minPercent)
	if err != nil || !low {
		return nil
	}
	return &DiskLowError{Free: free, MinPercent: minPercent}
}
