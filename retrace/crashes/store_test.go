package crashes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/retrace"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openTestStore(t testing.TB, dir string, clk *clock, opt Options) *Store {
	t.Helper()
	be, err := OpenBadger(dir)
	if err != nil {
		t.Fatal(err)
	}
	opt.Now = clk.now
	s, err := New(be, opt)
	if err != nil {
		be.Close()
		t.Fatal(err)
	}
	return s
}

func nevra(t testing.TB, s string) index.NEVRA {
	t.Helper()
	n, err := index.ParseNEVRA(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func bt(frames ...string) string {
	var b strings.Builder
	for i, f := range frames {
		fmt.Fprintf(&b, "#%d  0x%x in %s (x=%d) at f.c:%d\n", i, 0x1000+i, f, i, i)
	}
	return b.String()
}

// TestStoreRestart: what is recorded is there after a reopen, a task
// recorded twice (before and after) counts once, counts per day, versions
// and task ids are kept.
func TestStoreRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	s := openTestStore(t, dir, clk, Options{})
	c1 := Crash{TaskID: "100000001", Time: clk.t, Package: nevra(t, "counter-1.0-1.x86_64"), Signal: 11, Backtrace: bt("counter_store", "counter_step", "main")}
	sig, err := s.Record(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	c2 := c1
	c2.TaskID, c2.Time, c2.Package = "100000002", clk.t.Add(25*time.Hour), nevra(t, "counter-1:1.1-1.x86_64")
	if _, err := s.Record(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(ctx, c1); err != nil { // the same task again
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, clk, Options{})
	defer s.Close()
	if _, err := s.Record(ctx, c2); err != nil { // again, after the restart
		t.Fatal(err)
	}
	e, ex, err := s.Get(sig.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Count != 2 || len(e.Days) != 2 || labelled(e.Days, dayLabel)[0] != (DayCount{"2026-03-10", 1}) || labelled(e.Days, dayLabel)[1] != (DayCount{"2026-03-11", 1}) {
		t.Errorf("count %d, days %v", e.Count, e.Days)
	}
	if len(e.Versions) != 2 || e.Versions[0].NEVRA != "counter-1:1.1-1.x86_64" || e.Versions[1].NEVRA != "counter-1.0-1.x86_64" {
		t.Errorf("versions %+v", e.Versions)
	}
	if len(e.Tasks) != 2 || e.Tasks[0].ID != "100000002" {
		t.Errorf("tasks %+v", e.Tasks)
	}
	if !e.FirstSeen.Equal(c1.Time) || !e.LastSeen.Equal(c2.Time) {
		t.Errorf("first %v last %v", e.FirstSeen, e.LastSeen)
	}
	if ex != c1.Backtrace {
		t.Errorf("example %q", ex)
	}
}

// TestStoreBounds: the signature count, the example and the versions
// are bounded; the least recently seen signature goes first.
func TestStoreBounds(t *testing.T) {
	clk := &clock{time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	s := openTestStore(t, t.TempDir(), clk, Options{MaxSignatures: 3})
	defer s.Close()
	var first Signature
	for i := range 5 {
		sig, err := s.Record(ctx, Crash{Time: clk.t.Add(time.Duration(i) * time.Minute), Package: nevra(t, "p-1-1.x86_64"), Signal: 11,
			Backtrace: bt(fmt.Sprintf("f%d", i), "main")})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = sig
		}
	}
	if s.Len() != 3 {
		t.Errorf("%d signatures kept, want 3", s.Len())
	}
	if _, _, err := s.Get(first.ID); err != ErrNotFound {
		t.Errorf("the oldest signature: %v", err)
	}
	huge := bt("big", "main") + strings.Repeat("x", 2*MaxExample)
	sig, err := s.Record(ctx, Crash{Time: clk.t.Add(time.Hour), Package: nevra(t, "p-1-1.x86_64"), Signal: 6, Backtrace: huge})
	if err != nil {
		t.Fatal(err)
	}
	for v := range 40 {
		if _, err := s.Record(ctx, Crash{Time: clk.t.Add(time.Hour + time.Duration(v)*time.Second), Package: nevra(t, fmt.Sprintf("p-%d-1.x86_64", v+2)), Signal: 6, Backtrace: huge}); err != nil {
			t.Fatal(err)
		}
	}
	e, ex, err := s.Get(sig.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) > MaxExample+100 || !strings.Contains(ex, "backtrace cut at") {
		t.Errorf("example of %d bytes", len(ex))
	}
	if len(e.Versions) != MaxVersions || e.Versions[0].NEVRA != "p-41-1.x86_64" {
		t.Errorf("%d versions, newest %s", len(e.Versions), e.Versions[0].NEVRA)
	}
}

// TestStoreGC: signatures last seen before the retention go; one seen
// since stays.
func TestStoreGC(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	s := openTestStore(t, dir, clk, Options{Retention: 30 * 24 * time.Hour})
	old, _ := s.Record(ctx, Crash{Time: clk.t, Package: nevra(t, "a-1-1.x86_64"), Signal: 11, Backtrace: bt("old_bug")})
	kept, _ := s.Record(ctx, Crash{Time: clk.t.Add(20 * 24 * time.Hour), Package: nevra(t, "a-1-1.x86_64"), Signal: 11, Backtrace: bt("new_bug")})
	clk.t = clk.t.Add(40 * 24 * time.Hour)
	items, err := s.Plan(ctx, clk.t)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Name != old.ID || items[0].Kind != KindSignature {
		t.Fatalf("plan %+v", items)
	}
	if err := s.Delete(ctx, items); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, dir, clk, Options{Retention: 30 * 24 * time.Hour})
	defer s.Close()
	if _, _, err := s.Get(old.ID); err != ErrNotFound {
		t.Errorf("expired signature after a restart: %v", err)
	}
	if _, _, err := s.Get(kept.ID); err != nil {
		t.Errorf("kept signature: %v", err)
	}
}

// TestReportMarks: windows count their own crashes; "new" is first seen
// in the window; "gone" is not seen since a newer version crashed.
func TestReportMarks(t *testing.T) {
	now := time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)
	clk := &clock{now}
	ctx := context.Background()
	s := openTestStore(t, t.TempDir(), clk, Options{})
	defer s.Close()
	rec := func(ago time.Duration, pkg, fn string, sig int) Signature {
		t.Helper()
		sg, err := s.Record(ctx, Crash{Time: now.Add(-ago), Package: nevra(t, pkg), Signal: sig, Backtrace: bt(fn, "main")})
		if err != nil {
			t.Fatal(err)
		}
		return sg
	}
	day := 24 * time.Hour
	fixed := rec(20*day, "app-1.0-1.x86_64", "old_bug", 11) // only in 1.0
	rec(19*day, "app-1.0-1.x86_64", "old_bug", 11)
	rec(10*day, "app-1.1-1.x86_64", "other_bug", 11) // 1.1 appears
	fresh := rec(2*time.Hour, "app-1.1-1.x86_64", "fresh_bug", 6)
	rec(1*time.Hour, "app-1.1-1.x86_64", "fresh_bug", 6)
	rec(3*day, "app-1.1-1.x86_64", "other_bug", 11)

	r30 := s.Report(Window30d, 0)
	if len(r30.Rows) != 3 || r30.Rows[0].WindowCount != 2 {
		t.Fatalf("30d rows %d", len(r30.Rows))
	}
	marks := map[string]Row{}
	for _, row := range r30.Rows {
		marks[row.ID] = row
	}
	if !marks[fixed.ID].Gone || marks[fixed.ID].Newer != "app-1.1-1.x86_64" || !marks[fixed.ID].New {
		t.Errorf("old_bug: gone %v (%s), new %v", marks[fixed.ID].Gone, marks[fixed.ID].Newer, marks[fixed.ID].New)
	}
	if marks[fresh.ID].Gone {
		t.Error("fresh_bug is gone")
	}
	r24 := s.Report(Window24h, 0)
	if len(r24.Rows) != 1 || r24.Rows[0].ID != fresh.ID || r24.Rows[0].WindowCount != 2 || !r24.Rows[0].New {
		t.Errorf("24h: %+v", r24.Rows)
	}
	var sum int64
	for _, n := range r24.Rows[0].Counts {
		sum += n
	}
	if len(r24.Rows[0].Counts) != 24 || sum != 2 {
		t.Errorf("24h chart %v", r24.Rows[0].Counts)
	}
	r7 := s.Report(Window7d, 0)
	if len(r7.Rows) != 2 {
		t.Errorf("7d rows %d, want 2", len(r7.Rows))
	}
}

// TestPagesHostile: a crafted function name and package name never break
// the pages or the JSON: they show as text.
func TestPagesHostile(t *testing.T) {
	clk := &clock{time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)}
	s := openTestStore(t, t.TempDir(), clk, Options{})
	defer s.Close()
	evil := `x</a><script>alert(1)</script><img src=x onerror=alert(2)>"'&`
	err := s.RecordCrashes(context.Background(), []retrace.FinishedCrash{{TaskID: "123456789", Finished: clk.t, Package: "evil-1-1.x86_64",
		Signal: 11, Backtrace: "#0  0x1 in " + evil + " () at a.c:1\n#1  0x2 in main ()\n</pre><script>alert(3)</script>\n"}})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	s.Register(r)
	srv := httptest.NewServer(r)
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	id := s.Report(Window7d, 0).Rows[0].ID
	for _, p := range []string{"/crashes", "/crashes/" + id} {
		code, body := get(p)
		if code != 200 || strings.Contains(body, "<script>") || strings.Contains(body, "<img") {
			t.Errorf("%s: %d, unescaped markup", p, code)
		}
		// The frame, template brackets folded, as text.
		if !strings.Contains(body, "x&lt;T&gt;&lt;T&gt;alert(1)&lt;T&gt;&lt;T&gt;&#34;&#39;&amp;") {
			t.Errorf("%s: the function name is not shown as text", p)
		}
	}
	if _, body := get("/crashes/" + id); !strings.Contains(body, "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;") {
		t.Error("the example backtrace is not shown as text")
	}
	code, body := get("/api/v1/crashes/" + id)
	var v APISignature
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Frames[0] != Normalize(evil) || strings.Contains(body, "<script>") ||
		len(v.Days) != 1 || v.Days[0] != (DayCount{"2026-03-30", 1}) || len(v.Hours) != 1 || v.Hours[0] != (DayCount{"2026-03-30T12", 1}) {
		t.Errorf("signature JSON: %d %s", code, body)
	}
	code, body = get("/api/v1/crashes?window=30d")
	var rep APIReport
	if code != 200 || json.Unmarshal([]byte(body), &rep) != nil || len(rep.Rows) != 1 || rep.Rows[0].Count != 1 || len(rep.Rows[0].Series) != 30 {
		t.Errorf("list JSON: %d %s", code, body)
	}
	for path, want := range map[string]int{
		"/api/v1/crashes?window=1y":                  400,
		"/api/v1/crashes?limit=0":                    400,
		"/api/v1/crashes/nothex":                     400,
		"/api/v1/crashes/" + strings.Repeat("0", 32): 404,
		"/crashes/" + strings.Repeat("a", 32):        404,
	} {
		if code, _ := get(path); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

// TestRecordBatch: a batch records what one Record per crash records, a
// task twice in a batch or already recorded counting once.
func TestRecordBatch(t *testing.T) {
	clk := &clock{time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	var cs []Crash
	for i := range 30 {
		cs = append(cs, Crash{TaskID: fmt.Sprintf("%09d", 200000000+i%25), Time: clk.t.Add(time.Duration(i) * time.Hour),
			Package: nevra(t, fmt.Sprintf("app-1.%d-1.x86_64", i%3)), Signal: []int{6, 11}[i%2], Backtrace: bt(fmt.Sprintf("f%d", i%4), "main")})
	}
	one := openTestStore(t, t.TempDir(), clk, Options{})
	defer one.Close()
	for _, c := range cs {
		if _, err := one.Record(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	batch := openTestStore(t, t.TempDir(), clk, Options{})
	defer batch.Close()
	if _, err := batch.RecordBatch(ctx, cs[:10]); err != nil {
		t.Fatal(err)
	}
	if _, err := batch.RecordBatch(ctx, cs); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(one.Report(Window30d, 0).api())
	b, _ := json.Marshal(batch.Report(Window30d, 0).api())
	if string(a) != string(b) {
		t.Errorf("batch differs from one by one:\n%s\n%s", a, b)
	}
	var n int64
	for _, r := range one.Report(Window30d, 0).Rows {
		n += r.Count
	}
	if n != 25 {
		t.Errorf("%d crashes recorded of 25 tasks", n)
	}
}

// TestReportLimit: the top of a limited report is the head of the full
// one, in the same order.
func TestReportLimit(t *testing.T) {
	clk := &clock{time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)}
	s := openTestStore(t, t.TempDir(), clk, Options{})
	defer s.Close()
	var cs []Crash
	for i := range 600 {
		cs = append(cs, Crash{Time: clk.t.Add(-time.Duration(i%97) * time.Hour), Package: nevra(t, "app-1-1.x86_64"), Signal: 11,
			Backtrace: bt(fmt.Sprintf("f%d", (i*i)%151), "main")})
	}
	if _, err := s.RecordBatch(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	for _, w := range Windows {
		all := s.Report(w, 0)
		for _, limit := range []int{1, 7, 50, len(all.Rows), len(all.Rows) + 5} {
			top := s.Report(w, limit)
			n := min(limit, len(all.Rows))
			if len(top.Rows) != n || top.Truncated != (limit < len(all.Rows)) || top.Total != all.Total {
				t.Fatalf("%s limit %d: %d rows, truncated %v", w, limit, len(top.Rows), top.Truncated)
			}
			for i := range n {
				if top.Rows[i].ID != all.Rows[i].ID {
					t.Fatalf("%s limit %d: row %d is %s, want %s", w, limit, i, top.Rows[i].Text, all.Rows[i].Text)
				}
			}
		}
	}
}
