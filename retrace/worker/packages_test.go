package worker

import (
	"testing"
)

func TestSysrootSRPMName(t *testing.T) {
	for in, want := range map[string]string{
		"crashme-1.0-1.src.rpm":             "crashme",
		"python-foo-bar-2.1-3.fc40.src.rpm": "python-foo-bar",
		"x-1-1.nosrc.rpm":                   "x",
		"":                                  "",
		"nodash.src.rpm":                    "",
		"bash-5.2.26-3.fc40.x86_64.rpm":     "",
	} {
		if got := srpmName(in); got != want {
			t.Errorf("srpmName(%q) = %q, want %q", in, got, want)
		}
	}
}
