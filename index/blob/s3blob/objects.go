package s3blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/minio/minio-go/v7"
)

// Objects other than blobs (retrace tasks' files, see retrace/taskdb)
// live in the same bucket under the same prefix, named by the caller:
// PREFIX + name. Their names must not start with "sha256/".

// PutObject stores size bytes read from r as name, replacing what was
// there; the object appears only once complete.
func (s *Store) PutObject(ctx context.Context, name string, r io.Reader, size int64) error {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 64 << 20, DisableContentSha256: true}
	if _, err := s.c.PutObject(ctx, s.cfg.Bucket, s.cfg.Prefix+name, r, size, opts); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

// GetObject returns a reader of object name and its size, or an error
// wrapping ErrNotExist.
func (s *Store) GetObject(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	obj, err := s.c.GetObject(ctx, s.cfg.Bucket, s.cfg.Prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, s.objErr("get", name, err)
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, s.objErr("get", name, err)
	}
	return obj, st.Size, nil
}

// RemoveObjects deletes every object whose name starts with prefix;
// none is not an error.
func (s *Store) RemoveObjects(ctx context.Context, prefix string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objs := s.c.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + prefix, Recursive: true})
	for o := range objs {
		if o.Err != nil {
			return fmt.Errorf("list %s: %w", prefix, o.Err)
		}
		if err := s.c.RemoveObject(ctx, s.cfg.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			if r := (minio.ErrorResponse{}); errors.As(err, &r) && r.StatusCode == http.StatusNotFound {
				continue
			}
			return fmt.Errorf("remove %s: %w", o.Key, err)
		}
	}
	return nil
}

func (s *Store) objErr(op, name string, err error) error {
	var r minio.ErrorResponse
	if errors.As(err, &r) && (r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey") {
		return fmt.Errorf("%s %s: %w", op, name, ErrNotExist)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}
