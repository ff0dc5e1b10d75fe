package retrace

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

// FuzzUnpack feeds unpack arbitrary bodies in each format. It must not
// panic, must answer with one of its errors or a crash directory that
// holds only allowed names (coredump among them), and must write nothing
// outside the directory it is given.
func FuzzUnpack(f *testing.F) {
	good := tarBytes(f, tarMember{name: "coredump", body: []byte("\x7fELF core")}, tarMember{name: "package", body: []byte("crashme-1.0-1")})
	hostile := [][]byte{
		good,
		tarBytes(f, tarMember{name: "../evil", body: []byte("x")}),
		tarBytes(f, tarMember{name: "coredump", typ: tar.TypeSymlink, linkname: "/etc/passwd"}),
		tarBytes(f, tarMember{name: "./", typ: tar.TypeDir}, tarMember{name: "./coredump", body: []byte("core")}),
		tarBytes(f, tarMember{name: "sub/", typ: tar.TypeDir}),
	}
	for _, b := range hostile {
		f.Add(b, uint8(2))
		f.Add(gzipBytes(f, b), uint8(1))
		f.Add(xzBytes(f, b), uint8(0))
	}
	f.Add(decompresstest.WithXZDict(f, xzBytes(f, good), 40, 12), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, format uint8) {
		root := t.TempDir()
		dst := filepath.Join(root, "crash")
		if err := os.Mkdir(dst, 0o750); err != nil {
			t.Fatal(err)
		}
		ct := SupportedFormats[int(format)%len(SupportedFormats)]
		lim := unpackLimits{packed: 1 << 20, unpacked: 1 << 20, files: 8}
		names, err := unpack(bytes.NewReader(body), ct, dst, lim)
		if err != nil {
			if !errors.Is(err, ErrBadArchive) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		} else {
			hasCore := false
			for _, n := range names {
				if _, ok := allowedFiles[n]; !ok {
					t.Fatalf("wrote %q", n)
				}
				hasCore = hasCore || n == RequiredFile
			}
			if !hasCore {
				t.Fatal("accepted without a coredump")
			}
		}
		if tree := listTree(t, root); !onlyUnder(tree, "crash") {
			t.Fatalf("wrote outside the crash directory: %v", tree)
		}
	})
}

// onlyUnder reports whether every path but "." is dir or below it.
func onlyUnder(paths []string, dir string) bool {
	for _, p := range paths {
		if p != "." && p != dir && !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return false
		}
	}
	return true
}
