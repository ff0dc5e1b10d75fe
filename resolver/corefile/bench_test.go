package corefile

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// BenchmarkNewFile lists the modules of a fixture core held in memory,
// and read from disk with Open; the eu-unstrip case runs
// `eu-unstrip -n --core` on the same file, process start included, for
// scale.
func BenchmarkNewFile(b *testing.B) {
	fc := fixtures.Cores(b)[0]
	name := fixtures.CoreFile(b, fc.File)
	data, err := os.ReadFile(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := NewFile(bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Open(name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("eu-unstrip", func(b *testing.B) {
		unstrip := fixtures.Tool(b, "eu-unstrip")
		for b.Loop() {
			if err := exec.Command(unstrip, "-n", "--core="+name).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
