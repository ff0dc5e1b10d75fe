package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// TestBackendsAgree: each command that works on a data directory prints
// the same whether it opens the directory (the local backend) or asks the
// serve that holds it (the remote one), and exits the same.
func TestBackendsAgree(t *testing.T) {
	cfg := testConfig(t)
	cfg.APISources = "local" // the commands add fixture directories through serve too
	data := cfg.Data
	for _, add := range [][]string{{"v1", fixtures.Path("repo-v1")}, {"v2", fixtures.Path("repo-v2")}} {
		if _, _, err := run(t, "--data", data, "mirror", "add", add[0], add[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := run(t, "--data", data, "mirror", "sync"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", data, "mirror", "remove", "v1"); err != nil {
		t.Fatal(err)
	}
	var known string
	for _, e := range fixtures.ELFFiles(t) {
		if strings.Contains(e.NEVRA, "1.1-1") {
			known = e.BuildID
		}
	}
	// Durations differ from run to run.
	took := regexp.MustCompile(` in [0-9.]+[µmn]?s\b`)
	commands := []struct {
		name string
		args []string
		// out turns stdout into what must agree (nil: stdout as is).
		out func(t *testing.T, s string) string
	}{
		{name: "lookup", args: []string{"lookup", known}},
		{name: "lookup unknown", args: []string{"lookup", "00112233445566778899aabbccddeeff00112233"}},
		{name: "lookup json", args: []string{"lookup", "--json", known}},
		{name: "coredump2packages", args: []string{"coredump2packages", fixtures.CoreFile(t, "crashme-1.1.core.zst")}},
		{name: "mirror list", args: []string{"mirror", "list", "--json"}, out: func(t *testing.T, s string) string {
			var views []map[string]any
			if err := json.Unmarshal([]byte(s), &views); err != nil {
				t.Fatalf("mirror list --json: %v\n%s", err, s)
			}
			var b strings.Builder
			for _, v := range views {
				b.WriteString(strings.Join([]string{v["name"].(string), v["kind"].(string), v["url"].(string), v["schedule"].(string)}, " "))
				json.NewEncoder(&b).Encode([]any{v["packages"], v["versions"], v["bytes_stored"]})
			}
			return b.String()
		}},
		{name: "mirror sync", args: []string{"mirror", "sync", "v2"}, out: func(t *testing.T, s string) string { return took.ReplaceAllString(s, "") }},
		{name: "mirror sync unknown", args: []string{"mirror", "sync", "nope"}},
		{name: "mirror add", args: []string{"mirror", "add", "v3", fixtures.Path("repo-v1"), "--schedule", "@daily"}},
		{name: "mirror remove", args: []string{"mirror", "remove", "v3"}},
		// serve keeps the blobs of the last minute for running syncs;
		// the packages planned agree.
		{name: "gc dry run", args: []string{"gc", "--dry-run"}, out: func(t *testing.T, s string) string {
			var pkgs []string
			for _, line := range strings.Split(s, "\n") {
				if strings.HasPrefix(line, "would remove package ") {
					pkgs = append(pkgs, line)
				}
			}
			return strings.Join(pkgs, "\n")
		}},
	}
	type answer struct {
		out  string
		code int
	}
	ask := func(t *testing.T, args []string, out func(*testing.T, string) string) answer {
		stdout, _, err := run(t, append([]string{"--data", data}, args...)...)
		a := answer{out: stdout}
		var ec exitCode
		switch {
		case errors.As(err, &ec):
			a.code = int(ec)
		case err != nil:
			a.code = -1 // an error, printed by main
		}
		if out != nil {
			a.out = out(t, stdout)
		}
		return a
	}
	local := map[string]answer{}
	for _, c := range commands {
		a := ask(t, c.args, c.out)
		if a.code == 0 && strings.TrimSpace(a.out) == "" {
			t.Fatalf("%s printed nothing locally", strings.Join(c.args, " "))
		}
		local[c.name] = a
	}
	startServe(t, cfg)
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			if remote := ask(t, c.args, c.out); remote != local[c.name] {
				t.Errorf("%s:\nlocal  (exit %d):\n%s\nthrough serve (exit %d):\n%s", strings.Join(c.args, " "),
					local[c.name].code, local[c.name].out, remote.code, remote.out)
			}
		})
	}
}
