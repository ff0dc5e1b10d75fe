package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
)

// Mirrors is what the operations API needs of the mirror.
type Mirrors interface {
	Sources() ([]*mirror.Source, error)
	Add(ctx context.Context, s mirror.Source) (*mirror.Source, error)
	Remove(name string) error
	// Sync runs one sync; it fails with mirror.ErrSyncing when one runs.
	Sync(ctx context.Context, name string, progress func(mirror.Progress)) (*mirror.Result, error)
	// Refuse records a sync that did not run, and why.
	Refuse(name string, why error) (*mirror.Result, error)
	Compact(ctx context.Context) (*mirror.CompactResult, error)
	// SyncingElsewhere names another node running the source's sync.
	SyncingElsewhere(ctx context.Context, name string) (string, error)
}

var _ Mirrors = (*mirror.Mirror)(nil)

// Config tunes Ops.
type Config struct {
	// AdminToken, when set, is required as "Authorization: Bearer TOKEN" by
	// every request that changes something.
	AdminToken string
	// Space is the free-space policy: while it says the disk is low, a
	// sync asked for is refused and recorded as paused. Nil: never low.
	Space *diskspace.Policy
	// APISources is what a source added over the API may name:
	// SourcesPublic (also when empty), SourcesPrivate or SourcesLocal.
	APISources string
}

// Ops serves the mirrors API and runs the syncs it starts.
type Ops struct {
	m   Mirrors
	cfg Config
	// jobs carries syncs to the goroutine Run owns, so that a sync started
	// by a request outlives the request.
	jobs chan syncJob

	// sched runs each source's scheduled syncs (nil: none); reschedMu
	// keeps its sync jobs following the sources one change at a time.
	sched     *Scheduler
	reschedMu sync.Mutex
	log       *slog.Logger

	mu       sync.Mutex
	running  map[string]bool
	progress map[string]mirror.Progress
}

type syncJob struct {
	name string
	done chan SyncOutcome // nil: nobody waits
}

// SyncOutcome is how a sync the Ops ran ended.
type SyncOutcome struct {
	res *mirror.Result
	err error
}

// Result returns the sync's result, or why it could not start.
func (o SyncOutcome) Result() (*mirror.Result, error) { return o.res, o.err }

// NewOps returns the operations API over m. It keeps one job in sched
// per source, named "sync NAME", that queues the source's sync on its
// schedule; sched may be nil (syncs only when asked for).
func NewOps(m Mirrors, sched *Scheduler, cfg Config) *Ops {
	return &Ops{m: m, cfg: cfg, jobs: make(chan syncJob, 64), running: map[string]bool{}, progress: map[string]mirror.Progress{},
		sched: sched, log: slog.Default()}
}

// Run executes syncs, queued by the API and by each source's schedule,
// until ctx ends. Sources sync in parallel, each at most once at a time.
func (o *Ops) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	o.reschedule()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-o.jobs:
			wg.Add(1)
			go func() {
				defer wg.Done()
				out := o.runSync(ctx, j.name)
				if j.done != nil {
					j.done <- out
				}
			}()
		}
	}
}

// runSync syncs one source, recording progress for the status page, then
// compacts what it stored.
func (o *Ops) runSync(ctx context.Context, name string) SyncOutcome {
	if paused := o.cfg.Space.Pause(); paused != nil {
		o.mu.Lock()
		delete(o.running, name)
		o.mu.Unlock()
		// Recorded as the source's last sync, for mirror list and the
		// status page.
		res, err := o.m.Refuse(name, paused)
		if err != nil {
			o.log.Error("sync", "source", name, "err", err)
			res = &mirror.Result{Source: name, Err: paused}
		}
		o.log.Warn("sync", "source", name, "err", res.Err)
		return SyncOutcome{res: res}
	}
	res, err := o.m.Sync(ctx, name, func(p mirror.Progress) {
		o.mu.Lock()
		o.progress[name] = p
		o.mu.Unlock()
	})
	o.mu.Lock()
	delete(o.running, name)
	delete(o.progress, name)
	o.mu.Unlock()
	if err == nil && ctx.Err() == nil && res.New > 0 {
		if _, cerr := o.m.Compact(ctx); cerr != nil && res.Err == nil {
			res.Err = cerr
		}
	}
	return SyncOutcome{res: res, err: err}
}

// Enqueue queues a sync of a source unless it is syncing or queued
// already, and reports whether it did; done, if not nil, receives the
// outcome.
func (o *Ops) Enqueue(name string, done chan SyncOutcome) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running[name] {
		return false
	}
	select {
	case o.jobs <- syncJob{name: name, done: done}:
		o.running[name] = true
		return true
	default:
		return false
	}
}

// syncJobPrefix and a source's name name its job in the scheduler.
const syncJobPrefix = "sync "

// reschedule makes the scheduler's sync jobs follow the sources'
// schedules.
func (o *Ops) reschedule() {
	if o.sched == nil {
		return
	}
	o.reschedMu.Lock()
	defer o.reschedMu.Unlock()
	srcs, err := o.m.Sources()
	if err != nil {
		o.log.Error("schedule", "err", err)
		return
	}
	want := map[string]string{}
	for _, s := range srcs {
		want[s.Name] = s.Schedule
	}
	for job := range o.sched.Jobs() {
		if name, ok := strings.CutPrefix(job, syncJobPrefix); ok && want[name] == "" {
			o.sched.Remove(job)
		}
	}
	for name, spec := range want {
		if err := o.sched.Set(syncJobPrefix+name, spec, func(context.Context) { o.Enqueue(name, nil) }); err != nil {
			o.log.Error("schedule", "source", name, "spec", spec, "err", err)
		}
	}
}

// NextSync returns when each source syncs next on its schedule.
func (o *Ops) NextSync() map[string]time.Time {
	out := map[string]time.Time{}
	if o.sched == nil {
		return out
	}
	for job, next := range o.sched.Jobs() {
		if name, ok := strings.CutPrefix(job, syncJobPrefix); ok {
			out[name] = next
		}
	}
	return out
}

// DiskFree reports the data directory's free bytes and whether they are
// below the space policy's minimum (never low without a policy).
func (o *Ops) DiskFree() (int64, bool) {
	free, low, err := o.cfg.Space.Low()
	if err != nil {
		o.log.Error("disk", "err", err)
		return 0, false
	}
	return free, low
}

// OldestSyncStart returns when the oldest running sync started, or now:
// what a collection must not remove is newer than that.
func (o *Ops) OldestSyncStart() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := time.Now()
	for _, p := range o.progress {
		if !p.Started.IsZero() && p.Started.Before(t) {
			t = p.Started
		}
	}
	if len(o.running) > len(o.progress) {
		// Queued or just starting: no progress yet, but maybe blobs soon.
		t = t.Add(-time.Minute)
	}
	return t.Add(-time.Second)
}

// Admin is the middleware that requires the admin token, for routes
// other components add.
func (o *Ops) Admin() gin.HandlerFunc { return o.admin }

// Progress returns the running syncs' progress, by source.
func (o *Ops) Progress() map[string]mirror.Progress {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]mirror.Progress, len(o.progress))
	for k, v := range o.progress {
		out[k] = v
	}
	return out
}

// Register adds the routes.
func (o *Ops) Register(r gin.IRouter) {
	r.GET("/api/v1/mirrors", o.list)
	r.POST("/api/v1/mirrors", o.admin, o.add)
	r.DELETE("/api/v1/mirrors/:name", o.admin, o.remove)
	r.POST("/api/v1/mirrors/:name/sync", o.admin, o.sync)
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
}

func apiError(c *gin.Context, code int, msg string) {
	c.AbortWithStatusJSON(code, gin.H{"error": msg})
}

func (o *Ops) admin(c *gin.Context) {
	if o.cfg.AdminToken == "" {
		return
	}
	got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(o.cfg.AdminToken)) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="retraced"`)
		apiError(c, http.StatusUnauthorized, "an admin token is required: Authorization: Bearer TOKEN")
	}
}

func (o *Ops) list(c *gin.Context) {
	srcs, err := o.m.Sources()
	if err != nil {
		apiError(c, http.StatusInternalServerError, err.Error())
		return
	}
	views := make([]SourceView, 0, len(srcs))
	for _, s := range srcs {
		views = append(views, ViewSource(s))
	}
	c.JSON(http.StatusOK, views)
}

type addRequest struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Metalink or Mirrorlist instead of URL: where a yum repository's
	// mirrors are listed.
	Metalink   string `json:"metalink"`
	Mirrorlist string `json:"mirrorlist"`
	Kind       string `json:"kind"`
	Schedule   string `json:"schedule"`
	Include    string `json:"include"`
	Exclude    string `json:"exclude"`
	// GPGKeys are armored OpenPGP public keys; GPGCheck defaults to
	// whether there are any.
	GPGKeys      []string `json:"gpg_keys"`
	GPGCheck     *bool    `json:"gpgcheck"`
	RepoGPGCheck bool     `json:"repo_gpgcheck"`
}

// Sources added over the API, by what they may name (Config.APISources).
const (
	// SourcesPublic: http(s) URLs whose hosts resolve only to public
	// addresses, and whose syncs connect only to such (the default).
	SourcesPublic = "public"
	// SourcesPrivate: any http(s) URL, loopback and private addresses
	// included.
	SourcesPrivate = "private"
	// SourcesLocal: also local paths and file:// URLs.
	SourcesLocal = "local"
)

func (o *Ops) add(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	var req addRequest
	if err := c.ShouldBindJSON(&req); err != nil {
		apiError(c, http.StatusBadRequest, "want {\"name\", \"url\", ...}: "+err.Error())
		return
	}
	src := mirror.Source{Name: req.Name, URL: req.URL, Metalink: req.Metalink, Mirrorlist: req.Mirrorlist, Kind: req.Kind,
		Schedule: req.Schedule, Include: req.Include, Exclude: req.Exclude,
		GPGKeys: req.GPGKeys, GPGCheck: len(req.GPGKeys) > 0, RepoGPGCheck: req.RepoGPGCheck}
	if req.GPGCheck != nil {
		src.GPGCheck = *req.GPGCheck
	}
	switch o.cfg.APISources {
	case SourcesLocal:
	case SourcesPrivate:
		if u := strings.TrimSpace(req.URL); u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			apiError(c, http.StatusBadRequest, "a source added over the API must be an http(s) URL (the server's config allows no local paths: api_sources = \"local\")")
			return
		}
	default:
		src.PublicOnly = true // Add refuses local paths and private hosts
	}
	s, err := o.m.Add(c.Request.Context(), src)
	switch {
	case errors.Is(err, mirror.ErrPrivateAddress):
		apiError(c, http.StatusBadRequest, err.Error()+" (sources added over the API must be public; the server's api_sources setting allows more)")
	case errors.Is(err, mirror.ErrExists):
		apiError(c, http.StatusConflict, err.Error())
	case errors.Is(err, mirror.ErrBadSource):
		apiError(c, http.StatusBadRequest, err.Error())
	case err != nil:
		apiError(c, http.StatusBadGateway, err.Error()) // kind detection could not reach the URL
	default:
		o.reschedule()
		c.JSON(http.StatusCreated, ViewSource(s))
	}
}

func (o *Ops) remove(c *gin.Context) {
	err := o.m.Remove(c.Param("name"))
	switch {
	case errors.Is(err, index.ErrNotFound):
		apiError(c, http.StatusNotFound, err.Error())
	case errors.Is(err, mirror.ErrSyncing):
		apiError(c, http.StatusConflict, err.Error())
	case err != nil:
		apiError(c, http.StatusInternalServerError, err.Error())
	default:
		o.reschedule()
		c.Status(http.StatusNoContent)
	}
}

// syncResponse is the outcome of a sync the caller waited for.
type syncResponse struct {
	Source  string   `json:"source"`
	OK      bool     `json:"ok"`
	Summary string   `json:"summary"`
	Failed  []string `json:"failed"`
	// Mirror and MirrorsFailed: for a metalink or mirror list source, the
	// mirror whose metadata the sync used, and those it gave up on.
	Mirror        string                 `json:"mirror"`
	MirrorsFailed []mirror.MirrorFailure `json:"mirrors_failed"`
}

// sync starts a sync: 202 at once, or with ?wait=true 200 and the result
// when it is done; 409 when the source is already syncing.
func (o *Ops) sync(c *gin.Context) {
	name := c.Param("name")
	srcs, err := o.m.Sources()
	if err != nil {
		apiError(c, http.StatusInternalServerError, err.Error())
		return
	}
	found := false
	for _, s := range srcs {
		found = found || s.Name == name
	}
	if !found {
		apiError(c, http.StatusNotFound, "source "+name+" not found")
		return
	}
	if node, err := o.m.SyncingElsewhere(c.Request.Context(), name); err == nil && node != "" {
		apiError(c, http.StatusConflict, "source "+name+" is already syncing on "+node+" (another node)")
		return
	}
	wait := c.Query("wait") == "true" || c.Query("wait") == "1"
	var done chan SyncOutcome
	if wait {
		done = make(chan SyncOutcome, 1)
	}
	if !o.Enqueue(name, done) {
		apiError(c, http.StatusConflict, "source "+name+" is already syncing or queued")
		return
	}
	if !wait {
		c.JSON(http.StatusAccepted, gin.H{"source": name, "status": "started"})
		return
	}
	select {
	case out := <-done:
		if errors.Is(out.err, mirror.ErrSyncing) {
			apiError(c, http.StatusConflict, out.err.Error())
			return
		}
		if out.err != nil {
			apiError(c, http.StatusInternalServerError, out.err.Error())
			return
		}
		resp := syncResponse{Source: name, OK: out.res.OK(), Summary: out.res.Summary(), Failed: []string{},
			Mirror: out.res.Mirror, MirrorsFailed: out.res.MirrorsFailed}
		if resp.MirrorsFailed == nil {
			resp.MirrorsFailed = []mirror.MirrorFailure{}
		}
		for _, f := range out.res.Failed {
			resp.Failed = append(resp.Failed, f.Error())
		}
		c.JSON(http.StatusOK, resp)
	case <-c.Request.Context().Done():
	}
}
