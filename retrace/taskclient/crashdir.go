package taskclient

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/retraced/retraced/resolver/corefile"
)

// crashFiles are the files of a crash directory that create sends, in
// abrt-retrace-client's order: coredump, executable, package, os_release,
// then the optional rootdir and os_release_in_rootdir. Only coredump must
// be there.
var crashFiles = []string{"coredump", "executable", "package", "os_release", "rootdir", "os_release_in_rootdir"}

// maxExecutable is the server's cap on the executable file (Retrace
// Server's, and retraced's).
const maxExecutable = 512

// CrashDir is a crash directory about to be sent.
type CrashDir struct {
	dir   string
	files []string // the crashFiles present, in order
	// Size is the total size of the files sent.
	Size int64
}

// OpenCrashDir lists what Pack sends of dir.
func OpenCrashDir(dir string) (*CrashDir, error) {
	cd := &CrashDir{dir: dir}
	for _, name := range crashFiles {
		// Stat follows links: what is sent is the file's content, always
		// as a regular file.
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && name != "coredump" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("'%s' must be a regular file in order to use Retrace server: %w", name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("'%s' must be a regular file in order to use Retrace server.", name)
		}
		cd.files = append(cd.files, name)
		cd.Size += fi.Size()
	}
	return cd, nil
}

// Item returns the trimmed content of a small file of the crash
// directory, "" when it is missing.
func (cd *CrashDir) Item(name string) string {
	f, err := os.Open(filepath.Join(cd.dir, name))
	if err != nil {
		return ""
	}
	defer f.Close() // read-only
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Pack writes the crash directory's files to w as tar.xz, streaming.
func (cd *CrashDir) Pack(w io.Writer) error {
	zw, err := xz.WriterConfig{DictCap: 8 << 20}.NewWriter(w)
	if err != nil {
		return err
	}
	if err := cd.PackTar(zw); err != nil {
		return err
	}
	return zw.Close()
}

// PackTar writes the crash directory's files to w as a plain tar, for a
// server on this machine, where compressing would only cost time.
func (cd *CrashDir) PackTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, name := range cd.files {
		if err := addFile(tw, filepath.Join(cd.dir, name), name); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close() // read-only
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime().Truncate(time.Second), Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("pack %s: %w", name, err)
	}
	n, err := io.Copy(tw, io.LimitReader(f, fi.Size()))
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("%s shrank while it was packed", path)
	}
	if err != nil {
		return fmt.Errorf("pack %s: %w", name, err)
	}
	return nil
}

// CoreCrashDir makes a crash directory in a new temporary directory for a
// bare core file: coredump (a link to the core), and executable, the
// program's path as the core records it, when it does.
func CoreCrashDir(core string) (dir string, cleanup func() error, err error) {
	abs, err := filepath.Abs(core)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%s: not a regular file", core)
	}
	exe, err := CoreExecutable(abs)
	if errors.Is(err, corefile.ErrNotCore) {
		return "", nil, fmt.Errorf("%s: not an ELF core file", core)
	}
	// A core the reader cannot make out is still sent: the server says
	// what is wrong with it.
	dir, err = os.MkdirTemp("", "retrace-client-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() error { return os.RemoveAll(dir) }
	err = os.Symlink(abs, filepath.Join(dir, "coredump"))
	if err == nil && exe != "" {
		err = os.WriteFile(filepath.Join(dir, "executable"), []byte(exe), 0o644)
	}
	if err != nil {
		return "", nil, errors.Join(err, cleanup())
	}
	return dir, cleanup, nil
}

// CoreExecutable returns the program's path as the core file records it;
// "" with no error when the core names none the server would take (too
// long, or with a newline). An error wrapping corefile.ErrNotCore means
// the file is no ELF core.
func CoreExecutable(core string) (string, error) {
	c, err := corefile.Open(core)
	if err != nil {
		return "", err
	}
	exe := c.Executable
	if len(exe) > maxExecutable || strings.ContainsRune(exe, '\n') {
		return "", nil
	}
	return exe, nil
}
