package retrace

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Status is a task's status as the protocol reports it in X-Task-Status.
type Status string

// The statuses of the protocol.
const (
	StatusPending Status = "PENDING"
	StatusSuccess Status = "FINISHED_SUCCESS"
	StatusFailure Status = "FINISHED_FAILURE"

	// statusRunning is kept on disk while a worker has the task; the
	// protocol reports it as PENDING. A task found running at start-up
	// was cut off by a crash and runs again.
	statusRunning Status = "RUNNING"
)

// Finished reports whether s is a final status.
func (s Status) Finished() bool { return s == StatusSuccess || s == StatusFailure }

// ErrNotFound is returned for a task id that names no task.
var ErrNotFound = errors.New("no such task")

// ErrBadPassword is returned for a wrong or missing task password.
var ErrBadPassword = errors.New("invalid password")

// Names inside a task directory.
const (
	crashDirName  = "crash"
	passwordFile  = "password"
	keyFile       = "key" // hex SHA-256 of the client's X-Task-Key
	stateFile     = "task.json"
	logFile       = "log"
	backtraceFile = "backtrace"
)

// IDLength is the number of digits of a task id, as Retrace Server's
// TaskIdLength.
const IDLength = 9

// PasswordLength is the length of a task password, as Retrace Server's
// TaskPassLength.
const PasswordLength = 32

const passwordAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// ValidTaskKey reports whether key can name a task (X-Task-Key): exactly
// PasswordLength characters of [0-9A-Za-z], as a password is.
func ValidTaskKey(key string) bool {
	if len(key) != PasswordLength {
		return false
	}
	for i := range len(key) {
		if !strings.ContainsRune(passwordAlphabet, rune(key[i])) {
			return false
		}
	}
	return true
}

// validID reports whether id looks like a task id: digits, not too many.
func validID(id string) bool {
	if id == "" || len(id) > 18 {
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// NewTaskID draws a random task id ([IDLength] digits, not starting
// with 0), as a [SharedStore] names its tasks.
func NewTaskID() (string, error) { return newID() }

// newID draws a random IDLength-digit id that does not start with 0.
func newID() (string, error) {
	lo := new(big.Int).Exp(big.NewInt(10), big.NewInt(IDLength-1), nil)
	span := new(big.Int).Mul(lo, big.NewInt(9))
	n, err := rand.Int(rand.Reader, span)
	if err != nil {
		return "", err
	}
	return n.Add(n, lo).String(), nil
}

// newPassword draws PasswordLength characters of [0-9A-Za-z], uniformly:
// bytes at or above 248 (4*62) are redrawn.
func newPassword() (string, error) {
	out := make([]byte, 0, PasswordLength)
	buf := make([]byte, 64)
	for len(out) < PasswordLength {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 248 && len(out) < PasswordLength {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
			}
		}
	}
	return string(out), nil
}

// hashPassword returns the password file's content: a fresh salt and the
// SHA-256 of salt and password. The password is 190 random bits, so a
// fast hash is enough; the salt keeps equal passwords apart.
func hashPassword(pw string) ([]byte, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	sum := passwordSum(salt, pw)
	return []byte("sha256 " + hex.EncodeToString(salt) + " " + hex.EncodeToString(sum) + "\n"), nil
}

func passwordSum(salt []byte, pw string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(pw))
	return h.Sum(nil)
}

// checkPassword compares pw with a password file's content in constant
// time.
func checkPassword(stored []byte, pw string) bool {
	f := strings.Fields(string(stored))
	if len(f) != 3 || f[0] != "sha256" {
		return false
	}
	salt, err1 := hex.DecodeString(f[1])
	want, err2 := hex.DecodeString(f[2])
	if err1 != nil || err2 != nil {
		return false
	}
	return subtle.ConstantTimeCompare(passwordSum(salt, pw), want) == 1
}

// state is task.json.
type State struct {
	Status   Status    `json:"status"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Attempts counts the retraces started and not cleanly interrupted:
	// one cut off by a crash counts, one stopped by a shutdown does not.
	Attempts int `json:"attempts,omitempty"`
	// Error says why a failed task failed.
	Error string `json:"error,omitempty"`
	// Rating is the backtrace's rating in words (Rating.String).
	Rating string `json:"rating,omitempty"`
	// Missing is what the mirror lacked (Result.Missing).
	Missing []string `json:"missing,omitempty"`
	// Package and Signal are Result's: the crash package's NEVRA and
	// the signal.
	Package string `json:"package,omitempty"`
	Signal  int    `json:"signal,omitempty"`
	// Stats are Result's, for the duration estimate.
	Stats *RetraceStats `json:"stats,omitempty"`
	// Recorded says the Recorder has the task.
	Recorded bool `json:"recorded,omitempty"`
}

// A task is one task directory.
type task struct {
	id  string
	dir string
}

func (t task) path(name string) string { return filepath.Join(t.dir, name) }
func (t task) crashDir() string        { return t.path(crashDirName) }

func (t task) readState() (State, error) {
	var st State
	b, err := os.ReadFile(t.path(stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, ErrNotFound
	}
	if err != nil {
		return st, fmt.Errorf("read task %s: %w", t.id, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read task %s: %s: %w", t.id, stateFile, err)
	}
	return st, nil
}

func (t task) writeState(st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(t.path(stateFile), append(b, '\n'))
}

// verify checks pw against the task's password file.
func (t task) verify(pw string) error {
	stored, err := os.ReadFile(t.path(passwordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if pw == "" || !checkPassword(stored, pw) {
		return ErrBadPassword
	}
	return nil
}

// writeFileAtomic writes data to a temporary file in path's directory,
// syncs it and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o640)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
