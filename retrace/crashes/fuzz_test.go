package crashes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/retraced/retraced/fixtures"
)

// FuzzSign: whatever gdb printed, a signature is at most three frames of
// at most MaxFunctionLen bytes of valid UTF-8 without control
// characters, and its ID is valid. Seeded with gdb's references of the
// fixture cores.
func FuzzSign(f *testing.F) {
	files, _ := filepath.Glob(fixtures.Path("cores", "*.bt*.txt"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), 11)
	}
	f.Add("Thread 1 (x):\n#0  0x1 in a<b (c) () at x\n[Current thread is 1 (", 6)
	f.Fuzz(func(t *testing.T, bt string, sig int) {
		s := Sign(bt, sig, "pkg")
		if len(s.Frames) == 0 || len(s.Frames) > FramesInSignature || !ValidID(s.ID) || !utf8.ValidString(s.Text) {
			t.Fatalf("signature %+v", s)
		}
		for _, fr := range s.Frames {
			if len(fr) > MaxFunctionLen || strings.ContainsFunc(fr, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("frame %q", fr)
			}
		}
	})
}
