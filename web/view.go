package web

import (
	"time"

	"github.com/retraced/retraced/mirror"
)

// SourceView is a source as `mirror list --json` and GET /api/v1/mirrors
// show it.
type SourceView struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	URL  string `json:"url"`
	// Metalink and Mirrorlist: where a yum source's mirrors are listed
	// ("" when it has one URL); Mirror is the mirror its last sync took
	// the metadata from, MirrorsFailed those it gave up on, and why.
	Metalink      string                 `json:"metalink"`
	Mirrorlist    string                 `json:"mirrorlist"`
	Mirror        string                 `json:"mirror"`
	MirrorsFailed []mirror.MirrorFailure `json:"mirrors_failed"`
	Schedule      string                 `json:"schedule"`
	Packages      int                    `json:"packages"`
	Versions      int                    `json:"versions"`
	BytesFetched  int64                  `json:"bytes_fetched"`
	BytesStored   int64                  `json:"bytes_stored"`
	// BytesDelta is the part of BytesStored held as deltas on older
	// versions; the rest is whole blobs.
	BytesDelta int64      `json:"bytes_delta"`
	LastSync   *time.Time `json:"last_sync"`
	LastResult string     `json:"last_result"`
	Errors     []string   `json:"errors"`
	// GPGCheck: packages must be signed by one of the source's keys;
	// RepoGPGCheck: repomd.xml by its repomd.xml.asc.
	GPGCheck     bool     `json:"gpgcheck"`
	RepoGPGCheck bool     `json:"repo_gpgcheck"`
	GPGKeys      []string `json:"gpg_keys"` // key ids, as rpm prints them
	// Failed lists the packages the last sync refused, with why.
	Failed []mirror.FailedPackage `json:"failed"`
	// History is the source's last syncs, oldest first (at most
	// mirror.MaxHistory), kept across restarts.
	History []mirror.SyncRecord `json:"history"`
}

// ViewSource returns s as the API shows it.
func ViewSource(s *mirror.Source) SourceView {
	v := SourceView{
		Name: s.Name, Kind: s.Kind, URL: s.URL, Schedule: s.Schedule,
		Packages: s.State.Packages, Versions: s.State.Versions,
		BytesFetched: s.State.BytesFetched, BytesStored: s.State.BytesStored,
		BytesDelta: s.State.BytesDelta, LastResult: s.State.LastResult, Errors: s.State.Errors,
	}
	if !s.State.LastSync.IsZero() {
		t := s.State.LastSync
		v.LastSync = &t
	}
	if v.Errors == nil {
		v.Errors = []string{}
	}
	v.GPGCheck, v.RepoGPGCheck, v.Failed = s.GPGCheck, s.RepoGPGCheck, s.State.Failed
	v.Metalink, v.Mirrorlist, v.Mirror, v.MirrorsFailed = s.Metalink, s.Mirrorlist, s.State.Mirror, s.State.MirrorsFailed
	if v.MirrorsFailed == nil {
		v.MirrorsFailed = []mirror.MirrorFailure{}
	}
	if v.Failed == nil {
		v.Failed = []mirror.FailedPackage{}
	}
	v.History = s.State.History
	if v.History == nil {
		v.History = []mirror.SyncRecord{}
	}
	v.GPGKeys = []string{}
	if k, err := s.Keyring(); err == nil {
		v.GPGKeys = append(v.GPGKeys, k.KeyIDs()...)
	}
	return v
}
