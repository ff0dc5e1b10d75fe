package web

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/internal/httpbound"
	"github.com/retraced/retraced/mirror"
)

var (
	uploadTmpl = page("upload.html")
	taskTmpl   = page("task.html")
)

// UploadConfig configures the upload form.
type UploadConfig struct {
	// Tasks serves the Retrace Server task protocol: POST /create,
	// GET /ID, /ID/log and /ID/backtrace with X-Task-Password. Serve
	// passes its whole handler, so that what the form sends goes through
	// the same middleware (the guess throttle, metrics) and the same
	// limits as what abrt-retrace-client sends.
	Tasks http.Handler
	// SpoolDir holds each uploaded core while it is handed over.
	SpoolDir string
	// MaxCore is the largest core accepted, in bytes: the task
	// protocol's max_packed_size, since the core travels as a plain tar.
	MaxCore int64
	// Space, when set, is checked while a core is spooled.
	Space *diskspace.Policy
	// MaxSpools bounds the uploads spooled at once. Default 4.
	MaxSpools int
}

// Uploads is the upload form: a person uploads a core from a browser,
// and it becomes a retrace task through the task protocol, whose status,
// log and backtrace a page shows until it ends. The task's password is
// kept in an HttpOnly, SameSite=Strict cookie scoped to the task's page,
// so the page's URL says nothing secret.
type Uploads struct {
	cfg    UploadConfig
	spools chan struct{}
}

// NewUploads returns the upload form over cfg.Tasks, which must be set.
func NewUploads(cfg UploadConfig) *Uploads {
	if cfg.Tasks == nil {
		panic("web.NewUploads: no task protocol handler")
	}
	if cfg.MaxSpools <= 0 {
		cfg.MaxSpools = 4
	}
	return &Uploads{cfg: cfg, spools: make(chan struct{}, cfg.MaxSpools)}
}

// Register adds GET /upload (the form), POST /upload (its target) and
// GET /upload/:id (a task's page).
func (u *Uploads) Register(r gin.IRouter) {
	r.GET("/upload", u.form)
	r.POST("/upload", u.upload)
	r.GET("/upload/:id", u.task)
}

// Limits of the form's fields.
const (
	maxExecutable = 4096 // the path of the crashing program, as Retrace Server caps it
	maxFormParts  = 4
	// formSlack is what the multipart framing and the small fields may
	// add to the core in a request body.
	formSlack = 64 << 10
	// maxShown bounds the log and the backtrace a task page shows.
	maxShown = 1 << 20
	// taskCookie holds a task's password, on the task's page only.
	taskCookie = "retraced_task"
	// taskCookieAge is how long a browser keeps the cookie.
	taskCookieAge = 7 * 24 * time.Hour
)

type uploadData struct {
	MaxCore string
	Error   string
}

func (u *Uploads) form(c *gin.Context) {
	render(c, http.StatusOK, uploadTmpl, uploadData{MaxCore: mirror.HumanBytes(u.cfg.MaxCore)})
}

// refuse answers the form again with what went wrong. The rest of the
// body is not read: the connection closes after the answer, once the
// browser has had the time to read it (httpbound.Refusal).
func (u *Uploads) refuse(c *gin.Context, code int, msg string) {
	var page bytes.Buffer
	if err := uploadTmpl.Execute(&page, uploadData{MaxCore: mirror.HumanBytes(u.cfg.MaxCore), Error: msg}); err != nil {
		c.String(http.StatusInternalServerError, "render: %v", err)
		return
	}
	after := httpbound.Refusal(c.Writer, c.Request.Body)
	c.Header("Connection", "close")
	c.Header("Content-Length", strconv.Itoa(page.Len()))
	c.Data(code, "text/html; charset=utf-8", page.Bytes())
	after()
}

// upload is POST /upload, multipart/form-data with a file "coredump" and
// an optional "executable" (the crashing program's path, for a core that
// does not record it). The core is spooled to disk, bounded, then sent
// as a tar to POST /create; the answer's task id and password become a
// redirect to the task's page and the cookie it reads.
func (u *Uploads) upload(c *gin.Context) {
	if c.Request.ContentLength > u.cfg.MaxCore+formSlack {
		u.refuse(c, http.StatusRequestEntityTooLarge, "The core is larger than "+mirror.HumanBytes(u.cfg.MaxCore)+".")
		return
	}
	select {
	case u.spools <- struct{}{}:
	default:
		c.Header("Retry-After", "10")
		u.refuse(c, http.StatusServiceUnavailable, fmt.Sprintf("%d cores are being uploaded already; try again shortly.", u.cfg.MaxSpools))
		return
	}
	id, password, code, msg := u.handOver(c)
	<-u.spools // before a refusal lingers over the rest of the body
	if code != http.StatusCreated {
		u.refuse(c, code, msg)
		return
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: taskCookie, Value: password, Path: "/upload/" + id,
		MaxAge: int(taskCookieAge.Seconds()), HttpOnly: true, Secure: c.Request.TLS != nil, SameSite: http.SameSiteStrictMode})
	c.Redirect(http.StatusSeeOther, "/upload/"+id)
}

// handOver reads the form, spools its core and sends it to POST /create:
// it returns the task's id and password with 201, or the status and
// message of a refusal.
func (u *Uploads) handOver(c *gin.Context) (id, password string, code int, msg string) {
	mr, err := c.Request.MultipartReader()
	if err != nil {
		return "", "", http.StatusBadRequest, "Send the form as multipart/form-data: " + err.Error() + "."
	}
	var core *os.File
	var coreSize int64
	defer func() {
		if core != nil {
			core.Close()           // read-only by now
			os.Remove(core.Name()) //nolint:errcheck // a spool file; gc's tmp sweep takes what stays
		}
	}()
	exe := ""
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || parts == maxFormParts {
			return "", "", http.StatusBadRequest, "The form is malformed or has unknown fields."
		}
		switch part.FormName() {
		case "executable":
			b, err := io.ReadAll(io.LimitReader(part, maxExecutable+1))
			if err != nil || len(b) > maxExecutable || bytes.ContainsAny(b, "\n\x00") {
				return "", "", http.StatusBadRequest, fmt.Sprintf("The executable must be one path of at most %d bytes.", maxExecutable)
			}
			exe = strings.TrimSpace(string(b))
		case "coredump":
			if core != nil {
				return "", "", http.StatusBadRequest, "Upload one core at a time."
			}
			if err = os.MkdirAll(u.cfg.SpoolDir, 0o700); err == nil {
				core, err = os.CreateTemp(u.cfg.SpoolDir, "upload-*.core")
			}
			if err != nil {
				return "", "", http.StatusInternalServerError, "Unable to spool the core: " + err.Error()
			}
			coreSize, err = u.cfg.Space.Copy(core, io.LimitReader(part, u.cfg.MaxCore+1))
			switch {
			case errors.Is(err, diskspace.ErrLow):
				return "", "", http.StatusInsufficientStorage, "There is not enough storage space on the server: " + err.Error()
			case err != nil:
				return "", "", http.StatusBadRequest, "The upload broke off: " + err.Error()
			case coreSize > u.cfg.MaxCore:
				return "", "", http.StatusRequestEntityTooLarge, "The core is larger than " + mirror.HumanBytes(u.cfg.MaxCore) + "."
			}
		default:
			return "", "", http.StatusBadRequest, fmt.Sprintf("Unknown form field %.40q.", part.FormName())
		}
	}
	if core == nil || coreSize == 0 {
		return "", "", http.StatusBadRequest, "Choose a core file to upload."
	}
	var magic [4]byte
	if _, err := core.ReadAt(magic[:], 0); err != nil || string(magic[:]) != "\x7fELF" {
		return "", "", http.StatusBadRequest, "The file is not an ELF core: it does not start with \\x7fELF. (A core compressed by systemd-coredump must be unpacked first: coredumpctl dump -o FILE.)"
	}

	// The crash directory, as a tar streamed to POST /create.
	pr, pw := io.Pipe()
	written := make(chan struct{})
	go func() {
		defer close(written)
		pw.CloseWithError(writeCrashDir(pw, core, coreSize, exe))
	}()
	defer func() {
		pr.Close() // a writer the handler left unread stops
		<-written  // before the spool file is closed
	}()
	req, err := http.NewRequestWithContext(c.Request.Context(), http.MethodPost, "/create", pr)
	if err != nil {
		return "", "", http.StatusInternalServerError, err.Error()
	}
	req.ContentLength = crashDirSize(coreSize, exe)
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("X-Task-Type", "0") // a coredump retrace
	answer := u.inner(c, req)
	if answer.code != http.StatusCreated {
		return "", "", answer.code, "The retrace server refused the core: " + strings.TrimSpace(answer.body.String())
	}
	id, password = answer.h.Get("X-Task-Id"), answer.h.Get("X-Task-Password")
	if !validTaskID(id) || password == "" {
		return "", "", http.StatusInternalServerError, "The retrace server answered without a task."
	}
	return id, password, http.StatusCreated, ""
}

// writeCrashDir writes the crash directory to w as a tar: coredump (the
// spooled core) and, when given, executable.
func writeCrashDir(w io.Writer, core *os.File, size int64, exe string) error {
	tw := tar.NewWriter(w)
	now := time.Now().Truncate(time.Second)
	if err := tw.WriteHeader(&tar.Header{Name: "coredump", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: now, Format: tar.FormatUSTAR}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, io.NewSectionReader(core, 0, size)); err != nil {
		return err
	}
	if exe != "" {
		if err := tw.WriteHeader(&tar.Header{Name: "executable", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(exe)), ModTime: now, Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, exe); err != nil {
			return err
		}
	}
	return tw.Close()
}

// crashDirSize is the length of what writeCrashDir writes: a 512-byte
// header and the content padded to 512 bytes per file, then two zero
// blocks.
func crashDirSize(core int64, exe string) int64 {
	pad := func(n int64) int64 { return (n + 511) / 512 * 512 }
	n := 512 + pad(core) + 1024
	if exe != "" {
		n += 512 + pad(int64(len(exe)))
	}
	return n
}

func validTaskID(id string) bool {
	if id == "" || len(id) > 20 {
		return false
	}
	for _, r := range id {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// answer is what the task protocol answered an inner request: its status,
// headers, and the first maxShown bytes of its body.
type answer struct {
	h         http.Header
	code      int
	body      bytes.Buffer
	truncated bool
}

func (a *answer) Header() http.Header { return a.h }

func (a *answer) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
}

// Flush does nothing: the answer is read when the handler returns.
func (a *answer) Flush() {}

func (a *answer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	if room := maxShown - a.body.Len(); len(b) > room {
		a.body.Write(b[:max(room, 0)])
		a.truncated = true
	} else {
		a.body.Write(b)
	}
	return len(b), nil
}

// inner sends req to the task protocol as coming from c's client (its
// address and forwarding header, so the guess throttle counts it as the
// client's) and returns the answer.
func (u *Uploads) inner(c *gin.Context, req *http.Request) *answer {
	req.RemoteAddr = c.Request.RemoteAddr
	req.Host = c.Request.Host
	if xff := c.Request.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		req.Header["X-Forwarded-For"] = xff
	}
	a := &answer{h: http.Header{}}
	u.cfg.Tasks.ServeHTTP(a, req)
	if a.code == 0 {
		a.code = http.StatusOK
	}
	return a
}

// taskData is the data of task.html.
type taskData struct {
	ID, Status, Step    string
	Finished, Succeeded bool
	Log, Backtrace      string
	LogCut, BtCut       bool
	Error               string
}

// task is GET /upload/:id: the task's status, log and, once it
// succeeded, its backtrace, from the task protocol with the password the
// browser's cookie holds; the page refreshes itself until the task ends.
func (u *Uploads) task(c *gin.Context) {
	id := c.Param("id")
	if !validTaskID(id) {
		render(c, http.StatusNotFound, taskTmpl, taskData{ID: "?", Error: "There is no such task."})
		return
	}
	d := taskData{ID: id}
	ck, err := c.Request.Cookie(taskCookie)
	if err != nil || ck.Value == "" {
		d.Error = "This page shows a task to the browser that uploaded its core only; this browser holds no password for task " + id + "."
		render(c, http.StatusForbidden, taskTmpl, d)
		return
	}
	get := func(path string) *answer {
		req, err := http.NewRequestWithContext(c.Request.Context(), http.MethodGet, path, nil)
		if err != nil {
			return &answer{code: http.StatusInternalServerError}
		}
		req.Header.Set("X-Task-Password", ck.Value)
		return u.inner(c, req)
	}
	st := get("/" + id)
	if st.code != http.StatusOK {
		d.Error = strings.TrimSpace(st.body.String())
		render(c, st.code, taskTmpl, d)
		return
	}
	d.Status = st.h.Get("X-Task-Status")
	d.Step = strings.TrimSpace(st.body.String())
	d.Finished = strings.HasPrefix(d.Status, "FINISHED_")
	d.Succeeded = d.Status == "FINISHED_SUCCESS"
	if lg := get("/" + id + "/log"); lg.code == http.StatusOK {
		d.Log, d.LogCut = lg.body.String(), lg.truncated
	}
	if d.Finished {
		if bt := get("/" + id + "/backtrace"); bt.code == http.StatusOK {
			d.Backtrace, d.BtCut = bt.body.String(), bt.truncated
		}
	}
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusOK, taskTmpl, d)
}
