package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index/blob"
)

func TestParseURL(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7070")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	c, err := ParseURL("s3://debug/retraced/blobs/")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Bucket: "debug", Prefix: "retraced/blobs/", Endpoint: "http://127.0.0.1:7070", Region: "eu-west-1", AccessKey: "key", SecretKey: "secret"}
	if c != want {
		t.Errorf("ParseURL = %+v, want %+v", c, want)
	}
	if c, err := ParseURL("s3://bucket"); err != nil || c.Prefix != "" || c.Bucket != "bucket" {
		t.Errorf("no prefix: %+v %v", c, err)
	}
	for _, bad := range []string{"", "/var/lib/retraced", "http://bucket/x", "s3:///x", "s3://b/x?y=1", "s3://u:p@b/x"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
}

// newStore opens a store on a fresh versitygw with its bucket made.
func newStore(t *testing.T, prefix string, transport http.RoundTripper, retries int) *Store {
	t.Helper()
	srv := servers.S3(t)
	s, err := Open(Config{Bucket: "blobs", Prefix: prefix, Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Transport: transport, MaxRetries: retries})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRoundTrip: against a real S3 server, blobs are put under
// PREFIX/sha256/XX/<hex>, read back byte for byte, listed (and only
// they), sized, removed; a missing one is ErrNotExist.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, "mirror/", nil, 0)
	blobs := map[blob.Digest][]byte{}
	for _, content := range []string{"a", "bb", strings.Repeat("retraced ", 1<<19)} {
		b := []byte(content)
		blobs[blob.Sum(b)] = b
	}
	for d, b := range blobs {
		if err := s.Put(ctx, d, bytes.NewReader(b), int64(len(b)), false); err != nil {
			t.Fatal(err)
		}
	}
	// Not blobs: ignored by Walk.
	for _, k := range []string{"mirror/sha256/zz/notablob", "mirror/other/x", "elsewhere/sha256/aa/" + strings.Repeat("a", 64)} {
		if _, err := s.c.PutObject(ctx, "blobs", k, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for d, b := range blobs {
		if !strings.HasPrefix(s.Key(d), "mirror/sha256/"+d.String()[:2]+"/") {
			t.Errorf("key %s", s.Key(d))
		}
		rc, size, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, b) || size != int64(len(b)) {
			t.Errorf("Open %s: %d bytes (size %d), %v", d, len(got), size, err)
		}
		if ok, err := s.Has(ctx, d); !ok || err != nil {
			t.Errorf("Has %s = %v, %v", d, ok, err)
		}
	}
	seen := 0
	if err := s.Walk(ctx, func(d blob.Digest, size int64, _ time.Time) error {
		if b, ok := blobs[d]; !ok || size != int64(len(b)) {
			t.Errorf("Walk: %s of %d bytes", d, size)
		}
		seen++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != len(blobs) {
		t.Errorf("Walk saw %d blobs, want %d", seen, len(blobs))
	}
	for d := range blobs {
		if err := s.Remove(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Open(ctx, d); !errors.Is(err, ErrNotExist) {
			t.Errorf("Open of a removed blob: %v, want ErrNotExist", err)
		}
		if ok, err := s.Has(ctx, d); ok || err != nil {
			t.Errorf("Has of a removed blob = %v, %v", ok, err)
		}
	}
}

// failing answers 503 (as an overloaded store does) to the first n
// requests, then lets them through to the real server.
type failing struct {
	n     atomic.Int32
	tries atomic.Int32
}

func (f *failing) RoundTrip(r *http.Request) (*http.Response, error) {
	f.tries.Add(1)
	if f.n.Add(-1) >= 0 {
		return s3Error(r, http.StatusServiceUnavailable, "SlowDown", "overloaded"), nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// s3Error answers r as an S3 server answers an error, having read its
// body as a server does.
func s3Error(r *http.Request, status int, code, message string) *http.Response {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	body := "<Error><Code>" + code + "</Code><Message>" + message + "</Message></Error>"
	return &http.Response{StatusCode: status, Status: fmt.Sprint(status, " ", http.StatusText(status)), Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"application/xml"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}
}

// TestRetries: a store answering 503 a few times is retried with backoff
// and the blob lands whole; one that keeps failing gives an error after
// the bounded tries, with nothing stored.
func TestRetries(t *testing.T) {
	ctx := context.Background()
	f := &failing{}
	s := newStore(t, "", f, 4)
	b := bytes.Repeat([]byte{7}, 100<<10)
	d := blob.Sum(b)

	f.n.Store(2)
	f.tries.Store(0)
	if err := s.Put(ctx, d, bytes.NewReader(b), int64(len(b)), false); err != nil {
		t.Fatalf("Put through two 503s: %v", err)
	}
	if tries := f.tries.Load(); tries < 3 {
		t.Errorf("%d tries for a Put behind two 503s", tries)
	}
	rc, _, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, b) {
		t.Fatal("the retried blob reads back different")
	}

	other := blob.Sum([]byte("other"))
	f.n.Store(1000)
	f.tries.Store(0)
	start := time.Now()
	err = s.Put(ctx, other, strings.NewReader("other"), 5, false)
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Put against a store that keeps failing: %v", err)
	}
	if tries := f.tries.Load(); tries != 4 {
		t.Errorf("%d tries, want MaxRetries = 4", tries)
	}
	t.Logf("gave up after %s", time.Since(start))
	f.n.Store(0)
	if ok, err := s.Has(ctx, other); ok || err != nil {
		t.Errorf("a failed Put left %v, %v", ok, err)
	}
}

// TestPoolOnS3: a blob.Pool whose Remote is the store writes its blobs
// there and nowhere else (no compressed copy on local disk), reads them
// back, makes plain copies from them, lists and removes them.
func TestPoolOnS3(t *testing.T) {
	s := newStore(t, "pool/", nil, 0)
	dir := t.TempDir()
	p, err := blob.Open(dir, blob.Config{Remote: s, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("debuginfo "), 50000)
	d := blob.Sum(content)
	stored, err := p.Put(d, bytes.NewReader(content))
	if err != nil || stored <= 0 {
		t.Fatalf("Put = %d, %v", stored, err)
	}
	if again, err := p.Put(d, bytes.NewReader(content)); err != nil || again != 0 {
		t.Fatalf("second Put = %d, %v; want 0 (already stored)", again, err)
	}
	if st, err := s.Stat(context.Background(), d); err != nil || st.Size != stored || st.Compacted {
		t.Fatalf("the object store holds %+v (%v), the pool said %d bytes, fresh", st, err, stored)
	}
	var local []string
	filepathWalk(t, dir, func(p string) { local = append(local, p) })
	for _, f := range local {
		if strings.Contains(f, "/sha256/") {
			t.Errorf("a compressed copy on local disk: %s", f)
		}
	}
	if !p.Has(d) {
		t.Fatal("Has = false")
	}
	rc, err := p.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Open read %d bytes, %v", len(got), err)
	}
	plain, err := p.Plain(d)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(plain); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("plain copy: %v", err)
	}
	n := 0
	if err := p.Walk(func(got blob.Digest, size int64) error {
		if got != d || size != stored {
			t.Errorf("Walk: %s %d", got, size)
		}
		n++
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("Walk: %d blobs, %v", n, err)
	}
	if err := p.Remove(d); err != nil {
		t.Fatal(err)
	}
	if p.Has(d) {
		t.Error("Has after Remove")
	}
	if _, err := p.Open(d); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open after Remove: %v, want ErrNotFound", err)
	}
}

func filepathWalk(t *testing.T, dir string, fn func(string)) {
	t.Helper()
	if err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			fn(p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPoolCompactOnS3: a blob written fast (S2) is recompressed in the
// object store, smaller, marked compacted in its metadata (a second pool
// with nothing cached sees the mark), and reads back the same.
func TestPoolCompactOnS3(t *testing.T) {
	s := newStore(t, "", nil, 0)
	p, err := blob.Open(t.TempDir(), blob.Config{Remote: s, NoSync: true, Codec: blob.CodecS2})
	if err != nil {
		t.Fatal(err)
	}
	var content []byte
	for i := range 200000 {
		content = append(content, fmt.Sprintf("frame %d at 0x%x\n", i%977, i*16)...)
	}
	d := blob.Sum(content)
	if _, err := p.Put(d, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if done, err := p.IsCompacted(d); err != nil || done {
		t.Fatalf("IsCompacted of a fresh blob = %v, %v", done, err)
	}
	before, after, err := p.Compact(context.Background(), d, "")
	if err != nil || after <= 0 || after >= before {
		t.Fatalf("Compact = %d -> %d, %v; want smaller", before, after, err)
	}
	fresh, err := blob.Open(t.TempDir(), blob.Config{Remote: s})
	if err != nil {
		t.Fatal(err)
	}
	if done, err := fresh.IsCompacted(d); err != nil || !done {
		t.Fatalf("another pool sees IsCompacted = %v, %v", done, err)
	}
	if n, err := fresh.StoredSize(d); err != nil || n != after {
		t.Fatalf("StoredSize = %d, %v; want %d", n, err, after)
	}
	rc, err := fresh.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("compacted blob reads %d bytes, %v", len(got), err)
	}
	if b2, a2, err := fresh.Compact(context.Background(), d, ""); err != nil || b2 != after || a2 != after {
		t.Errorf("compacting again = %d -> %d, %v; want nothing done", b2, a2, err)
	}
	t.Logf("S2 %d bytes -> zstd %d bytes in the object store", before, after)
}

// TestBatchOnS3: a Batch stores nothing until Finish, and nothing at all
// when aborted; once Finish returns nil every blob is in the store and no
// temp file is left; with the store failing its PUTs, Finish reports the
// failure and the temp files go too.
func TestBatchOnS3(t *testing.T) {
	tr := &putsDown{}
	s := newStore(t, "batch/", tr, 0)
	dir := t.TempDir()
	p, err := blob.Open(dir, blob.Config{Remote: s, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(b *blob.Batch, i int) blob.Digest {
		content := bytes.Repeat([]byte(fmt.Sprintf("blob %d of a package ", i)), 5000+i)
		d := blob.Sum(content)
		if i%2 == 0 {
			if _, err := b.PutHashed(d, bytes.NewReader(content)); err != nil {
				t.Fatal(err)
			}
			return d
		}
		w, err := p.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(content); err != nil {
			t.Fatal(err)
		}
		if n, err := b.Commit(w, d); err != nil || n <= 0 {
			t.Fatalf("Commit = %d, %v", n, err)
		}
		return d
	}
	b := p.NewBatch()
	var ds []blob.Digest
	for i := range 20 {
		ds = append(ds, put(b, i))
	}
	for _, d := range ds {
		if ok, err := s.Has(ctx, d); err != nil || ok {
			t.Fatalf("%s in the store before Finish (%v)", d, err)
		}
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if ok, err := s.Has(ctx, d); err != nil || !ok {
			t.Errorf("%s not in the store after Wait (%v)", d, err)
		}
	}
	temps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	if len(temps) != 0 {
		t.Errorf("temp files left: %v", temps)
	}

	b = p.NewBatch()
	aborted := []blob.Digest{put(b, 30), put(b, 31)}
	b.Abort()
	for _, d := range aborted {
		if ok, err := s.Has(ctx, d); err != nil || ok {
			t.Errorf("%s in the store after Abort (%v)", d, err)
		}
	}

	tr.on.Store(true)
	b = p.NewBatch()
	for i := 20; i < 26; i++ {
		put(b, i)
	}
	if err := b.Finish(); err == nil || !strings.Contains(err.Error(), "PUT refused") {
		t.Errorf("Finish with the store down = %v", err)
	}
	temps, _ = filepath.Glob(filepath.Join(dir, "tmp", "*"))
	if len(temps) != 0 {
		t.Errorf("temp files left after failed uploads: %v", temps)
	}
}

// putsDown fails every PUT while on, and passes the rest.
type putsDown struct{ on atomic.Bool }

func (d *putsDown) RoundTrip(r *http.Request) (*http.Response, error) {
	if d.on.Load() && r.Method == http.MethodPut {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errors.New("PUT refused (the object store is failing)")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// counting counts a client's requests by method and the connections it
// opens.
type counting struct {
	mu      sync.Mutex
	methods map[string]int
	dials   atomic.Int64
	tr      *http.Transport
}

func newCounting() *counting {
	c := &counting{methods: map[string]int{}}
	c.tr = http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	c.tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	return c
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.methods[r.Method]++
	c.mu.Unlock()
	return c.tr.RoundTrip(r)
}

// TestOpenIsOneGET: reading a blob is one GET (no HEAD before it), a
// missing one too, and reads one after another keep using one
// connection: every cold download from the store costs one request.
func TestOpenIsOneGET(t *testing.T) {
	ctx := context.Background()
	c := newCounting()
	s := newStore(t, "", c, 0)
	var ds []blob.Digest
	for i := range 20 {
		b := bytes.Repeat([]byte{byte(i)}, 100_000+i)
		d := blob.Digest(sha256.Sum256(b))
		if err := s.Put(ctx, d, bytes.NewReader(b), int64(len(b)), false); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	c.mu.Lock()
	clear(c.methods)
	c.mu.Unlock()
	dials := c.dials.Load()
	for _, d := range ds {
		rc, size, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != size {
			t.Fatalf("read %s: %d of %d bytes, %v", d, n, size, err)
		}
	}
	if _, _, err := s.Open(ctx, blob.Digest{1}); !errors.Is(err, ErrNotExist) {
		t.Errorf("missing blob: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.methods[http.MethodGet] != len(ds)+1 || len(c.methods) != 1 {
		t.Errorf("%d reads and a miss made requests %v, want %d GETs and nothing else", len(ds), c.methods, len(ds)+1)
	}
	if n := c.dials.Load() - dials; n > 1 {
		t.Errorf("%d reads one after another opened %d connections, want at most 1", len(ds)+1, n)
	}
}

// TestNewBlobIsOnePUT: a sync's new blob costs the object store one
// request, a PUT, with no HEAD before it. A pool that does not know the
// store holds a blob (another node's, or its own after a restart) puts it
// and finds it there: the store keeps its object (here compacted), the
// batch counts its bytes as existing, and a fresh Put of another form
// never replaces it.
func TestNewBlobIsOnePUT(t *testing.T) {
	c := newCounting()
	s := newStore(t, "", c, 0)
	contents := [][]byte{}
	for i := range 6 {
		var b []byte
		for j := range 20000 + i {
			b = append(b, fmt.Sprintf("blob %d line %d\n", i, j%331)...)
		}
		contents = append(contents, b)
	}
	p, err := blob.Open(t.TempDir(), blob.Config{Remote: s, NoSync: true, Codec: blob.CodecS2})
	if err != nil {
		t.Fatal(err)
	}
	put := func(p *blob.Pool, cs [][]byte) (stored, existing int64) {
		b := p.NewBatch()
		for _, content := range cs {
			n, err := b.PutHashed(blob.Sum(content), bytes.NewReader(content))
			if err != nil {
				t.Fatal(err)
			}
			stored += n
		}
		if err := b.Finish(); err != nil {
			t.Fatal(err)
		}
		return stored, b.Existing()
	}
	requests := func() map[string]int {
		c.mu.Lock()
		defer c.mu.Unlock()
		m := maps.Clone(c.methods)
		clear(c.methods)
		return m
	}
	requests()
	if stored, existing := put(p, contents[:4]); stored == 0 || existing != 0 {
		t.Errorf("4 new blobs: stored %d, existing %d", stored, existing)
	}
	if got := requests(); got[http.MethodPut] != 4 || len(got) != 1 {
		t.Errorf("4 new blobs made requests %v, want 4 PUTs and nothing else", got)
	}
	d0 := blob.Sum(contents[0])
	_, compacted, err := p.Compact(context.Background(), d0, "")
	if err != nil {
		t.Fatal(err)
	}

	// Another pool, nothing cached: two blobs new, four there already.
	q, err := blob.Open(t.TempDir(), blob.Config{Remote: s, NoSync: true, Codec: blob.CodecS2})
	if err != nil {
		t.Fatal(err)
	}
	requests()
	stored, existing := put(q, contents)
	if got := requests(); got[http.MethodPut] != 6 || len(got) != 1 {
		t.Errorf("6 blobs, 4 of them stored, made requests %v, want 6 PUTs and nothing else", got)
	}
	var newBytes int64
	for _, content := range contents[4:] {
		n, err := q.StoredSize(blob.Sum(content))
		if err != nil {
			t.Fatal(err)
		}
		newBytes += n
	}
	if stored-existing != newBytes {
		t.Errorf("stored %d less existing %d = %d, want the 2 new blobs' %d bytes", stored, existing, stored-existing, newBytes)
	}
	if done, err := q.IsCompacted(d0); err != nil || !done {
		t.Errorf("the compacted blob put again: IsCompacted = %v, %v; want kept compacted", done, err)
	}
	if n, err := q.StoredSize(d0); err != nil || n != compacted {
		t.Errorf("the compacted blob put again: %d bytes, %v; want its %d", n, err, compacted)
	}
	// The store itself: a fresh Put where d is answers ErrExist.
	if err := s.Put(context.Background(), d0, bytes.NewReader([]byte("x")), 1, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("fresh Put over a stored blob: %v, want ErrExist", err)
	}
	rc, err := q.Open(d0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, contents[0]) {
		t.Errorf("blob after the refused Put: %d bytes, %v", len(got), err)
	}
}

// noConditional is a store without conditional writes: it answers a PUT
// with If-None-Match 501 Not Implemented, reading its body as a server
// does, and lets every other request through to the real server.
type noConditional struct{ refused atomic.Int32 }

func (n *noConditional) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "" {
		n.refused.Add(1)
		return s3Error(r, http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented"), nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestPutWithoutConditionalWrites: a store that does not implement
// If-None-Match on PUT is asked once; the blob is stored all the same
// (the refused request's body sent again), and from then on a fresh blob
// is a HEAD and a plain PUT, which still leaves a stored blob alone.
func TestPutWithoutConditionalWrites(t *testing.T) {
	nc := &noConditional{}
	s := newStore(t, "", nc, 0)
	p, err := blob.Open(t.TempDir(), blob.Config{Remote: s, NoSync: true, Codec: blob.CodecS2})
	if err != nil {
		t.Fatal(err)
	}
	var ds []blob.Digest
	b := p.NewBatch()
	for i := range 3 {
		content := bytes.Repeat([]byte(fmt.Sprintf("blob %d\n", i)), 50000)
		d := blob.Sum(content)
		if _, err := b.PutHashed(d, bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if err := b.Finish(); err != nil {
		t.Fatalf("Finish on a store without conditional writes: %v", err)
	}
	if n := nc.refused.Load(); n < 1 || n > 3 {
		t.Errorf("%d conditional PUTs refused, want the first ones only", n)
	}
	for _, d := range ds {
		rc, err := p.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("blob %s reads back: %v", d, err)
		}
		rc.Close()
	}
	if err := s.Put(context.Background(), ds[0], bytes.NewReader([]byte("x")), 1, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("fresh Put over a stored blob: %v, want ErrExist", err)
	}
	if n := nc.refused.Load(); n > 3 {
		t.Errorf("conditional PUTs kept being sent: %d refused", n)
	}
}
