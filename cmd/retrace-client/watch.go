package main

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/retraced/retraced/index/elfnote"
	"github.com/retraced/retraced/retrace/taskclient"
)

// kickFile, written into the spool by `retry`, makes a running watcher
// read the items again.
const kickFile = ".kick"

// maxIncomplete is how long a core whose ELF program headers say it is
// not complete may stay unchanged before it is taken anyway.
const maxIncomplete = 10 * time.Minute

// watcher moves the cores of a spool to backtraces; see spool.go for the
// layout. Everything runs in one goroutine, woken by fsnotify or by one
// timer set to the next thing due: an idle watcher sleeps.
type watcher struct {
	spool    string
	url      string // the default server
	insecure bool
	cfg      *watchConfig
	log      *log.Logger
	now      func() time.Time

	items   map[string]*item
	pending map[string]*pendingCore // cores in the spool not yet taken
	clients map[string]*taskclient.Client
	purgeAt time.Time
}

// pendingCore is a core file that may still be being written.
type pendingCore struct {
	deadline  time.Time // when to look at it next
	lastEvent time.Time
	size      int64     // at the last look; -1 before
	since     time.Time // when size last changed
}

func newWatcher(spool, url string, insecure bool, cfg *watchConfig, logw io.Writer) *watcher {
	return &watcher{
		spool: spool, url: url, insecure: insecure, cfg: cfg,
		log: log.New(logw, "retrace-client watch: ", 0), now: time.Now,
		items: map[string]*item{}, pending: map[string]*pendingCore{}, clients: map[string]*taskclient.Client{},
	}
}

// run watches until ctx is done.
func (w *watcher) run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(w.spool, itemsDir), 0o700); err != nil {
		return err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fsw.Close() // nothing buffered to lose
	// Watch first, then scan, so that no core falls between the two.
	if err := fsw.Add(w.spool); err != nil {
		return fmt.Errorf("watch %s: %w", w.spool, err)
	}
	w.rescan()
	entries, err := os.ReadDir(w.spool)
	if err != nil {
		return err
	}
	for _, e := range entries {
		w.event(e.Name())
	}
	w.purgeAt = w.now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return errors.New("fsnotify stopped")
			}
			name := filepath.Base(ev.Name)
			switch {
			case name == kickFile:
				w.rescan()
			case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
				delete(w.pending, name)
			default:
				w.event(name)
			}
		case err := <-fsw.Errors:
			// An overflow loses events, not cores: look at the directory.
			w.log.Printf("fsnotify: %v; rescanning %s", err, w.spool)
			if entries, err := os.ReadDir(w.spool); err == nil {
				for _, e := range entries {
					w.event(e.Name())
				}
			}
		case <-timer.C:
		}
		next := w.work(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// A submitted item is polled from firstPoll, doubling, up to
		// maxPoll, as batch polls.
		timer.Reset(max(next.Sub(w.now()), 0))
	}
}

// event notes activity on a spool entry that may be a core.
func (w *watcher) event(name string) {
	if strings.HasPrefix(name, ".") || name == itemsDir {
		return
	}
	p := w.pending[name]
	if p == nil {
		p = &pendingCore{size: -1, since: w.now()}
		w.pending[name] = p
	}
	p.lastEvent = w.now()
	p.deadline = p.lastEvent.Add(w.cfg.Settle.Duration)
}

// rescan reads the items from disk: those not known yet, and those a
// `retry` took out of failed.
func (w *watcher) rescan() {
	items, err := loadItems(w.spool)
	if err != nil {
		w.log.Print(err)
	}
	for _, it := range items {
		old := w.items[it.ID]
		if old != nil && !(terminal(old.State) && !terminal(it.State)) {
			continue
		}
		it.due = w.now()
		w.items[it.ID] = it
		if !terminal(it.State) {
			w.log.Printf("%s: %s, resuming", it.ID, it.State)
		}
	}
}

func terminal(s state) bool { return s == stateFinished || s == stateFailed }

// work does what is due and returns when it next has something to do.
func (w *watcher) work(ctx context.Context) time.Time {
	now := w.now()
	next := now.Add(24 * time.Hour)
	for name, p := range w.pending {
		if now.Before(p.deadline) {
			next = earliest(next, p.deadline)
			continue
		}
		take, again := w.settled(name, p)
		switch {
		case take:
			delete(w.pending, name)
			w.accept(name)
		case again.IsZero():
			delete(w.pending, name) // gone, or no file: a new event brings it back
		default:
			p.deadline = again
			next = earliest(next, again)
		}
	}
	// One step per due item, oldest due first, until nothing is due: a
	// failing item's due time moves back behind the others.
	for ctx.Err() == nil {
		it := w.nextDue()
		if it == nil || it.due.After(w.now()) {
			if it != nil {
				next = earliest(next, it.due)
			}
			break
		}
		w.step(ctx, it)
	}
	if !w.now().Before(w.purgeAt) {
		w.purge()
		w.purgeAt = w.now().Add(min(w.cfg.Purge.Age.Duration, time.Hour))
	}
	return earliest(next, w.purgeAt)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (w *watcher) nextDue() *item {
	var best *item
	for _, it := range w.items {
		if terminal(it.State) {
			continue
		}
		if best == nil || it.due.Before(best.due) || it.due.Equal(best.due) && it.Time.Before(best.Time) {
			best = it
		}
	}
	return best
}

// settled reports whether a core file is complete, else when to look at
// it again (zero: drop it until a new event). The kernel writes a core's
// ELF and program headers first and reaches the file's end last, so an
// ELF core as long as its program headers say is complete: it is taken
// once unwritten for settle (short, so that a crash reaches its backtrace
// soon). A file that is no ELF core (yet) is taken once unwritten for
// settle_other (longer: nothing says when it ends); an ELF core that stays
// short is waited for, and taken anyway after maxIncomplete unchanged.
func (w *watcher) settled(name string, p *pendingCore) (take bool, again time.Time) {
	path := filepath.Join(w.spool, name)
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false, time.Time{}
	}
	now := w.now()
	if fi.Size() != p.size {
		p.size, p.since = fi.Size(), now
	}
	other := w.cfg.SettleOther.Duration
	complete, known := elfComplete(path, fi.Size())
	switch {
	case known && complete:
		return true, time.Time{}
	case known:
		if now.Sub(p.since) >= maxIncomplete {
			return true, time.Time{}
		}
		return false, now.Add(other)
	case now.Sub(p.lastEvent) >= other && now.Sub(p.since) >= w.cfg.Settle.Duration:
		return true, time.Time{}
	default:
		// Looked at twice, settle apart, the same size.
		next := p.lastEvent.Add(other)
		if at := p.since.Add(w.cfg.Settle.Duration); at.After(next) {
			next = at
		}
		return false, next
	}
}

// elfComplete reports whether an ELF core of size bytes holds all its
// segments; known is false when the file is no readable ELF file.
func elfComplete(path string, size int64) (complete, known bool) {
	r, err := os.Open(path)
	if err != nil {
		return false, false
	}
	defer r.Close() // read-only
	// Anyone who may write to the core directory may put a file there:
	// the checked constructor, not debug/elf's own.
	f, err := elfnote.NewFile(r)
	if err != nil {
		return false, false
	}
	if f.Type != elf.ET_CORE {
		return false, false
	}
	var end uint64
	for _, p := range f.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	return uint64(size) >= end, true
}

// freePercent is the free share of the file system holding dir.
func freePercent(dir string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Blocks == 0 {
		return 100, nil
	}
	return float64(st.Bavail) * 100 / float64(st.Blocks), nil
}

// accept moves a complete core into a new item, or deletes it when the
// spool's file system is below the quota.
func (w *watcher) accept(name string) {
	path := filepath.Join(w.spool, name)
	if free, err := freePercent(w.spool); err == nil && free < w.cfg.Dump.Quota {
		w.log.Printf("%s: refused: %.1f%% free in %s, below dump.quota %v%%; core deleted", name, free, w.spool, w.cfg.Dump.Quota)
		if err := os.Remove(path); err != nil {
			w.log.Print(err)
		}
		return
	}
	id := name
	for n := 2; ; n++ {
		_, err1 := os.Stat(filepath.Join(itemDir(w.spool, id), stateFile))
		_, err2 := os.Stat(filepath.Join(itemDir(w.spool, id), "coredump"))
		if err1 != nil && err2 != nil {
			break // free, or left empty by a stop between mkdir and rename
		}
		id = name + "." + strconv.Itoa(n)
	}
	dir := itemDir(w.spool, id)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		err = os.Rename(path, filepath.Join(dir, "coredump"))
	}
	if err == nil {
		err = errors.Join(syncDir(w.spool), syncDir(dir))
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(filepath.Join(dir, "coredump"))
	}
	if err != nil {
		w.log.Printf("%s: take the core: %v", name, err)
		return
	}
	it := newItem(id, fi)
	if err := it.save(w.spool); err != nil {
		w.log.Print(err)
		return // loadItem finds it again from its coredump
	}
	w.log.Printf("%s: found (%d bytes)", id, it.Size)
	it.due = w.now()
	w.items[id] = it
}

// step moves an item one state on.
func (w *watcher) step(ctx context.Context, it *item) {
	var err error
	switch it.State {
	case stateFound:
		err = w.pack(it)
	case statePacked, stateSubmitting:
		err = w.submit(ctx, it)
	case stateSubmitted:
		err = w.poll(ctx, it)
	default:
		err = fmt.Errorf("unknown state %q", it.State)
		it.State, it.Reason = stateFailed, err.Error()
	}
	if err != nil {
		w.log.Printf("%s: %v", it.ID, err)
		// The state on disk is still the last good one; try again later.
		it.due = w.now().Add(w.cfg.Submit.Backoff.Duration)
	}
}

// pack writes the crash directory's ABRT files and crash.tar.xz.
func (w *watcher) pack(it *item) error {
	dir := itemDir(w.spool, it.ID)
	core := filepath.Join(dir, "coredump")
	exe, err := taskclient.CoreExecutable(core)
	if err != nil {
		w.log.Printf("%s: read the executable from the core: %v", it.ID, err)
	}
	if exe != "" {
		it.Executable = exe
	}
	files := map[string]string{"analyzer": "CCpp", "type": "CCpp", "time": strconv.FormatInt(it.Time.Unix(), 10)}
	if strings.HasPrefix(it.Executable, "/") {
		files["executable"] = it.Executable
	}
	if it.PID > 0 {
		files["pid"] = strconv.Itoa(it.PID)
	}
	for name, v := range files {
		if err := writeAtomic(filepath.Join(dir, name), []byte(v)); err != nil {
			return err
		}
	}
	cd, err := taskclient.OpenCrashDir(dir)
	if err != nil {
		return w.fail(it, err.Error())
	}
	if err := writeAtomicFrom(filepath.Join(dir, archive), cd.Pack); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	it.State = statePacked
	it.URL = w.cfg.serverFor(it.Executable, w.url)
	if err := it.save(w.spool); err != nil {
		return err
	}
	w.log.Printf("%s: packed (executable %q, server %s)", it.ID, it.Executable, it.URL)
	it.due = w.now()
	return nil
}

func (w *watcher) client(url string) (*taskclient.Client, error) {
	if c := w.clients[url]; c != nil {
		return c, nil
	}
	c, err := taskclient.New(url, w.insecure, nil)
	if err != nil {
		return nil, err
	}
	w.clients[url] = c
	return c, nil
}

// submit uploads crash.tar.xz. The state is submitting during the upload:
// an item found in it after a restart may have reached the server. It is
// sent again with the same X-Task-Key, saved before the first upload
// began, and a server that has the task answers with it: one task per
// core, whatever the upload a kill cut.
func (w *watcher) submit(ctx context.Context, it *item) error {
	if it.State == stateSubmitting {
		w.log.Printf("%s: the watcher stopped while submitting it; submitting again with its task key (a server that has it answers with the same task)", it.ID)
	}
	c, err := w.client(it.URL)
	if err != nil {
		return w.fail(it, err.Error())
	}
	f, err := os.Open(filepath.Join(itemDir(w.spool, it.ID), archive))
	if err != nil {
		// Lost (an old version's spool, a hand edit): pack again.
		it.State = stateFound
		return err
	}
	defer f.Close() // read-only
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if it.Key == "" {
		if it.Key, err = taskclient.NewKey(); err != nil {
			return err
		}
	}
	it.State = stateSubmitting
	if err := it.save(w.spool); err != nil { // the key is saved before the upload starts
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	id, password, err := c.CreateKeyed(cctx, f, "application/x-xz-compressed-tar", fi.Size(), it.Key)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopping: resumed as submitting
		}
		var se *taskclient.StatusError
		if errors.As(err, &se) && !se.Temporary() {
			return w.fail(it, "refused by "+it.URL+": "+err.Error())
		}
		return w.again(it, statePacked, err)
	}
	it.State, it.TaskID, it.Password, it.Attempts, it.Reason = stateSubmitted, id, password, 0, ""
	if err := it.save(w.spool); err != nil {
		return err
	}
	w.log.Printf("%s: submitted to %s as task %s", it.ID, it.URL, id)
	if err := os.Remove(f.Name()); err != nil {
		w.log.Print(err)
	}
	it.poll = firstPoll
	it.due = w.now().Add(it.poll)
	return nil
}

// again counts a failed attempt: the item waits, doubling its wait each
// time, behind the others; after submit.attempts it fails.
func (w *watcher) again(it *item, back state, cause error) error {
	it.Attempts++
	reason := strings.TrimSpace(cause.Error())
	if it.Attempts >= w.cfg.Submit.Attempts {
		return w.fail(it, fmt.Sprintf("gave up after %d attempts: %s", it.Attempts, reason))
	}
	wait := w.cfg.Submit.Backoff.Duration << min(it.Attempts-1, 30)
	if wait <= 0 || wait > w.cfg.Submit.MaxBackoff.Duration {
		wait = w.cfg.Submit.MaxBackoff.Duration
	}
	it.State, it.Reason = back, reason
	if err := it.save(w.spool); err != nil {
		return err
	}
	w.log.Printf("%s: attempt %d failed, next in %s: %s", it.ID, it.Attempts, wait, reason)
	it.due = w.now().Add(wait)
	return nil
}

// fail gives an item up, keeping its files.
func (w *watcher) fail(it *item, reason string) error {
	it.State, it.Reason, it.Finished = stateFailed, reason, w.now().UTC()
	if err := it.save(w.spool); err != nil {
		return err
	}
	w.log.Printf("%s: failed: %s", it.ID, reason)
	return nil
}

// poll asks for a submitted task's status and saves its results.
func (w *watcher) poll(ctx context.Context, it *item) error {
	c, err := w.client(it.URL)
	if err != nil {
		return w.fail(it, err.Error())
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	status, msg, err := c.Status(cctx, it.TaskID, it.Password)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		var se *taskclient.StatusError
		if errors.As(err, &se) && (se.Code == 404 || se.Code == 403) {
			// The server lost the task (expired, wiped): send it again.
			it.TaskID, it.Password = "", ""
			return w.again(it, stateFound, err)
		}
		return w.again(it, stateSubmitted, err)
	}
	if !strings.HasPrefix(status, "FINISHED") {
		if it.poll == 0 {
			it.poll = firstPoll
		}
		it.due = w.now().Add(it.poll)
		it.poll = min(2*it.poll, maxPoll)
		return nil
	}
	dir := itemDir(w.spool, it.ID)
	logText, err := c.Result(cctx, it.TaskID, it.Password, "log")
	if err != nil {
		return w.again(it, stateSubmitted, err)
	}
	if err := writeAtomic(filepath.Join(dir, "log"), []byte(logText)); err != nil {
		return err
	}
	if status != "FINISHED_SUCCESS" {
		return w.fail(it, "retrace failed: "+strings.TrimSpace(msg))
	}
	bt, err := c.Result(cctx, it.TaskID, it.Password, "backtrace")
	if err != nil {
		return w.again(it, stateSubmitted, err)
	}
	if err := writeAtomic(filepath.Join(dir, "backtrace"), []byte(bt)); err != nil {
		return err
	}
	it.State, it.Finished, it.Attempts, it.Reason = stateFinished, w.now().UTC(), 0, ""
	if err := it.save(w.spool); err != nil {
		return err
	}
	w.log.Printf("%s: finished, backtrace saved", it.ID)
	return nil
}

// purge deletes the finished items older than purge.age.
func (w *watcher) purge() {
	for id, it := range w.items {
		if it.State != stateFinished || w.now().Sub(it.Finished) < w.cfg.Purge.Age.Duration {
			continue
		}
		if err := os.RemoveAll(itemDir(w.spool, id)); err != nil {
			w.log.Printf("%s: purge: %v", id, err)
			continue
		}
		delete(w.items, id)
		w.log.Printf("%s: purged (finished %s ago)", id, w.now().Sub(it.Finished).Round(time.Second))
	}
}
