package web

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures"
)

// TestUploadRefusals: what the form refuses before anything reaches the
// task protocol (its handler here fails the test if called), each with
// the status and the words a person reads; the spool directory is left
// empty; and a task page asked without the browser's cookie, or for no
// task, is refused.
func TestUploadRefusals(t *testing.T) {
	spool := t.TempDir()
	tasks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the task protocol was asked %s %s", r.Method, r.URL.Path)
		http.Error(w, "no", http.StatusTeapot)
	})
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	NewUploads(UploadConfig{Tasks: tasks, SpoolDir: spool, MaxCore: 64 << 10, MaxSpools: 1}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	elf, err := os.ReadFile(fixtures.CoreFile(t, "crashme-1.0.core.zst"))
	if err != nil {
		t.Fatal(err)
	}
	type field struct{ name, file, value string }
	form := func(fields ...field) (string, *bytes.Buffer) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for _, f := range fields {
			var w io.Writer
			var err error
			if f.file != "" {
				w, err = mw.CreateFormFile(f.name, f.file)
			} else {
				w, err = mw.CreateFormField(f.name)
			}
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, f.value)
		}
		mw.Close()
		return mw.FormDataContentType(), &b
	}
	for _, tt := range []struct {
		name   string
		fields []field
		ctype  string
		code   int
		says   string
	}{
		{"too large", []field{{"coredump", "core", string(elf)}}, "", http.StatusRequestEntityTooLarge, "The core is larger than 64.0 KiB"},
		{"not elf", []field{{"coredump", "notes.txt", "hello\n"}}, "", http.StatusBadRequest, "not an ELF core"},
		{"no file", []field{{"executable", "", "/usr/bin/crashme"}}, "", http.StatusBadRequest, "Choose a core file"},
		{"empty file", []field{{"coredump", "core", ""}}, "", http.StatusBadRequest, "Choose a core file"},
		{"unknown field", []field{{"password", "", "x"}}, "", http.StatusBadRequest, "Unknown form field"},
		{"two cores", []field{{"coredump", "a", "\x7fELF"}, {"coredump", "b", "\x7fELF"}}, "", http.StatusBadRequest, "one core at a time"},
		{"long executable", []field{{"executable", "", strings.Repeat("x", maxExecutable+1)}}, "", http.StatusBadRequest, "at most 4096 bytes"},
		{"not multipart", nil, "application/x-tar", http.StatusBadRequest, "multipart/form-data"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctype, body := form(tt.fields...)
			if tt.ctype != "" {
				ctype = tt.ctype
			}
			resp, err := http.Post(srv.URL+"/upload", ctype, body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if text := pageText(string(b)); resp.StatusCode != tt.code || !strings.Contains(text, tt.says) {
				t.Errorf("%d %q, want %d saying %q", resp.StatusCode, text, tt.code, tt.says)
			}
		})
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) > 0 {
		t.Errorf("spool files left behind: %v", left)
	}
	for path, code := range map[string]int{"/upload/123": http.StatusForbidden, "/upload/12x": http.StatusNotFound} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
}
