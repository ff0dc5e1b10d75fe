package index

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadNEVRA reports a string that is not name-[epoch:]version-release.arch.
var ErrBadNEVRA = errors.New("malformed NEVRA")

// NEVRA identifies one build of one package.
type NEVRA struct {
	Name    string
	Epoch   int
	Version string
	Release string
	Arch    string
}

// ParseNEVRA parses name-[epoch:]version-release.arch, the form String
// writes. A ".rpm" suffix is not accepted: file names are not NEVRAs.
func ParseNEVRA(s string) (NEVRA, error) {
	bad := func(why string) (NEVRA, error) {
		return NEVRA{}, fmt.Errorf("%w: %q: %s", ErrBadNEVRA, truncate(s, 80), why)
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return bad("no .arch")
	}
	n := NEVRA{Arch: s[dot+1:]}
	rest := s[:dot]
	dash := strings.LastIndexByte(rest, '-')
	if dash < 0 {
		return bad("no -release")
	}
	n.Release, rest = rest[dash+1:], rest[:dash]
	dash = strings.LastIndexByte(rest, '-')
	if dash < 0 {
		return bad("no -version")
	}
	n.Name, n.Version = rest[:dash], rest[dash+1:]
	if c := strings.IndexByte(n.Version, ':'); c >= 0 {
		e, err := strconv.Atoi(n.Version[:c])
		if err != nil || e < 0 {
			return bad("epoch is not a number")
		}
		n.Epoch, n.Version = e, n.Version[c+1:]
	}
	if err := n.Validate(); err != nil {
		return NEVRA{}, err
	}
	return n, nil
}

// Validate checks that every field is present and none holds a character
// that would make String ambiguous or unsafe as a key or path element.
func (n NEVRA) Validate() error {
	for _, f := range []struct{ what, v string }{
		{"name", n.Name}, {"version", n.Version}, {"release", n.Release}, {"arch", n.Arch},
	} {
		if f.v == "" {
			return fmt.Errorf("%w: empty %s", ErrBadNEVRA, f.what)
		}
		if strings.ContainsAny(f.v, "/\x00 \t\n") || (f.what != "name" && strings.ContainsAny(f.v, "-:")) {
			return fmt.Errorf("%w: %s %q has a forbidden character", ErrBadNEVRA, f.what, truncate(f.v, 80))
		}
	}
	if strings.ContainsRune(n.Arch, '.') {
		return fmt.Errorf("%w: arch %q has a dot", ErrBadNEVRA, n.Arch)
	}
	if n.Epoch < 0 {
		return fmt.Errorf("%w: negative epoch", ErrBadNEVRA)
	}
	return nil
}

// String writes name-version-release.arch with "epoch:" before the version
// when the epoch is not 0.
func (n NEVRA) String() string {
	var b strings.Builder
	b.Grow(len(n.Name) + len(n.Version) + len(n.Release) + len(n.Arch) + 8)
	b.WriteString(n.Name)
	b.WriteByte('-')
	if n.Epoch != 0 {
		b.WriteString(strconv.Itoa(n.Epoch))
		b.WriteByte(':')
	}
	b.WriteString(n.Version)
	b.WriteByte('-')
	b.WriteString(n.Release)
	b.WriteByte('.')
	b.WriteString(n.Arch)
	return b.String()
}

// MarshalText writes the NEVRA as its string form.
func (n NEVRA) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText parses the string form.
func (n *NEVRA) UnmarshalText(b []byte) error {
	v, err := ParseNEVRA(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// EVR returns [epoch:]version-release.
func (n NEVRA) EVR() string {
	if n.Epoch != 0 {
		return strconv.Itoa(n.Epoch) + ":" + n.Version + "-" + n.Release
	}
	return n.Version + "-" + n.Release
}

// Compare orders two builds of a package as rpm does: by epoch, then
// version, then release with rpmvercmp; name and arch break ties so the
// order is total.
func (n NEVRA) Compare(o NEVRA) int {
	if c := strings.Compare(n.Name, o.Name); c != 0 {
		return c
	}
	if n.Epoch != o.Epoch {
		if n.Epoch < o.Epoch {
			return -1
		}
		return 1
	}
	if c := VerCmp(n.Version, o.Version); c != 0 {
		return c
	}
	if c := VerCmp(n.Release, o.Release); c != 0 {
		return c
	}
	return strings.Compare(n.Arch, o.Arch)
}

// VerCmp compares two version (or release) strings with rpm's rpmvercmp
// rules: alternating numeric and alphabetic segments, numeric newer than
// alphabetic, leading zeros ignored, '~' sorting before anything (even the
// end), '^' after the end but before anything else. It returns -1, 0 or 1.
func VerCmp(a, b string) int {
	if a == b {
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for i < len(a) && !isAlnum(a[i]) && a[i] != '~' && a[i] != '^' {
			i++
		}
		for j < len(b) && !isAlnum(b[j]) && b[j] != '~' && b[j] != '^' {
			j++
		}
		ca, cb := at(a, i), at(b, j)
		if ca == '~' || cb == '~' {
			if ca != '~' {
				return 1
			}
			if cb != '~' {
				return -1
			}
			i, j = i+1, j+1
			continue
		}
		if ca == '^' || cb == '^' {
			switch {
			case i >= len(a):
				return -1
			case j >= len(b):
				return 1
			case ca != '^':
				return 1
			case cb != '^':
				return -1
			}
			i, j = i+1, j+1
			continue
		}
		if i >= len(a) || j >= len(b) {
			break
		}
		si, sj := i, j
		isNum := isDigit(a[i])
		if isNum {
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
		} else {
			for i < len(a) && isAlpha(a[i]) {
				i++
			}
			for j < len(b) && isAlpha(b[j]) {
				j++
			}
		}
		if sj == j {
			if isNum {
				return 1
			}
			return -1
		}
		sa, sb := a[si:i], b[sj:j]
		if isNum {
			sa, sb = strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if len(sa) != len(sb) {
				if len(sa) > len(sb) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i >= len(a):
		return -1
	default:
		return 1
	}
}

func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
