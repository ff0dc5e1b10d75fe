package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIListsEveryRoute: GET /api/openapi.json is an OpenAPI 3
// document whose paths and methods are exactly the routes serve
// registers (parameter names aside), so a route added without its
// documentation, or documented and gone, fails here.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	var routes []string
	handlerBuilt = func(h *handler) {
		for _, r := range h.engine.Routes() {
			routes = append(routes, r.Method+" "+r.Path)
		}
	}
	t.Cleanup(func() { handlerBuilt = func(*handler) {} })
	url := startServe(t, testConfig(t))

	code, hdr, body := httpDo(t, http.MethodGet, url+"/api/openapi.json", nil, nil)
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/openapi.json: %d %s", code, hdr.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document (%v): openapi %q", err, doc.OpenAPI)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+param.ReplaceAllString(path, "{}"))
		}
	}
	ginParam := regexp.MustCompile(`[:*][^/]+`)
	var served []string
	for _, r := range routes {
		served = append(served, ginParam.ReplaceAllString(r, "{}"))
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in web/openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("web/openapi.json documents %s, which serve does not route", r)
		}
	}
	if len(served) == 0 {
		t.Fatal("no routes seen")
	}
}
