package main

import (
	"bytes"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index/elfnote"
)

// TestBlobsInObjectStore: with [storage] blobs = "s3://BUCKET/PREFIX"
// (credentials from AWS_*), serve mirrors the bundled repository into a
// real S3 server (versitygw) and keeps no compressed copy on local disk;
// debuginfod downloads and a retrace task read the blobs back from it.
func TestBlobsInObjectStore(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	s3 := servers.S3(t)
	t.Setenv("AWS_ENDPOINT_URL", s3.Endpoint)
	t.Setenv("AWS_REGION", s3.Region)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	cfg := testConfig(t)
	cfg.Storage.Blobs = "s3://retraced/mirror"
	url := startServe(t, cfg)

	objects := 0
	filepath.WalkDir(filepath.Join(s3.Dir, "retraced", "mirror", "sha256"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			objects++
		}
		return nil
	})
	local := 0
	filepath.WalkDir(filepath.Join(cfg.Data, "blobs", "sha256"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			local++
		}
		return nil
	})
	if objects == 0 || local != 0 {
		t.Fatalf("%d blobs in the object store, %d compressed copies on local disk; want some and none", objects, local)
	}

	for _, e := range fixtures.ELFFiles(t)[:6] {
		code, _, body := httpDo(t, http.MethodGet, url+"/buildid/"+e.BuildID+"/"+e.Kind, nil, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s %s: %d", e.BuildID, e.Kind, code)
		}
		id, err := elfnote.BuildID(bytes.NewReader([]byte(body)))
		if err != nil || hex.EncodeToString(id) != e.BuildID {
			t.Fatalf("%s %s from the object store carries build-id %x (%v)", e.BuildID, e.Kind, id, err)
		}
	}

	task := createTask(t, url, crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"), nil))
	if st := task.wait(t, 60*time.Second); st != "FINISHED_SUCCESS" {
		_, _, logText := task.get(t, "/log")
		t.Fatalf("task: %s\n%s", st, logText)
	}
	if _, _, bt := task.get(t, "/backtrace"); !strings.Contains(bt, "crashme_dispatch") {
		t.Errorf("backtrace:\n%s", bt)
	}
	if _, err := os.Stat(filepath.Join(s3.Dir, "retraced")); err != nil {
		t.Fatal(err)
	}
}
