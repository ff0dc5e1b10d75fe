package web

import (
	"fmt"

	"golang.org/x/sys/unix"
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
