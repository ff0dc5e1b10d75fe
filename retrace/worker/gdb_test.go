package worker

import (
	"testing"
)

func TestSandboxGDBSafePath(t *testing.T) {
	for p, want := range map[string]bool{
		"/var/lib/retraced/sysroots":    true,
		"/tmp/Test_x-1/001/a.b+c@d,e=f": true,
		"":                              false,
		"/a b":                          false,
		"/a:b":                          false,
		"~/x":                           false,
		"/a\nb":                         false,
		`/a"b`:                          false,
	} {
		if got := gdbSafePath(p); got != want {
			t.Errorf("gdbSafePath(%q) = %v", p, got)
		}
	}
}
