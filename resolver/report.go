package resolver

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/retraced/retraced/index"
)

// Unresolved is an object whose build-id the index does not know.
type Unresolved struct {
	BuildID string `json:"build_id"`
	Path    string `json:"path"`
}

// Report is coredump2packages' answer. Its packages are NEVRAs, each list
// sorted by their string forms; [Report.WriteText] and
// [Report.MarshalJSON] write them in the forms SPEC fixes.
type Report struct {
	// CrashPackage owns the crashing executable; nil when unknown.
	CrashPackage *index.NEVRA
	// Packages are the binary packages of the resolved objects.
	Packages []index.NEVRA
	// DebuginfoPackages hold the debug files for those objects.
	DebuginfoPackages []index.NEVRA
	Unresolved        []Unresolved
	// UnresolvedAltLinks are dwz multifiles that chosen debug files need
	// (their .gnu_debugaltlink) and the index does not have: build_id is
	// the multifile's, path the debug file that needs it. Without them a
	// debugger drops those debug files whole.
	UnresolvedAltLinks []Unresolved
}

// reportJSON is the JSON form of a Report: NEVRAs as strings, "" for no
// crash package.
type reportJSON struct {
	CrashPackage       string       `json:"crash_package"`
	Packages           []string     `json:"packages"`
	DebuginfoPackages  []string     `json:"debuginfo_packages"`
	Unresolved         []Unresolved `json:"unresolved"`
	UnresolvedAltLinks []Unresolved `json:"unresolved_altlinks"`
}

// MarshalJSON writes {"crash_package", "packages", "debuginfo_packages",
// "unresolved", "unresolved_altlinks"}, each NEVRA as its string.
func (r Report) MarshalJSON() ([]byte, error) {
	v := reportJSON{
		Packages:           nevraStrings(r.Packages),
		DebuginfoPackages:  nevraStrings(r.DebuginfoPackages),
		Unresolved:         r.Unresolved,
		UnresolvedAltLinks: r.UnresolvedAltLinks,
	}
	if r.CrashPackage != nil {
		v.CrashPackage = r.CrashPackage.String()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON writes; a malformed NEVRA is an
// error.
func (r *Report) UnmarshalJSON(b []byte) error {
	var v reportJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	out := Report{Unresolved: v.Unresolved, UnresolvedAltLinks: v.UnresolvedAltLinks}
	if v.CrashPackage != "" {
		n, err := index.ParseNEVRA(v.CrashPackage)
		if err != nil {
			return fmt.Errorf("crash_package: %w", err)
		}
		out.CrashPackage = &n
	}
	var err error
	if out.Packages, err = parseNEVRAs(v.Packages); err != nil {
		return fmt.Errorf("packages: %w", err)
	}
	if out.DebuginfoPackages, err = parseNEVRAs(v.DebuginfoPackages); err != nil {
		return fmt.Errorf("debuginfo_packages: %w", err)
	}
	*r = out
	return nil
}

// nevraStrings writes each NEVRA as its string; nil stays nil.
func nevraStrings(ns []index.NEVRA) []string {
	if ns == nil {
		return nil
	}
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.String()
	}
	return out
}

// parseNEVRAs parses each string; nil stays nil.
func parseNEVRAs(ss []string) ([]index.NEVRA, error) {
	if ss == nil {
		return nil, nil
	}
	out := make([]index.NEVRA, len(ss))
	for i, s := range ss {
		n, err := index.ParseNEVRA(s)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// WriteText writes the report as Retrace Server prints it: the crash
// package (or "-"), a blank line, every package needed (debuginfo
// included) one a line, sorted, a blank line, then "PATH BUILDID" for each
// object the index does not know.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	crash := "-"
	if r.CrashPackage != nil {
		crash = r.CrashPackage.String()
	}
	b.WriteString(crash + "\n\n")
	all := slices.Concat(nevraStrings(r.Packages), nevraStrings(r.DebuginfoPackages))
	slices.Sort(all)
	for _, p := range all {
		b.WriteString(p + "\n")
	}
	b.WriteString("\n")
	for _, u := range r.Unresolved {
		fmt.Fprintf(&b, "%s %s\n", u.Path, u.BuildID)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
