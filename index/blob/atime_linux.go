package blob

import (
	"io/fs"
	"syscall"
	"time"
)

// accessTime is when a file was last read (relatime semantics: at least
// daily), falling back to its modification time.
func accessTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec)
	}
	return fi.ModTime()
}
