package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/taskclient"
	"github.com/retraced/retraced/web"
)

// remote is the backend of a data directory a running `retraced serve`
// holds: every call is a request to its API.
type remote struct {
	base  string
	token string // admin token, sent with every request
	hc    *http.Client
	// warn receives what goes wrong after the answer is in (a task that
	// could not be deleted).
	warn io.Writer
}

func (r *remote) Close() error { return nil }

// do sends a request with a JSON body (if not nil) and decodes a JSON
// answer into out (if not nil). A non-2xx answer becomes a *remoteError
// carrying the server's message.
func (r *remote) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	return r.send(ctx, method, path, "application/json", rd, out)
}

// send sends body (if not nil) as contentType and decodes a JSON answer
// into out (if not nil).
func (r *remote) send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ask the server: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read the server's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &remoteError{code: resp.StatusCode, msg: e.Error}
		}
		return &remoteError{code: resp.StatusCode, msg: resp.Status}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

type remoteError struct {
	code int
	msg  string
}

func (e *remoteError) Error() string { return fmt.Sprintf("server: %s (HTTP %d)", e.msg, e.code) }

func escape(s string) string { return url.PathEscape(s) }

func (r *remote) Lookup(ctx context.Context, id index.BuildID) ([]resolver.MatchView, error) {
	var resp struct {
		Matches []resolver.MatchView `json:"matches"`
	}
	err := r.do(ctx, http.MethodGet, "/api/v1/buildid/"+id.String(), nil, &resp)
	var re *remoteError
	if errors.As(err, &re) && re.code == http.StatusNotFound {
		return nil, fmt.Errorf("build-id %s: %w", id, index.ErrNotFound)
	}
	return resp.Matches, err
}

// CoreToPackages streams the core file to the server.
func (r *remote) CoreToPackages(ctx context.Context, path string) (*resolver.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep := new(resolver.Report)
	if err := r.send(ctx, http.MethodPost, "/api/v1/coredump2packages", "application/octet-stream", f, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

func (r *remote) Mirrors(ctx context.Context) ([]web.SourceView, error) {
	views := []web.SourceView{}
	return views, r.do(ctx, http.MethodGet, "/api/v1/mirrors", nil, &views)
}

func (r *remote) Add(ctx context.Context, src mirror.Source) (web.SourceView, error) {
	var v web.SourceView
	err := r.do(ctx, http.MethodPost, "/api/v1/mirrors", map[string]any{"name": src.Name, "url": src.URL,
		"metalink": src.Metalink, "mirrorlist": src.Mirrorlist,
		"kind": src.Kind, "schedule": src.Schedule, "include": src.Include, "exclude": src.Exclude,
		"gpg_keys": src.GPGKeys, "gpgcheck": src.GPGCheck, "repo_gpgcheck": src.RepoGPGCheck}, &v)
	return v, err
}

func (r *remote) Remove(ctx context.Context, name string) error {
	return r.do(ctx, http.MethodDelete, "/api/v1/mirrors/"+escape(name), nil, nil)
}

// Sync has the server sync the source and waits for its answer; the
// server reports no progress.
func (r *remote) Sync(ctx context.Context, name string, _ func(mirror.Progress)) (*syncReport, error) {
	rep := new(syncReport)
	if err := r.do(ctx, http.MethodPost, "/api/v1/mirrors/"+escape(name)+"/sync?wait=true", nil, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// Compact is the server's business: it compacts after each sync.
func (r *remote) Compact(context.Context) (*mirror.CompactResult, error) { return nil, nil }

func (r *remote) GC(ctx context.Context, dryRun bool) (*gcReport, error) {
	rep := new(gcReport)
	if err := r.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/gc?dry_run=%v", dryRun), nil, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// Polls of a task the server retraces: the first after 50 ms, then twice
// as long each time, up to a second.
const (
	firstTaskPoll = 50 * time.Millisecond
	maxTaskPoll   = time.Second
)

// Retrace sends the core to the server as a retrace task (a plain tar:
// the server is on this machine), waits for it, writes the task's log to
// log, returns the backtrace, and deletes the task. The server's worker
// rates the backtrace in the log; the result carries no rating.
func (r *remote) Retrace(ctx context.Context, core, exe string, log io.Writer) (res retrace.Result, err error) {
	dir, cleanup, err := taskclient.CoreCrashDir(core)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	if exe != "" {
		if err := os.WriteFile(filepath.Join(dir, "executable"), []byte(exe), 0o644); err != nil {
			return res, err
		}
	}
	cd, err := taskclient.OpenCrashDir(dir)
	if err != nil {
		return res, err
	}
	c, err := taskclient.New(r.base, false, nil)
	if err != nil {
		return res, err
	}
	pr, pw := io.Pipe()
	packed := make(chan struct{})
	go func() {
		defer close(packed)
		pw.CloseWithError(cd.PackTar(pw))
	}()
	id, password, err := c.Create(ctx, pr, "application/x-tar", -1)
	pr.Close() // stops the packer if the server stopped reading
	<-packed   // before the crash directory is removed
	if err != nil {
		return res, fmt.Errorf("retrace through the server at %s: %w", r.base, err)
	}
	defer func() {
		if derr := c.Delete(context.WithoutCancel(ctx), id, password); derr != nil {
			fmt.Fprintf(r.warn, "retraced: delete task %s: %v\n", id, derr)
		}
	}()
	fmt.Fprintf(log, "task %s on %s\n", id, r.base)
	status := ""
	for wait := firstTaskPoll; !strings.HasPrefix(status, "FINISHED"); wait = min(2*wait, maxTaskPoll) {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(wait):
		}
		if status, _, err = c.Status(ctx, id, password); err != nil {
			return res, err
		}
	}
	taskLog, err := c.Result(ctx, id, password, "log")
	if err != nil {
		return res, err
	}
	if _, err := io.WriteString(log, taskLog); err != nil {
		return res, err
	}
	if status != "FINISHED_SUCCESS" {
		return res, fmt.Errorf("retrace task %s: %s", id, status)
	}
	res.Backtrace, err = c.Result(ctx, id, password, "backtrace")
	return res, err
}
