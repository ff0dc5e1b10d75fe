package resolver

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/retraced/retraced/index"
)

// crashOf is the report's crash package as a string, "" for none.
func crashOf(r *Report) string {
	if r.CrashPackage == nil {
		return ""
	}
	return r.CrashPackage.String()
}

// joinNEVRAs writes ns as strings separated by spaces.
func joinNEVRAs(ns []index.NEVRA) string {
	return strings.Join(nevraStrings(ns), " ")
}

// legacyReport is Report as it was before it carried NEVRAs: strings
// with struct tags. Its encoding is the JSON form SPEC fixes, which the
// typed Report must write byte for byte.
type legacyReport struct {
	CrashPackage       string       `json:"crash_package"`
	Packages           []string     `json:"packages"`
	DebuginfoPackages  []string     `json:"debuginfo_packages"`
	Unresolved         []Unresolved `json:"unresolved"`
	UnresolvedAltLinks []Unresolved `json:"unresolved_altlinks"`
}

func mustNEVRA(t *testing.T, s string) index.NEVRA {
	t.Helper()
	n, err := index.ParseNEVRA(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReportOutputs: the JSON and text forms of a typed Report are the
// bytes the string report wrote, and the JSON reads back the same.
func TestReportOutputs(t *testing.T) {
	crash := mustNEVRA(t, "app-1:1.0-1.fc40.x86_64")
	full := &Report{
		CrashPackage:       &crash,
		Packages:           []index.NEVRA{crash, mustNEVRA(t, "lib-2.0-1.fc40.x86_64")},
		DebuginfoPackages:  []index.NEVRA{mustNEVRA(t, "app-debuginfo-1:1.0-1.fc40.x86_64")},
		Unresolved:         []Unresolved{{BuildID: "93ac61ec5a8eb1396f9fbd350e3169a558528a40", Path: "/usr/lib64/libc.so.6"}},
		UnresolvedAltLinks: []Unresolved{{BuildID: "dd04", Path: "/usr/lib/debug/usr/bin/app.debug"}},
	}
	tests := []struct {
		name     string
		rep      *Report
		legacy   legacyReport
		wantJSON string
		wantText string
	}{
		{
			name: "full",
			rep:  full,
			legacy: legacyReport{
				CrashPackage:       "app-1:1.0-1.fc40.x86_64",
				Packages:           []string{"app-1:1.0-1.fc40.x86_64", "lib-2.0-1.fc40.x86_64"},
				DebuginfoPackages:  []string{"app-debuginfo-1:1.0-1.fc40.x86_64"},
				Unresolved:         full.Unresolved,
				UnresolvedAltLinks: full.UnresolvedAltLinks,
			},
			wantJSON: `{"crash_package":"app-1:1.0-1.fc40.x86_64","packages":["app-1:1.0-1.fc40.x86_64","lib-2.0-1.fc40.x86_64"],` +
				`"debuginfo_packages":["app-debuginfo-1:1.0-1.fc40.x86_64"],` +
				`"unresolved":[{"build_id":"93ac61ec5a8eb1396f9fbd350e3169a558528a40","path":"/usr/lib64/libc.so.6"}],` +
				`"unresolved_altlinks":[{"build_id":"dd04","path":"/usr/lib/debug/usr/bin/app.debug"}]}`,
			wantText: "app-1:1.0-1.fc40.x86_64\n\napp-1:1.0-1.fc40.x86_64\napp-debuginfo-1:1.0-1.fc40.x86_64\nlib-2.0-1.fc40.x86_64\n\n" +
				"/usr/lib64/libc.so.6 93ac61ec5a8eb1396f9fbd350e3169a558528a40\n",
		},
		{
			name: "nothing resolved",
			rep:  &Report{Packages: []index.NEVRA{}, DebuginfoPackages: []index.NEVRA{}, Unresolved: []Unresolved{}, UnresolvedAltLinks: []Unresolved{}},
			legacy: legacyReport{Packages: []string{}, DebuginfoPackages: []string{}, Unresolved: []Unresolved{},
				UnresolvedAltLinks: []Unresolved{}},
			wantJSON: `{"crash_package":"","packages":[],"debuginfo_packages":[],"unresolved":[],"unresolved_altlinks":[]}`,
			wantText: "-\n\n\n",
		},
		{
			name:     "zero value",
			rep:      &Report{},
			wantJSON: `{"crash_package":"","packages":null,"debuginfo_packages":null,"unresolved":null,"unresolved_altlinks":null}`,
			wantText: "-\n\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []any{tt.rep, *tt.rep} {
				got, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.wantJSON {
					t.Errorf("JSON of %T:\n got %s\nwant %s", v, got, tt.wantJSON)
				}
			}
			legacy, err := json.Marshal(tt.legacy)
			if err != nil {
				t.Fatal(err)
			}
			if string(legacy) != tt.wantJSON {
				t.Errorf("the string report wrote\n%s\nnot\n%s", legacy, tt.wantJSON)
			}
			// coredump2packages --json indents.
			indented, err := json.MarshalIndent(tt.rep, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if legacy, _ := json.MarshalIndent(tt.legacy, "", "  "); !bytes.Equal(indented, legacy) {
				t.Errorf("indented:\n%s\nthe string report:\n%s", indented, legacy)
			}
			var text bytes.Buffer
			if err := tt.rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if text.String() != tt.wantText {
				t.Errorf("text:\n got %q\nwant %q", text.String(), tt.wantText)
			}
			var back Report
			if err := json.Unmarshal([]byte(tt.wantJSON), &back); err != nil {
				t.Fatal(err)
			}
			again, err := json.Marshal(&back)
			if err != nil || string(again) != tt.wantJSON {
				t.Errorf("read back and written again: %s %v", again, err)
			}
		})
	}
}

// TestReportBadJSON: a malformed NEVRA in a report is an error, not a
// report with a package the index cannot name.
func TestReportBadJSON(t *testing.T) {
	for _, body := range []string{
		`{"crash_package":"no-arch","packages":[]}`,
		`{"crash_package":"","packages":["bash"]}`,
		`{"crash_package":"","debuginfo_packages":["bash-1-1.x86 64"]}`,
	} {
		var r Report
		if err := json.Unmarshal([]byte(body), &r); !errors.Is(err, index.ErrBadNEVRA) {
			t.Errorf("%s: %v, want ErrBadNEVRA", body, err)
		}
	}
}
