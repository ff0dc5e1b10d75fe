package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
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
