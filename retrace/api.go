package retrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/internal/httpbound"
)

// Headers of the protocol.
const (
	HeaderTaskID       = "X-Task-Id"
	HeaderTaskPassword = "X-Task-Password"
	// HeaderTaskKey, on POST /create, is a client's own name for the task
	// it creates (PasswordLength characters of [0-9A-Za-z], random, kept
	// secret: it becomes the task's password). A create repeated with the
	// same key answers with the task the first one made, so a client that
	// cannot tell whether its upload arrived may send it again without
	// making a second task. Retrace Server has no such header; a client
	// without it gets what Retrace Server gives.
	HeaderTaskKey     = "X-Task-Key"
	HeaderTaskStatus  = "X-Task-Status"
	HeaderPackageNVR  = "X-Package-NVR"
	HeaderPackageArch = "X-Package-Arch"
	HeaderOSRelease   = "X-OS-Release"
)

// Register adds the task protocol's routes to r:
//
//	GET    /settings
//	GET    /checkpackage
//	POST   /create
//	GET    /:id
//	GET    /:id/log
//	GET    /:id/backtrace
//	DELETE /:id
//
// gin's router (1.8 and later) lets the /:id routes share the root with
// static routes and with other prefixes (/api/..., /buildid/..., /metrics,
// /healthz, /), preferring the static ones, so they are plain routes: no
// NoRoute fallback is needed. An /:id that is not all digits is answered
// like an unknown route: 404, JSON under /api/ as the rest of the API.
func (s *Server) Register(r gin.IRouter) {
	r.GET("/settings", s.settings)
	r.GET("/checkpackage", s.checkPackage)
	r.POST("/create", s.createTask)
	r.GET("/:id", s.status)
	r.GET("/:id/log", s.serveLog)
	r.GET("/:id/backtrace", s.serveBacktrace)
	r.DELETE("/:id", s.deleteTask)
}

// textError answers with a plain-text error body, as Retrace Server does.
func textError(c *gin.Context, code int, msg string) {
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.String(code, "%s", msg)
	c.Abort()
}

func (s *Server) settings(c *gin.Context) {
	st := s.Stats()
	releases := "any"
	if len(s.cfg.SupportedReleases) > 0 {
		releases = strings.Join(s.cfg.SupportedReleases, " ")
	}
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.String(http.StatusOK, "running_tasks %d\nmax_running_tasks %d\nmax_packed_size %d\nmax_unpacked_size %d\nsupported_formats %s\nsupported_releases %s\n",
		st.Running, s.cfg.MaxRunningTasks, s.cfg.MaxPackedSize, s.cfg.MaxUnpackedSize,
		strings.Join(SupportedFormats, " "), releases)
}

// As Retrace Server validates them.
var (
	packageRE   = regexp.MustCompile(`^[\w.+-]+([1-9][0-9]*:)?[a-zA-Z0-9.+~-]+$`)
	archRE      = regexp.MustCompile(`^\w+$`)
	releaseIDRE = regexp.MustCompile(`^[a-zA-Z0-9]+-[a-zA-Z0-9.]+-\w+$`)
)

// validNVR reports whether nvr is name-[epoch:]version-release.
func validNVR(nvr string) bool {
	if len(nvr) > 256 || !packageRE.MatchString(nvr) {
		return false
	}
	i := strings.LastIndexByte(nvr, '-')
	j := strings.LastIndexByte(nvr[:max(i, 0)], '-')
	return i > 0 && j > 0 && i < len(nvr)-1 && j < i-1
}

func (s *Server) checkPackage(c *gin.Context) {
	nvr, arch := c.GetHeader(HeaderPackageNVR), c.GetHeader(HeaderPackageArch)
	switch {
	case nvr == "":
		textError(c, http.StatusBadRequest, "Required header '"+HeaderPackageNVR+"' not found")
		return
	case !validNVR(nvr):
		textError(c, http.StatusBadRequest, "Package NVR is not name-version-release or contains illegal characters")
		return
	case arch == "":
		textError(c, http.StatusBadRequest, "Required header '"+HeaderPackageArch+"' not found")
		return
	case len(arch) > 32 || !archRE.MatchString(arch):
		textError(c, http.StatusBadRequest, "Architecture contains illegal characters")
		return
	}
	if rel := c.GetHeader(HeaderOSRelease); rel != "" && (len(rel) > 128 || !releaseIDRE.MatchString(rel)) {
		textError(c, http.StatusBadRequest, "OS release contains illegal characters")
		return
	}
	found := false
	if s.cfg.Packages != nil {
		for _, a := range []string{arch, "noarch"} {
			ok, err := s.cfg.Packages.HasNVRArch(nvr, a)
			if err != nil {
				s.log.Error("retrace: check package", "nvr", nvr, "arch", a, "err", err)
				textError(c, http.StatusInternalServerError, "Unable to look the package up")
				return
			}
			if found = ok; found || a == "noarch" {
				break
			}
		}
	}
	if found {
		c.Status(http.StatusFound)
		return
	}
	textError(c, http.StatusNotFound, "Package "+nvr+"."+arch+" is not known")
}

func (s *Server) createTask(c *gin.Context) {
	// The body is not read (or not all of it) on the refusals: the
	// connection is closed after the answer, once the client has had the
	// time to read it (httpbound.Refusal).
	refuse := func(code int, msg string) {
		after := httpbound.Refusal(c.Writer, c.Request.Body)
		c.Header("Connection", "close")
		// A known length: the answer is whole once flushed, while the
		// rest of the body is still being read.
		c.Header("Content-Length", strconv.Itoa(len(msg)))
		textError(c, code, msg)
		after()
	}
	format := ""
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err == nil {
		for _, f := range SupportedFormats {
			if mt == f {
				format = f
			}
		}
	}
	if format == "" {
		refuse(http.StatusUnsupportedMediaType, "Specified archive format is not supported; use one of: "+strings.Join(SupportedFormats, ", "))
		return
	}
	if c.Request.ContentLength > s.cfg.MaxPackedSize*bytesPerMiB {
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("Specified archive is too large: more than %d MiB", s.cfg.MaxPackedSize))
		return
	}
	key := c.GetHeader(HeaderTaskKey)
	if key != "" && !ValidTaskKey(key) {
		refuse(http.StatusBadRequest, fmt.Sprintf("%s must be %d characters of [0-9A-Za-z]", HeaderTaskKey, PasswordLength))
		return
	}
	body := httpbound.NewRateReader(c.Request.Body, http.NewResponseController(c.Writer), time.Now(),
		s.cfg.UploadTimeout, s.cfg.UploadRateWindow, s.cfg.MinUploadRate<<10)
	if err := body.Start(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn("retrace: upload deadline", "err", err)
	}
	id, password, existing, err := s.create(body, format, c.Request.ContentLength, key)
	switch {
	case errors.Is(err, httpbound.ErrTooSlow):
		refuse(http.StatusRequestTimeout, fmt.Sprintf("The upload is slower than %d KiB/s", s.cfg.MinUploadRate))
	case errors.Is(err, os.ErrDeadlineExceeded) && body.TimedOut():
		refuse(http.StatusRequestTimeout, fmt.Sprintf("The upload took longer than %s", s.cfg.UploadTimeout))
	case errors.Is(err, os.ErrDeadlineExceeded):
		refuse(http.StatusRequestTimeout, fmt.Sprintf("The upload sent nothing for %s", s.cfg.UploadRateWindow))
	case errors.Is(err, ErrQueueFull):
		c.Header("Retry-After", "60")
		refuse(http.StatusServiceUnavailable, "Retrace server is fully loaded at the moment")
	case errors.Is(err, ErrNoSpace):
		refuse(http.StatusInsufficientStorage, "There is not enough storage space on the server: "+err.Error())
	case errors.Is(err, ErrTooLarge):
		refuse(http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, ErrBadArchive):
		refuse(http.StatusBadRequest, err.Error())
	case err != nil:
		s.log.Error("retrace: create task", "err", err)
		refuse(http.StatusInternalServerError, "Unable to create new task")
	default:
		after := func() {}
		if existing {
			// A repeated keyed create: the task it made already, its
			// body not read.
			after = httpbound.Refusal(c.Writer, c.Request.Body)
			c.Header("Connection", "close")
			c.Header("Content-Length", "0")
		}
		c.Header(HeaderTaskID, id)
		c.Header(HeaderTaskPassword, password)
		c.Status(http.StatusCreated)
		c.Writer.WriteHeaderNow()
		after()
	}
}

// openTask answers 404 or 403 and returns false unless the request names a
// task and carries its password.
func (s *Server) openTask(c *gin.Context) (task, State, bool) {
	id := c.Param("id")
	if !validID(id) {
		// Not a task path at all: answer as an unknown route would.
		if strings.HasPrefix(c.Request.URL.Path, "/api/") {
			c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "not found"})
		} else {
			textError(c, http.StatusNotFound, "404 page not found")
		}
		return task{}, State{}, false
	}
	t, st, err := s.open(id, c.GetHeader(HeaderTaskPassword))
	switch {
	case errors.Is(err, ErrNotFound):
		textError(c, http.StatusNotFound, "There is no such task")
	case errors.Is(err, ErrBadPassword):
		textError(c, http.StatusForbidden, "Invalid password")
	case err != nil:
		s.log.Error("retrace: open task", "task", id, "err", err)
		textError(c, http.StatusInternalServerError, "Unable to read the task")
	default:
		return t, st, true
	}
	return task{}, State{}, false
}

// Steps, in words, as Retrace Server says them where it has them.
const (
	stepQueued    = "Waiting for a free worker"
	stepRetracing = "Generating backtrace"
	stepSuccess   = "Retrace job finished successfully"
	stepFailure   = "Retrace job failed"
)

func (s *Server) status(c *gin.Context) {
	t, st, ok := s.openTask(c)
	if !ok {
		return
	}
	reported, step := StatusPending, stepQueued
	ahead := -1
	switch st.Status {
	case StatusSuccess:
		reported, step = StatusSuccess, stepSuccess
	case StatusFailure:
		reported, step = StatusFailure, stepFailure
	case statusRunning:
		step = stepRetracing
	default:
		ahead = max(s.position(t.id), 0)
		if ahead > 0 {
			step = fmt.Sprintf("Waiting in the queue, %d task(s) ahead", ahead)
		}
	}
	// An unfinished task says, after the step, how long it should take
	// in all, from the statistics of the last successful tasks.
	if !st.Status.Finished() {
		if est, ok := s.Estimate(ahead); ok {
			step += "\n" + est.String()
		}
	}
	// A finished task says, after the step, how good its backtrace is
	// and what the mirror lacked, one line each, so that a client can
	// tell a useful backtrace from an empty one.
	if st.Status.Finished() {
		if st.Rating != "" {
			step += "\nBacktrace rating: " + st.Rating
		}
		for _, m := range st.Missing {
			step += "\nMissing: " + m
		}
	}
	c.Header(HeaderTaskStatus, string(reported))
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.String(http.StatusOK, "%s", step)
}

func (s *Server) serveLog(c *gin.Context) {
	t, _, ok := s.openTask(c)
	if !ok {
		return
	}
	s.serveFile(c, t, logFile, "There is no log for the specified task")
}

func (s *Server) serveBacktrace(c *gin.Context) {
	t, _, ok := s.openTask(c)
	if !ok {
		return
	}
	s.serveFile(c, t, backtraceFile, "There is no backtrace for the specified task")
}

// serveFile streams one of a task's files as it is now (a log may grow
// while it is read: what was there at the open is sent).
func (s *Server) serveFile(c *gin.Context, t task, name, missing string) {
	if s.shared != nil {
		s.serveShared(c, t.id, name, missing)
		return
	}
	f, err := os.Open(t.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		textError(c, http.StatusNotFound, missing)
		return
	}
	if err != nil {
		s.log.Error("retrace: open task file", "task", t.id, "file", name, "err", err)
		textError(c, http.StatusInternalServerError, "Unable to read the task")
		return
	}
	defer f.Close() // read-only
	fi, err := f.Stat()
	if err != nil {
		textError(c, http.StatusInternalServerError, "Unable to read the task")
		return
	}
	c.DataFromReader(http.StatusOK, fi.Size(), "text/plain; charset=utf-8", io.LimitReader(f, fi.Size()), nil)
}

func (s *Server) deleteTask(c *gin.Context) {
	t, _, ok := s.openTask(c)
	if !ok {
		return
	}
	err := s.remove(t.id)
	switch {
	case errors.Is(err, ErrNotFound):
		textError(c, http.StatusNotFound, "There is no such task")
	case err != nil:
		s.log.Error("retrace: delete task", "task", t.id, "err", err)
		textError(c, http.StatusInternalServerError, "An error occurred while deleting task data")
	default:
		c.Header("Content-Type", "text/plain; charset=utf-8")
		c.String(http.StatusOK, "All task data were deleted successfully")
	}
}

// serveShared streams a task's file from the shared store.
func (s *Server) serveShared(c *gin.Context, id, name, missing string) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	r, size, err := s.shared.Open(ctx, id, name)
	if errors.Is(err, fs.ErrNotExist) {
		textError(c, http.StatusNotFound, missing)
		return
	}
	if err != nil {
		s.log.Error("retrace: open task file", "task", id, "file", name, "err", err)
		textError(c, http.StatusInternalServerError, "Unable to read the task")
		return
	}
	defer r.Close() // read-only
	c.DataFromReader(http.StatusOK, size, "text/plain; charset=utf-8", io.LimitReader(r, size), nil)
}
