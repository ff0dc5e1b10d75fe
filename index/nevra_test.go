package index

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestParseNEVRA(t *testing.T) {
	tests := []struct {
		in   string
		want NEVRA
		err  bool
	}{
		{in: "bash-5.2.26-3.fc40.x86_64", want: NEVRA{Name: "bash", Version: "5.2.26", Release: "3.fc40", Arch: "x86_64"}},
		{in: "bash-1:5.2.26-3.fc40.x86_64", want: NEVRA{Name: "bash", Epoch: 1, Version: "5.2.26", Release: "3.fc40", Arch: "x86_64"}},
		{in: "python3-libs-3.12.1-2.fc40.noarch", want: NEVRA{Name: "python3-libs", Version: "3.12.1", Release: "2.fc40", Arch: "noarch"}},
		{in: "glibc-debuginfo-2.39-4.fc40.x86_64", want: NEVRA{Name: "glibc-debuginfo", Version: "2.39", Release: "4.fc40", Arch: "x86_64"}},
		{in: "noarch", err: true},
		{in: "bash-5.2.x86_64", err: true},
		{in: "bash-x:5.2-1.x86_64", err: true},
		{in: "-1-1.x86_64", err: true},
		{in: "a/b-1-1.x86_64", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNEVRA(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseNEVRA(%q) = %+v, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestNEVRAStringOmitsZeroEpoch(t *testing.T) {
	n := NEVRA{Name: "bash", Epoch: 0, Version: "5.2.26", Release: "3.fc40", Arch: "x86_64"}
	if got, want := n.String(), "bash-5.2.26-3.fc40.x86_64"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// vercmpCases are compared with rpm's own rpm.vercmp when rpm is
// installed; the expected values are rpm's documented results.
var vercmpCases = []struct {
	a, b string
	want int
}{
	{"1.0", "1.0", 0}, {"1.0", "2.0", -1}, {"2.0", "1.0", 1},
	{"2.0.1", "2.0.1a", -1}, {"2.0.1a", "2.0.1", 1},
	{"5.5p1", "5.5p2", -1}, {"5.5p10", "5.5p1", 1},
	{"10xyz", "10.1xyz", -1}, {"xyz10", "xyz10.1", -1},
	{"xyz.4", "xyz.4", 0}, {"xyz.4", "8", -1}, {"8", "xyz.4", 1},
	{"1.0010", "1.9", 1}, {"1.05", "1.5", 0}, {"1.0", "1", 1},
	{"2.50", "2.5", 1}, {"fc4", "fc.4", 0}, {"FC5", "fc4", -1},
	{"2a", "2.0", -1}, {"1.0", "1.fc4", 1}, {"3.0.0_fc", "3.0.0.fc", 0},
	{"1.0~rc1", "1.0", -1}, {"1.0~rc1", "1.0~rc2", -1}, {"1.0~rc1~git123", "1.0~rc1", -1},
	{"1.0^", "1.0", 1}, {"1.0^git1", "1.0", 1}, {"1.0^git1", "1.01", -1},
	{"1.0^git1~pre", "1.0^git1", -1}, {"1.0~rc1^git1", "1.0~rc1", 1}, {"1.0^20160101", "1.0.1", -1},
	{"", "", 0}, {"a", "", 1}, {"", "a", -1}, {"0", "00", 0}, {"1_", "1", 0},
}

func TestVerCmp(t *testing.T) {
	for _, c := range vercmpCases {
		t.Run(fmt.Sprintf("%s_vs_%s", c.a, c.b), func(t *testing.T) {
			if got := VerCmp(c.a, c.b); got != c.want {
				t.Fatalf("VerCmp(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
			}
			if got := VerCmp(c.b, c.a); got != -c.want {
				t.Fatalf("VerCmp(%q, %q) = %d, want %d (antisymmetry)", c.b, c.a, got, -c.want)
			}
		})
	}
}

// TestVerCmpAgainstRPM asks rpm itself (the reference) about every case
// and a grid of tricky strings.
func TestVerCmpAgainstRPM(t *testing.T) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm not installed (CI installs it)")
	}
	strs := []string{"1", "1.0", "1.0a", "1.a", "1~", "1~a", "1^", "1^a", "1.0~rc1", "1.0^git", "a1", "1a1", "01", "1..0", "1_0", "2", "10", "1.0.0", "1.00", "~", "^", "1+2", "1.x.2"}
	for _, c := range vercmpCases {
		if c.a != "" && c.b != "" {
			strs = append(strs, c.a, c.b)
		}
	}
	type pair struct{ a, b string }
	var pairs []pair
	for _, a := range strs {
		for _, b := range strs {
			pairs = append(pairs, pair{a, b})
		}
	}
	for start := 0; start < len(pairs); start += 300 {
		chunk := pairs[start:min(start+300, len(pairs))]
		var lua strings.Builder
		for _, p := range chunk {
			fmt.Fprintf(&lua, "print(rpm.vercmp(%q, %q) .. \" \")\n", p.a, p.b)
		}
		out, err := exec.Command("rpm", "--eval", "%{lua:"+lua.String()+"}").Output()
		if err != nil {
			t.Fatalf("rpm --eval: %v", err)
		}
		lines := strings.Fields(string(out))
		if len(lines) != len(chunk) {
			t.Fatalf("rpm printed %d results for %d pairs", len(lines), len(chunk))
		}
		for i, p := range chunk {
			want, _ := strconv.Atoi(lines[i])
			if got := VerCmp(p.a, p.b); got != want {
				t.Errorf("VerCmp(%q, %q) = %d, rpm says %d", p.a, p.b, got, want)
			}
		}
	}
}

func FuzzParseNEVRA(f *testing.F) {
	for _, s := range []string{"bash-5.2.26-3.fc40.x86_64", "bash-1:5.2.26-3.fc40.x86_64", "a-b-c.d", "--.", "x-1:-1."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNEVRA(s)
		if err != nil {
			return
		}
		again, err := ParseNEVRA(n.String())
		if err != nil || again != n {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, n, n.String(), again, err)
		}
	})
}
