package retrace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/retraced/retraced/gc/diskspace"
)

// startUpload lets an upload stream, or fails with ErrQueueFull when the
// queue is full already (no point reading the body) or MaxUploads are
// streaming. It returns the upload's end.
func (s *Server) startUpload() (done func(), err error) {
	shared := s.sharedQueued()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queuedLocked(shared) >= s.cfg.MaxQueuedTasks || s.uploads >= s.cfg.MaxUploads {
		return nil, ErrQueueFull
	}
	s.uploads++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.uploads--
			s.mu.Unlock()
		})
	}, nil
}

// admit takes a queue slot for an upload that has arrived, or fails with
// ErrQueueFull.
func (s *Server) admit() error {
	shared := s.sharedQueued()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queuedLocked(shared) >= s.cfg.MaxQueuedTasks {
		return ErrQueueFull
	}
	s.admitted++
	return nil
}

// keyed returns the task a client created with key, if it still exists.
func (s *Server) keyed(h string) (string, bool) {
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		id, err := s.shared.Keyed(ctx, h)
		if err != nil {
			s.log.Error("retrace: look the task key up", "err", err)
		}
		return id, id != ""
	}
	s.mu.Lock()
	id, ok := s.keys[h]
	s.mu.Unlock()
	if !ok {
		return "", false
	}
	if _, err := s.task(id).readState(); err != nil {
		s.mu.Lock()
		delete(s.keys, h)
		s.mu.Unlock()
		return "", false
	}
	return id, true
}

func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// create makes a task of the archive body in format, which the caller has
// checked. It returns the task's id and password. A client that names
// the task with a key (X-Task-Key, see [ValidTaskKey]) gets the key as the
// password, and the same task again, without its body being read, when
// it repeats a create it cannot tell arrived (it was killed, or the
// answer was lost): existing is then true.
func (s *Server) create(body io.Reader, format string, contentLength int64, key string) (id, password string, existing bool, err error) {
	var kh string
	if key != "" {
		kh = keyHash(key)
		if id, ok := s.keyed(kh); ok {
			return id, key, true, nil
		}
	}
	id, password, err = s.createNew(body, format, contentLength, key, kh)
	var dup *DuplicateError
	if errors.As(err, &dup) {
		return dup.ID, key, true, nil
	}
	return id, password, false, err
}

// DuplicateError is a keyed create that lost the race to another with
// the same key, which made task ID. A [SharedStore] returns it from
// Create.
type DuplicateError struct{ ID string }

func (e *DuplicateError) Error() string { return "task " + e.ID + " has this key" }

func (s *Server) createNew(body io.Reader, format string, contentLength int64, key, kh string) (id, password string, err error) {
	if err := s.checkSpace(contentLength); err != nil {
		return "", "", err
	}
	uploaded, err := s.startUpload()
	if err != nil {
		return "", "", err
	}
	defer uploaded()
	if s.shared != nil {
		return s.createShared(body, format, key, kh, uploaded)
	}

	t, err := s.newTaskDir()
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(t.dir); rerr != nil {
				s.log.Error("retrace: remove failed upload", "task", t.id, "err", rerr)
			}
		}
	}()
	if err := os.Mkdir(t.crashDir(), 0o750); err != nil {
		return "", "", diskErr(err)
	}
	lim := unpackLimits{packed: s.cfg.MaxPackedSize * bytesPerMiB, unpacked: s.cfg.MaxUnpackedSize * bytesPerMiB, files: s.cfg.MaxFiles, space: s.space}
	if _, err := unpack(body, format, t.crashDir(), lim); err != nil {
		return "", "", err
	}
	uploaded()
	if err := s.admit(); err != nil {
		return "", "", err
	}
	queued := ""
	defer func() { s.release(queued) }()
	if err := s.checkSpace(0); err != nil {
		return "", "", err
	}
	password = key
	if key == "" {
		if password, err = newPassword(); err != nil {
			return "", "", err
		}
	} else {
		s.mu.Lock()
		other, taken := s.keys[kh]
		if !taken {
			s.keys[kh] = t.id
		}
		s.mu.Unlock()
		if taken {
			return "", "", &DuplicateError{other}
		}
		defer func() {
			if err != nil {
				s.mu.Lock()
				delete(s.keys, kh)
				s.mu.Unlock()
			}
		}()
		if err := writeFileAtomic(t.path(keyFile), []byte(kh)); err != nil {
			return "", "", diskErr(err)
		}
	}
	hash, err := hashPassword(password)
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(t.path(passwordFile), hash); err != nil {
		return "", "", diskErr(err)
	}
	// task.json last: from here on the task exists.
	if err := t.writeState(State{Status: StatusPending, Created: s.cfg.Now()}); err != nil {
		return "", "", diskErr(err)
	}
	if err := syncDir(t.dir); err != nil {
		return "", "", err
	}
	if err := syncDir(s.dir); err != nil {
		return "", "", err
	}
	queued = t.id
	return t.id, password, nil
}

// createShared is createNew for a shared store: the upload is unpacked
// into a directory of the local spool, which the store copies from and
// which goes when the create returns.
func (s *Server) createShared(body io.Reader, format, key, kh string, uploaded func()) (id, password string, err error) {
	tmp, err := os.MkdirTemp(s.dir, uploadPrefix)
	if err != nil {
		return "", "", diskErr(err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil {
			s.log.Error("retrace: remove upload", "dir", tmp, "err", rerr)
		}
	}()
	crash := filepath.Join(tmp, crashDirName)
	if err := os.Mkdir(crash, 0o750); err != nil {
		return "", "", diskErr(err)
	}
	lim := unpackLimits{packed: s.cfg.MaxPackedSize * bytesPerMiB, unpacked: s.cfg.MaxUnpackedSize * bytesPerMiB, files: s.cfg.MaxFiles, space: s.space}
	if _, err := unpack(body, format, crash, lim); err != nil {
		return "", "", err
	}
	uploaded()
	if err := s.admit(); err != nil {
		return "", "", err
	}
	defer s.release("")
	password = key
	if key == "" {
		if password, err = newPassword(); err != nil {
			return "", "", err
		}
	}
	hash, err := hashPassword(password)
	if err != nil {
		return "", "", err
	}
	// The create streams the files to the store: bounded by the upload
	// timeout, as the upload was.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.UploadTimeout)
	defer cancel()
	id, err = s.shared.Create(ctx, crash, hash, kh, s.cfg.Now())
	if err != nil {
		return "", "", err
	}
	s.signal()
	return id, password, nil
}

// newTaskDir creates the directory of a task with a fresh random id.
func (s *Server) newTaskDir() (task, error) {
	for range 50 {
		id, err := newID()
		if err != nil {
			return task{}, err
		}
		t := s.task(id)
		err = os.Mkdir(t.dir, 0o750)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return task{}, diskErr(err)
		}
		return t, nil
	}
	return task{}, errors.New("no free task id after 50 tries")
}

// checkSpace fails with ErrNoSpace when writing n more bytes would leave
// less free than the space policy wants.
func (s *Server) checkSpace(n int64) error {
	err := s.space.Check(n)
	if errors.Is(err, diskspace.ErrLow) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	if err != nil {
		return fmt.Errorf("free space of %s: %w", s.dir, err)
	}
	return nil
}
