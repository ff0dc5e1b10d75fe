// Package taskclient speaks the Retrace Server task protocol as a client
// (retrace-client, and retraced retrace through a running server) and
// packs crash directories for it. Of retraced, it may import only
// resolver/corefile: CoreCrashDir reads a bare core's executable with it.
package taskclient

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxAnswer bounds what is read of an answer: a log or a backtrace.
const maxAnswer = 64 << 20

// Client speaks the Retrace Server task protocol.
type Client struct {
	base *url.URL
	hc   *http.Client
	// headers, when set, receives every answer's headers (--headers).
	headers io.Writer
}

// New returns a client of the server at rawURL (https when it has no
// scheme, as abrt-retrace-client assumes); insecure skips TLS
// verification; headers, when set, receives every answer's headers.
func New(rawURL string, insecure bool, headers io.Writer) (*Client, error) {
	// As abrt-retrace-client: a URL without a scheme is https.
	if !strings.Contains(rawURL, "://") {
		rawURL = "https://" + rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("retrace server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("retrace server URL %q: want http(s)://HOST[:PORT][/PATH]", rawURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // -k, asked for
	}
	return &Client{base: u, hc: &http.Client{Transport: tr}, headers: headers}, nil
}

// url returns the server's URL with the path segments appended.
func (c *Client) url(segments ...string) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.Join(segments, "/")
	u.RawPath = ""
	return u.String()
}

// answer is a response read in full.
type answer struct {
	code   int
	header http.Header
	body   string
}

func (c *Client) do(req *http.Request) (*answer, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to the retrace server %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", req.URL.Redacted(), err)
	}
	if c.headers != nil {
		for k, vs := range resp.Header {
			for _, v := range vs {
				fmt.Fprintf(c.headers, "%s: %s\n", k, v)
			}
		}
	}
	return &answer{code: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func (c *Client) get(ctx context.Context, headers map[string]string, segments ...string) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(segments...), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return c.do(req)
}

// StatusError is an answer the client cannot use, with its HTTP status,
// so that a caller can tell a busy or full server (503, 507), worth
// asking again, from a refusal.
type StatusError struct {
	Code int
	Body string
	msg  string
}

func (e *StatusError) Error() string { return e.msg }

// Temporary reports whether the server may accept the same request later:
// it is overloaded, out of space, or failed internally.
func (e *StatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusTooManyRequests || e.Code == http.StatusRequestTimeout
}

// unexpected is abrt-retrace-client's error for an answer it cannot use.
func unexpected(a *answer) error {
	return &StatusError{Code: a.code, Body: a.body, msg: fmt.Sprintf("Unexpected HTTP response from server: %d\n%s", a.code, a.body)}
}

// Settings is GET /settings.
type Settings struct {
	RunningTasks, MaxRunningTasks int
	MaxPackedSize                 int64 // bytes
	MaxUnpackedSize               int64 // bytes
	Formats, Releases             []string
}

func (c *Client) Settings(ctx context.Context) (*Settings, error) {
	a, err := c.get(ctx, nil, "settings")
	if err != nil {
		return nil, err
	}
	if a.code != http.StatusOK {
		return nil, unexpected(a)
	}
	return ParseSettings(a.body), nil
}

// ParseSettings reads "key value" lines as abrt-retrace-client does:
// keys case-insensitive, unknown keys and malformed lines skipped.
func ParseSettings(body string) *Settings {
	s := &Settings{}
	for _, line := range strings.Split(body, "\n") {
		key, value, ok := strings.Cut(strings.TrimRight(line, "\r"), " ")
		if !ok {
			continue
		}
		num := func() int64 {
			n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			if err != nil {
				return 0
			}
			return n
		}
		switch strings.ToLower(key) {
		case "running_tasks":
			s.RunningTasks = int(num())
		case "max_running_tasks":
			s.MaxRunningTasks = int(num())
		case "max_packed_size":
			s.MaxPackedSize = num() << 20
		case "max_unpacked_size":
			s.MaxUnpackedSize = num() << 20
		case "supported_formats":
			s.Formats = strings.Fields(value)
		case "supported_releases":
			s.Releases = strings.Fields(value)
		}
	}
	return s
}

// CheckPackage is GET /checkpackage: whether the server can retrace
// crashes of the package nvr.arch.
func (c *Client) CheckPackage(ctx context.Context, nvr, arch string) (bool, error) {
	a, err := c.get(ctx, map[string]string{"X-Package-NVR": nvr, "X-Package-Arch": arch}, "checkpackage")
	if err != nil {
		return false, err
	}
	switch a.code {
	case http.StatusFound:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, unexpected(a)
}

// Create is POST /create with the archive read from body, of contentType
// (application/x-xz-compressed-tar, as Pack writes, or application/x-tar)
// and size bytes; a size below 0 streams it chunked, which a Retrace
// Server behind mod_wsgi may refuse.
func (c *Client) Create(ctx context.Context, body io.Reader, contentType string, size int64) (id, password string, err error) {
	return c.CreateKeyed(ctx, body, contentType, size, "")
}

// CreateKeyed is Create naming the task with key (see NewKey; "" for
// none): retraced answers a repeated create with the same key with the
// task the first one made, so a client that cannot tell whether an upload
// arrived sends it again without making a second task. The key becomes
// the task's password.
func (c *Client) CreateKeyed(ctx context.Context, body io.Reader, contentType string, size int64, key string) (id, password string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("create"), body)
	if err != nil {
		return "", "", err
	}
	if key != "" {
		req.Header.Set("X-Task-Key", key)
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Task-Type", "0") // a coredump retrace, as abrt-retrace-client sends it
	// Do not redirect: a redirect cannot replay a streamed body.
	hc := *c.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cc := *c
	cc.hc = &hc
	a, err := cc.do(req)
	if err != nil {
		return "", "", err
	}
	switch a.code {
	case http.StatusCreated:
	case http.StatusInternalServerError, http.StatusInsufficientStorage:
		return "", "", &StatusError{Code: a.code, Body: a.body, msg: a.body}
	case http.StatusForbidden:
		return "", "", fmt.Errorf("Your problem directory is corrupted and can not be processed by the Retrace server.\n" +
			"The archive contains malicious files (such as symlinks) and thus can not be processed.")
	default:
		return "", "", unexpected(a)
	}
	id, password = a.header.Get("X-Task-Id"), a.header.Get("X-Task-Password")
	if id == "" {
		return "", "", errors.New("Invalid response from server: missing X-Task-Id.")
	}
	if password == "" {
		return "", "", errors.New("Invalid response from server: missing X-Task-Password.")
	}
	return id, password, nil
}

// Status is GET /ID: the task's status and its current step in words.
func (c *Client) Status(ctx context.Context, id, password string) (status, message string, err error) {
	a, err := c.get(ctx, map[string]string{"X-Task-Password": password}, id)
	if err != nil {
		return "", "", err
	}
	if a.code != http.StatusOK {
		return "", "", unexpected(a)
	}
	status = a.header.Get("X-Task-Status")
	if status == "" {
		return "", "", errors.New("Invalid response from server: missing X-Task-Status.")
	}
	return status, a.body, nil
}

// Result is GET /ID/log or /ID/backtrace.
func (c *Client) Result(ctx context.Context, id, password, what string) (string, error) {
	a, err := c.get(ctx, map[string]string{"X-Task-Password": password}, id, what)
	if err != nil {
		return "", err
	}
	if a.code != http.StatusOK {
		return "", unexpected(a)
	}
	return a.body, nil
}

// Exploitable is GET /ID/exploitable; "" when the server has none.
func (c *Client) Exploitable(ctx context.Context, id, password string) (string, error) {
	a, err := c.get(ctx, map[string]string{"X-Task-Password": password}, id, "exploitable")
	if err != nil {
		return "", err
	}
	switch a.code {
	case http.StatusOK:
		return a.body, nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", unexpected(a)
}

// Delete is DELETE /ID: the server removes the task.
func (c *Client) Delete(ctx context.Context, id, password string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.url(id), nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Task-Password", password)
	a, err := c.do(req)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK && a.code != http.StatusNoContent {
		return unexpected(a)
	}
	return nil
}

// NewKey returns a random task key: 32 characters of [0-9A-Za-z], as
// X-Task-Key wants (190 bits: it becomes the task's password).
func NewKey() (string, error) {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	out := make([]byte, 0, 32)
	buf := make([]byte, 64)
	for len(out) < 32 {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < 256-256%len(alphabet) && len(out) < 32 {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}
