package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// remote talks to the `retraced serve` that holds a data directory, so
// that CLI commands keep working while it runs.
type remote struct {
	base  string
	token string
	hc    *http.Client
}

// backend opens the data directory, or, when a running server holds it,
// returns a client for that server.
func (g *globals) backend(cmd *cobra.Command) (*store, *remote, error) {
	s, cfg, err := g.open(cmd)
	if !errors.Is(err, ErrInUse) {
		return s, nil, err
	}
	b, rerr := os.ReadFile(filepath.Join(cfg.Data, serverFile))
	if rerr != nil {
		return nil, nil, err // held by a process that is not a server
	}
	var info serverInfo
	if json.Unmarshal(b, &info) != nil || info.URL == "" {
		return nil, nil, err
	}
	r := &remote{base: info.URL, token: cfg.AdminToken, hc: &http.Client{Timeout: 0}}
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, herr := hc.Get(info.URL + "/healthz")
	if herr != nil {
		return nil, nil, fmt.Errorf("%w (its server at %s does not answer: %v)", err, info.URL, herr)
	}
	resp.Body.Close()
	return nil, r, nil
}

// do sends a request and decodes a JSON answer into out (if not nil). A
// non-2xx answer becomes an error carrying the server's message.
func (r *remote) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
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
		return err
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
