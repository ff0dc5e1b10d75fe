package corefile

import (
	"bytes"
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/retraced/retraced/index/elfnote"
)

// seedCores returns the core files in testdata by name.
func seedCores(t testing.TB) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.core"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no seed cores in testdata")
	}
	seeds := make(map[string][]byte)
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		seeds[filepath.Base(name)] = data
	}
	return seeds
}

// TestSeeds reads each seed core. The ones cut down from the fixture cores
// come with the eu-unstrip -n --core output gen_test.go recorded for them;
// eu-unstrip is also run now when installed.
func TestSeeds(t *testing.T) {
	for name, data := range seedCores(t) {
		t.Run(name, func(t *testing.T) {
			if len(data) > 64<<10 {
				t.Errorf("seed of %d bytes; keep seeds under 64 KiB", len(data))
			}
			c, err := NewFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			ref := strings.TrimSuffix(filepath.Join("testdata", name), ".core") + ".unstrip.txt"
			out, err := os.ReadFile(ref)
			if errors.Is(err, os.ErrNotExist) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			compareUnstrip(t, c, parseUnstrip(t, string(out)))
			t.Run("live", func(t *testing.T) {
				compareUnstrip(t, c, liveUnstrip(t, filepath.Join("testdata", name)))
			})
		})
	}
}

func FuzzNewFile(f *testing.F) {
	for _, data := range seedCores(f) {
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := NewFile(bytes.NewReader(data), int64(len(data)))
		var fe *FormatError
		switch {
		case err == nil:
		case errors.Is(err, ErrNotCore):
			if !elfnote.IsELF(data) && !errors.Is(err, elfnote.ErrNotELF) {
				t.Fatalf("non-ELF input: %v does not match elfnote.ErrNotELF", err)
			}
			return
		case !elfnote.IsELF(data):
			t.Fatalf("error %v, want ErrNotCore for input without the ELF magic", err)
		case errors.As(err, &fe):
			if fe.Off < 0 {
				t.Fatalf("negative offset in %v", err)
			}
			return
		default:
			t.Fatalf("error %v (%T) is neither ErrNotCore nor *FormatError", err, err)
		}
		if c == nil {
			t.Fatal("nil Core without an error")
		}
		if !slices.IsSortedFunc(c.Modules, func(a, b Module) int { return cmp.Compare(a.Start, b.Start) }) {
			t.Fatalf("modules not sorted:\n%s", dump(c))
		}
		for _, m := range c.Modules {
			if m.End < m.Start {
				t.Fatalf("module %#x-%#x ends before it starts", m.Start, m.End)
			}
			if m.BuildID != nil && (len(m.BuildID) == 0 || len(m.BuildID) > elfnote.MaxBuildIDBytes) {
				t.Fatalf("build-id of %d bytes", len(m.BuildID))
			}
			if len(m.Path) > MaxPathBytes {
				t.Fatalf("path of %d bytes", len(m.Path))
			}
		}
		if len(c.Executable) > MaxPathBytes {
			t.Fatalf("executable path of %d bytes", len(c.Executable))
		}
		// Reading is deterministic.
		again, err := NewFile(bytes.NewReader(data), int64(len(data)))
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("second read differs: %v", err)
		}
	})
}
