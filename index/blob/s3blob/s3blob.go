// Package s3blob keeps blobs in an S3-compatible object store (MinIO,
// Ceph RGW, SeaweedFS, AWS S3, versitygw, GCS in interoperability mode),
// keyed as the local pool lays them out: PREFIX/sha256/XX/<64 hex>, the
// same compressed bytes (a zstd frame or an S2 stream, see
// index/blob/README.md). A PUT is atomic in S3: an object that exists is
// complete, as a renamed file is in the local pool.
//
// The client is github.com/minio/minio-go/v7: a kept, S3-only client
// whose one module speaks every S3-compatible store with signature v4 and
// retries 5xx answers and network errors with backoff itself.
//
// Vocabulary as in index/blob: a blob is the content of one kept file,
// named by the SHA-256 of its uncompressed bytes (blob.Digest). Of
// retraced, it may import only index/blob: for that name.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/retraced/retraced/index/blob"
)

// ErrNotExist reports a blob the store does not hold; it matches
// fs.ErrNotExist, as blob.Remote asks.
var ErrNotExist = fmt.Errorf("blob not in the object store: %w", fs.ErrNotExist)

// ErrExist is what a Put of a fresh blob returns when the store has it
// already; it matches fs.ErrExist.
var ErrExist = fmt.Errorf("blob already in the object store: %w", fs.ErrExist)

var _ blob.Remote = (*Store)(nil)

// Config says where the blobs live and how to reach them.
type Config struct {
	// Bucket and Prefix: keys are Prefix + "sha256/XX/<hex>"; Prefix is
	// empty or ends in "/".
	Bucket, Prefix string
	// Endpoint is the store's URL (http://127.0.0.1:7070,
	// https://s3.example.org); empty means AWS S3.
	Endpoint string
	Region   string
	// AccessKey and SecretKey; empty takes the AWS_* environment.
	AccessKey, SecretKey string
	// MaxRetries bounds the tries of one request that fails with a 5xx
	// or a network error (with backoff between them); default 5.
	MaxRetries int
	// Transport, when set, carries the requests (tests put faults in it).
	Transport http.RoundTripper
}

// ParseURL reads "s3://BUCKET/PREFIX" (as [storage] blobs is written)
// into a Config, the rest from the environment as every S3 tool reads it:
// AWS_ENDPOINT_URL, AWS_REGION (or AWS_DEFAULT_REGION),
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Config{}, fmt.Errorf("blobs = %q: want s3://BUCKET/PREFIX", raw)
	}
	c := Config{
		Bucket:    u.Host,
		Prefix:    strings.Trim(u.Path, "/"),
		Endpoint:  os.Getenv("AWS_ENDPOINT_URL"),
		Region:    os.Getenv("AWS_REGION"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
	}
	if c.Prefix != "" {
		c.Prefix += "/"
	}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	return c, nil
}

// Store is a bucket of blobs.
type Store struct {
	c   *minio.Client
	cfg Config
	// unconditional: the store refused a conditional PUT as not
	// implemented, so a fresh blob is a HEAD, then a plain PUT.
	unconditional atomic.Bool
}

// Open connects to the store (no request is made).
func Open(cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 5
	}
	host, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3blob: endpoint %q: want http(s)://HOST[:PORT]", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	creds := credentials.NewEnvAWS()
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	}
	c, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: cfg.Region,
		Transport: cfg.Transport, MaxRetries: cfg.MaxRetries, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, fmt.Errorf("s3blob: %w", err)
	}
	return &Store{c: c, cfg: cfg}, nil
}

// Key is where blob d lives in the bucket.
func (s *Store) Key(d blob.Digest) string {
	h := d.String()
	return s.cfg.Prefix + "sha256/" + h[:2] + "/" + h
}

// compactedKey is the user metadata that marks a blob compacted
// (x-amz-meta-retraced-compacted: 1), as the local pool marks it with
// mode 0444.
const compactedKey = "Retraced-Compacted"

// Put stores the compressed blob d, size bytes read from r, in one PUT
// (a multipart upload beyond 64 MiB; either way the object appears only
// once complete). compacted marks it final and replaces what was there;
// a fresh blob is a conditional PUT (If-None-Match: *, as S3 and the S3
// servers that follow it answer), which leaves an object already there
// and returns an error matching ErrExist. The caller vouches for d.
//
// A store that answers the condition with 501 Not Implemented (as S3
// servers without conditional writes do) gets a HEAD before a plain PUT
// from then on, and the refused blob is sent again from the start of r
// (when r is an io.Seeker, as the pool's section readers are).
func (s *Store) Put(ctx context.Context, d blob.Digest, r io.Reader, size int64, compacted bool) error {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 64 << 20, DisableContentSha256: true}
	conditional := false
	if compacted {
		opts.UserMetadata = map[string]string{compactedKey: "1"}
	} else if s.unconditional.Load() {
		if ok, err := s.Has(ctx, d); err != nil || ok {
			if ok {
				err = ErrExist
			}
			return fmt.Errorf("put blob %s: %w", d, err)
		}
	} else {
		opts.SetMatchETagExcept("*")
		conditional = true
	}
	_, err := s.c.PutObject(ctx, s.cfg.Bucket, s.Key(d), r, size, opts)
	var e minio.ErrorResponse
	switch {
	case err == nil:
		return nil
	case compacted || !errors.As(err, &e):
	case e.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("put blob %s: %w", d, ErrExist)
	case e.StatusCode == http.StatusNotImplemented && conditional:
		s.unconditional.Store(true)
		if sk, ok := r.(io.Seeker); ok {
			if _, serr := sk.Seek(0, io.SeekStart); serr == nil {
				return s.Put(ctx, d, r, size, compacted)
			}
		}
	}
	return fmt.Errorf("put blob %s: %w", d, err)
}

// Open returns a reader of the compressed blob d, or an error wrapping
// ErrNotExist. It is one GET: the object's size and a missing key come
// with its answer (minio.Object's Stat before a read would be a HEAD
// first, two requests for every blob read).
func (s *Store) Open(ctx context.Context, d blob.Digest) (io.ReadCloser, int64, error) {
	body, info, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.cfg.Bucket, s.Key(d), minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, s.err("get", d, err)
	}
	return body, info.Size, nil
}

// Stat returns blob d's stored (compressed) size and whether it is
// compacted, or an error wrapping ErrNotExist.
func (s *Store) Stat(ctx context.Context, d blob.Digest) (blob.RemoteStat, error) {
	st, err := s.c.StatObject(ctx, s.cfg.Bucket, s.Key(d), minio.StatObjectOptions{})
	if err != nil {
		return blob.RemoteStat{}, s.err("stat", d, err)
	}
	return blob.RemoteStat{Size: st.Size, Compacted: st.UserMetadata[compactedKey] == "1"}, nil
}

// Has reports whether blob d is stored.
func (s *Store) Has(ctx context.Context, d blob.Digest) (bool, error) {
	_, err := s.Stat(ctx, d)
	if errors.Is(err, ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Remove deletes blob d; removing a missing blob is not an error.
func (s *Store) Remove(ctx context.Context, d blob.Digest) error {
	if err := s.c.RemoveObject(ctx, s.cfg.Bucket, s.Key(d), minio.RemoveObjectOptions{}); err != nil {
		return s.err("remove", d, err)
	}
	return nil
}

// Walk calls fn with every blob in the store, its digest and stored size,
// in key order. Keys under the prefix that are not blob names are
// skipped.
func (s *Store) Walk(ctx context.Context, fn func(d blob.Digest, size int64, modified time.Time) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for o := range s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + "sha256/", Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("list blobs: %w", o.Err)
		}
		name := o.Key[strings.LastIndexByte(o.Key, '/')+1:]
		d, err := blob.ParseDigest(name)
		if err != nil || s.Key(d) != o.Key {
			continue
		}
		if err := fn(d, o.Size, o.LastModified); err != nil {
			return err
		}
	}
	return nil
}

// EnsureBucket creates the bucket when it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", s.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	if err := s.c.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region}); err != nil {
		return fmt.Errorf("make bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// err names an S3 error, making a missing key ErrNotExist.
func (s *Store) err(op string, d blob.Digest, err error) error {
	var r minio.ErrorResponse
	if errors.As(err, &r) && (r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey") {
		return fmt.Errorf("%s blob %s: %w", op, d, ErrNotExist)
	}
	return fmt.Errorf("%s blob %s: %w", op, d, err)
}
