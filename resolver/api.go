package resolver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/internal/httpbound"
	"github.com/retraced/retraced/resolver/corefile"
)

// MaxBatch bounds the ids of one POST /api/v1/buildids.
const MaxBatch = 10_000

// maxBatchBody bounds its body: 10,000 ids of 128 hex digits and quoting.
const maxBatchBody = MaxBatch * 140

// Index is what the resolver needs of the index.
type Index interface {
	// Lookup returns every file carrying id, newest package first, or an
	// error wrapping index.ErrNotFound.
	Lookup(id index.BuildID) ([]index.Match, error)
	// SourcesOf returns the sources that list package n; the caller
	// must not modify the slice.
	SourcesOf(n index.NEVRA) ([]string, error)
	// Generation changes whenever the index does.
	Generation() uint64
}

var _ Index = (*index.Store)(nil)

// API serves the JSON lookups and coredump2packages.
type API struct {
	idx Index
	pkg Packager
	cfg Config

	// bodies caches encoded answers of GET /api/v1/buildid/:id, keyed by
	// index generation too: a lookup service answers the same ids (libc's,
	// the distribution's common libraries) over and over. Answers of an
	// older generation are never asked for again and age out.
	bodies *cache[bodyKey, []byte]
	// OnLookup, if set, is told whether each lookup found the id.
	OnLookup func(hit bool)
	// spools holds a token per upload being spooled.
	spools chan struct{}
}

// Config tunes the API.
type Config struct {
	// SpoolDir receives uploaded cores while they are read (default: the
	// system temp directory).
	SpoolDir string
	// MaxCoreSize bounds an uploaded core, compressed or not (default 4 GiB).
	MaxCoreSize int64
	// MaxSpools bounds the uploads spooled at once (default 4); one more
	// is answered 503 with Retry-After, before its body is read.
	MaxSpools int
	// Space is the free-space policy a spooled core is written under
	// (nil: none): below it the upload is 507.
	Space *diskspace.Policy
}

// Store is the index as the API uses it.
type Store interface {
	Index
	Packager
}

// NewAPI returns the API over idx.
func NewAPI(idx Store, cfg Config) *API {
	if cfg.MaxCoreSize <= 0 {
		cfg.MaxCoreSize = 4 << 30
	}
	if cfg.MaxSpools <= 0 {
		cfg.MaxSpools = 4
	}
	return &API{idx: idx, pkg: idx, cfg: cfg, bodies: newCache[bodyKey, []byte](bodyBudget, 16), spools: make(chan struct{}, cfg.MaxSpools)}
}

// bodyBudget bounds the cached answers' bytes.
const bodyBudget = 32 << 20

type bodyKey struct {
	gen uint64
	id  index.BuildID
}

func (a *API) resolve(id index.BuildID) ([]MatchView, error) {
	ms, err := Resolve(a.idx, id)
	if a.OnLookup != nil && (err == nil || errors.Is(err, index.ErrNotFound)) {
		a.OnLookup(err == nil)
	}
	return ms, err
}

// Register adds the routes to r.
func (a *API) Register(r gin.IRouter) {
	r.GET("/api/v1/buildid/:id", a.buildID)
	r.POST("/api/v1/buildids", a.buildIDs)
	r.POST("/api/v1/coredump2packages", a.coredump2packages)
}

// coredump2packages spools the uploaded core to disk (bounded, streamed),
// reads it and resolves its objects.
func (a *API) coredump2packages(c *gin.Context) {
	if c.Request.ContentLength > a.cfg.MaxCoreSize {
		refuse(c, http.StatusRequestEntityTooLarge, "core larger than the limit")
		return
	}
	select {
	case a.spools <- struct{}{}:
		defer func() { <-a.spools }()
	default:
		c.Header("Retry-After", "10")
		refuse(c, http.StatusServiceUnavailable, fmt.Sprintf("%d cores are being uploaded already; try again shortly", a.cfg.MaxSpools))
		return
	}
	path, err := SpoolCore(c.Request.Body, a.cfg.SpoolDir, a.cfg.MaxCoreSize, a.cfg.Space)
	switch {
	case errors.Is(err, diskspace.ErrLow):
		refuse(c, http.StatusInsufficientStorage, "not enough storage space on the server: "+err.Error())
		return
	case errors.Is(err, ErrTooLarge):
		refuse(c, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, ErrBadUpload):
		refuse(c, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		apiError(c, http.StatusInternalServerError, err.Error())
		return
	}
	defer os.Remove(path)
	rep, err := CoreFileToPackages(a.pkg, path)
	var fe *corefile.FormatError
	switch {
	case errors.Is(err, corefile.ErrNotCore) || errors.As(err, &fe):
		apiError(c, http.StatusBadRequest, err.Error())
	case err != nil:
		apiError(c, http.StatusInternalServerError, err.Error())
	default:
		c.JSON(http.StatusOK, rep)
	}
}

func apiError(c *gin.Context, code int, msg string) {
	c.AbortWithStatusJSON(code, gin.H{"error": msg})
}

// refuse answers an upload refused before all its body was read: the
// answer, whole (with its length) and flushed, then the connection
// closed once the client has had the time to read it instead of a reset
// (httpbound.Refusal).
func refuse(c *gin.Context, code int, msg string) {
	after := httpbound.Refusal(c.Writer, c.Request.Body)
	b, _ := json.Marshal(gin.H{"error": msg})
	c.Header("Connection", "close")
	c.Header("Content-Length", strconv.Itoa(len(b)))
	c.Data(code, "application/json; charset=utf-8", b)
	c.Abort()
	after()
}

type buildIDResponse struct {
	BuildID string      `json:"build_id"`
	Matches []MatchView `json:"matches"`
}

func (a *API) buildID(c *gin.Context) {
	id, err := index.ParseBuildID(strings.ToLower(c.Param("id")))
	if err != nil {
		apiError(c, http.StatusBadRequest, err.Error())
		return
	}
	key := bodyKey{a.idx.Generation(), id}
	if body, ok := a.bodies.get(key); ok {
		if a.OnLookup != nil {
			a.OnLookup(true)
		}
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
		return
	}
	ms, err := a.resolve(id)
	if errors.Is(err, index.ErrNotFound) {
		apiError(c, http.StatusNotFound, "build-id "+id.String()+" not found")
		return
	}
	if err != nil {
		apiError(c, http.StatusInternalServerError, err.Error())
		return
	}
	body, err := json.Marshal(buildIDResponse{BuildID: id.String(), Matches: ms})
	if err != nil {
		apiError(c, http.StatusInternalServerError, err.Error())
		return
	}
	a.bodies.put(key, body, int64(len(body))+64)
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
}

type batchRequest struct {
	BuildIDs []string `json:"build_ids"`
}

type batchResponse struct {
	Results    map[string][]MatchView `json:"results"`
	Unresolved []string               `json:"unresolved"`
}

// decodeBatch reads one JSON object with a build_ids array and nothing
// after it: "null", a missing or null build_ids, and trailing data are
// errors, not an empty batch.
func decodeBatch(r io.Reader) (*batchRequest, error) {
	b, err := io.ReadAll(r) // bounded by the caller's MaxBytesReader
	if err != nil {
		return nil, err
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' {
		return nil, errors.New("the body is not a JSON object")
	}
	var req struct {
		BuildIDs *[]string `json:"build_ids"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&req); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	if req.BuildIDs == nil {
		return nil, errors.New("no build_ids array")
	}
	return &batchRequest{BuildIDs: *req.BuildIDs}, nil
}

func (a *API) buildIDs(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBatchBody)
	req, err := decodeBatch(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(c, http.StatusRequestEntityTooLarge, "body larger than the batch limit")
			return
		}
		apiError(c, http.StatusBadRequest, "want {\"build_ids\": [...]}: "+err.Error())
		return
	}
	if len(req.BuildIDs) > MaxBatch {
		apiError(c, http.StatusRequestEntityTooLarge, "more than 10000 build-ids")
		return
	}
	resp := batchResponse{Results: map[string][]MatchView{}, Unresolved: []string{}}
	for _, s := range req.BuildIDs {
		id, err := index.ParseBuildID(strings.ToLower(s))
		if err != nil {
			apiError(c, http.StatusBadRequest, err.Error())
			return
		}
		ms, err := a.resolve(id)
		switch {
		case errors.Is(err, index.ErrNotFound):
			resp.Unresolved = append(resp.Unresolved, id.String())
		case err != nil:
			apiError(c, http.StatusInternalServerError, err.Error())
			return
		default:
			resp.Results[id.String()] = ms
		}
	}
	c.JSON(http.StatusOK, resp)
}
