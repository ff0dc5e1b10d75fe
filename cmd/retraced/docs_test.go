package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestConfigKeysDocumented: every key the config file takes is named in
// docs/spec.md, the product's contract in this repository.
func TestConfigKeysDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var walk func(table string, typ reflect.Type)
	walk = func(table string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if key == "" || key == "-" {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
				if !strings.Contains(doc, "`["+key+"]`") {
					t.Errorf("table [%s] is not in docs/spec.md", key)
				}
				walk(key, f.Type)
				continue
			}
			if !strings.Contains(doc, "`"+key+"`") {
				t.Errorf("key %s (table %q) is not in docs/spec.md", key, table)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
}

// TestCommandsAndFlagsDocumented: every command of `retraced help` (but
// cobra's own help and completion, and hidden ones) and every flag it
// takes are named in docs/spec.md, as `retraced COMMAND` and `--FLAG`.
func TestCommandsAndFlagsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c.HasParent() && !strings.Contains(doc, c.CommandPath()) {
			t.Errorf("command %q is not in docs/spec.md", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			if !strings.Contains(doc, "--"+f.Name) {
				t.Errorf("flag --%s of %q is not in docs/spec.md", f.Name, c.CommandPath())
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}
