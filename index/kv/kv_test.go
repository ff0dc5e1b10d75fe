package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index/kv"
)

// engines runs test on each engine: the same contract holds for both.
func engines(t *testing.T, test func(t *testing.T, open func(node string) kv.Engine)) {
	t.Run("badger", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "kv")
		var opened kv.Engine
		test(t, func(node string) kv.Engine {
			if opened != nil {
				return opened // one process owns a Badger directory
			}
			b, err := kv.OpenBadger(dir, kv.BadgerOptions{Node: node})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			opened = b
			return b
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := servers.Postgres(t)
		test(t, func(node string) kv.Engine { return openPG(t, dsn, node) })
	})
}

func openPG(t *testing.T, dsn, node string) *kv.Postgres {
	t.Helper()
	p, err := kv.OpenPostgres(context.Background(), dsn, kv.PostgresOptions{Node: node, LeaseCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestReadWrite(t *testing.T) {
	engines(t, func(t *testing.T, open func(string) kv.Engine) {
		e := open("a")
		keys := [][]byte{[]byte("p/a"), []byte("p/b\x00x"), []byte("p/b"), {'p', '/', 0xff, 0xff}, []byte("q/a"), []byte("p")}
		err := e.Update(func(tx kv.Txn) error {
			for i, k := range keys {
				if err := tx.Set(k, []byte(fmt.Sprint(i))); err != nil {
					return err
				}
			}
			// A transaction sees its own writes.
			if v, err := tx.Get([]byte("p/b")); err != nil || string(v) != "2" {
				return fmt.Errorf("own write: %q %v", v, err)
			}
			if err := tx.Delete([]byte("p/a")); err != nil {
				return err
			}
			if _, err := tx.Get([]byte("p/a")); !errors.Is(err, kv.ErrNotFound) {
				return fmt.Errorf("own delete: %v", err)
			}
			if has, err := tx.Has([]byte("p/a")); err != nil || has {
				return fmt.Errorf("Has after own delete: %v %v", has, err)
			}
			if has, err := tx.Has([]byte("p/b")); err != nil || !has {
				return fmt.Errorf("Has after own write: %v %v", has, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		err = e.View(func(r kv.Reader) error {
			return r.Scan([]byte("p/"), false, func(k, v []byte) error {
				got = append(got, fmt.Sprintf("%q=%s", k, v))
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{`"p/b"=2`, `"p/b\x00x"=1`, `"p/\xff\xff"=3`}
		if !slices.Equal(got, want) {
			t.Errorf("scan p/: %v, want %v", got, want)
		}
		all := 0
		e.View(func(r kv.Reader) error {
			return r.Scan(nil, true, func(k, v []byte) error { all++; return nil })
		})
		if all != 5 {
			t.Errorf("a scan of every key saw %d, want 5", all)
		}
		e.View(func(r kv.Reader) error {
			for k, want := range map[string]bool{"p/b": true, "q/a": true, "p/a": false, "p/": false} {
				if has, err := r.Has([]byte(k)); err != nil || has != want {
					t.Errorf("Has(%q) = %v, %v; want %v", k, has, err, want)
				}
			}
			return nil
		})
		// A failed update leaves nothing behind.
		boom := errors.New("boom")
		err = e.Update(func(tx kv.Txn) error {
			tx.Set([]byte("q/b"), []byte("x"))
			tx.Delete([]byte("q/a"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("update returned %v", err)
		}
		e.View(func(r kv.Reader) error {
			if _, err := r.Get([]byte("q/b")); !errors.Is(err, kv.ErrNotFound) {
				t.Errorf("rolled back set is there: %v", err)
			}
			if v, err := r.Get([]byte("q/a")); err != nil || string(v) != "4" {
				t.Errorf("rolled back delete took q/a: %q %v", v, err)
			}
			return nil
		})
	})
}

// TestScanPages: a scan longer than a page sees every key once, in
// order, keys only when asked, also from inside an update after writes.
func TestScanPages(t *testing.T) {
	engines(t, func(t *testing.T, open func(string) kv.Engine) {
		e := open("a")
		const n = 1000
		err := e.Update(func(tx kv.Txn) error {
			for i := range n {
				if err := tx.Set(fmt.Appendf(nil, "s/%05d", i), fmt.Appendf(nil, "%d", i)); err != nil {
					return err
				}
			}
			count := 0
			err := tx.Scan([]byte("s/"), true, func(k, v []byte) error {
				if v != nil {
					return fmt.Errorf("keys-only scan gave a value for %s", k)
				}
				count++
				return nil
			})
			if count != n {
				return fmt.Errorf("scan inside the update saw %d keys, want %d", count, n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var prev []byte
		count := 0
		e.View(func(r kv.Reader) error {
			return r.Scan([]byte("s/"), false, func(k, v []byte) error {
				if prev != nil && bytes.Compare(prev, k) >= 0 {
					t.Errorf("%s after %s", k, prev)
				}
				if want := fmt.Sprintf("s/%05s", v); string(k) != want {
					t.Errorf("%s holds %s", k, v)
				}
				prev = bytes.Clone(k)
				count++
				return nil
			})
		})
		if count != n {
			t.Errorf("scan saw %d keys, want %d", count, n)
		}
	})
}

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{[]byte("a/"), []byte("a0")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, nil},
	} {
		if got := kv.PrefixEnd(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestLeases: a lease is one holder's at a time; Holders names it; a
// released lease can be taken again.
func TestLeases(t *testing.T) {
	engines(t, func(t *testing.T, open func(string) kv.Engine) {
		a, b := open("node-a"), open("node-b")
		ctx := context.Background()
		lctx, release, err := a.Lease(ctx, "sync/fx")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Lease(ctx, "sync/fx"); !errors.Is(err, kv.ErrLeaseHeld) {
			t.Fatalf("second lease: %v, want ErrLeaseHeld", err)
		}
		h, err := b.Holders(ctx)
		if err != nil || h["sync/fx"] != "node-a" {
			t.Errorf("holders %v %v, want sync/fx held by node-a", h, err)
		}
		release()
		if lctx.Err() == nil {
			t.Error("the lease's context lives on after release")
		}
		_, release2, err := b.Lease(ctx, "sync/fx")
		if err != nil {
			t.Fatalf("lease after release: %v", err)
		}
		release2()
	})
}

// TestLocks: an exclusive lock waits for the shared ones, across
// processes.
func TestLocks(t *testing.T) {
	engines(t, func(t *testing.T, open func(string) kv.Engine) {
		a, b := open("node-a"), open("node-b")
		ctx := context.Background()
		r1, err := a.Lock(ctx, "gate", true)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := b.Lock(ctx, "gate", true)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan func(), 1)
		go func() {
			r, err := b.Lock(ctx, "gate", false)
			if err != nil {
				t.Error(err)
				r = func() {}
			}
			got <- r
		}()
		select {
		case <-got:
			t.Fatal("exclusive lock taken while shared ones are held")
		case <-time.After(300 * time.Millisecond):
		}
		r1()
		r2()
		select {
		case r := <-got:
			r()
		case <-time.After(10 * time.Second):
			t.Fatal("exclusive lock not taken after the shared ones were released")
		}
	})
}

// TestPostgresLeaseTakenOverWhenHolderDies: when the holder's session
// ends (its node killed; here its backend terminated), the holder's
// lease context ends and another node takes the lease.
func TestPostgresLeaseTakenOverWhenHolderDies(t *testing.T) {
	dsn := servers.Postgres(t)
	a, b := openPG(t, dsn, "node-a"), openPG(t, dsn, "node-b")
	ctx := context.Background()
	lctx, release, err := a.Lease(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	err = admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM retraced_leases WHERE name = 'gc'`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminate the holder: %d %v", n, err)
	}
	select {
	case <-lctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's lease context did not end when its session did")
	}
	_, release2, err := b.Lease(ctx, "gc")
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	release2()
}

// TestPostgresChanged: a commit by one node reaches the other's Changed;
// a node's own commits do not.
func TestPostgresChanged(t *testing.T) {
	dsn := servers.Postgres(t)
	a, b := openPG(t, dsn, "node-a"), openPG(t, dsn, "node-b")
	drain := func(e kv.Engine, within time.Duration) bool {
		select {
		case <-e.Changed():
			return true
		case <-time.After(within):
			return false
		}
	}
	// Listening starts with a signal; let both settle.
	time.Sleep(200 * time.Millisecond)
	drain(a, 100*time.Millisecond)
	drain(b, 100*time.Millisecond)
	if err := a.Update(func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if !drain(b, 5*time.Second) {
		t.Error("node b did not hear of node a's commit")
	}
	if drain(a, 300*time.Millisecond) {
		t.Error("node a heard of its own commit")
	}
}

// TestPrefetch: reads after Prefetch answer as reads without it: values,
// absent keys, empty values, the transaction's own writes and deletes
// (before and after a scan sends them), and keys not prefetched.
func TestPrefetch(t *testing.T) {
	engines(t, func(t *testing.T, open func(string) kv.Engine) {
		e := open("a")
		if err := e.Update(func(tx kv.Txn) error {
			tx.Set([]byte("f/a"), []byte("1"))
			tx.Set([]byte("f/b"), []byte("2"))
			tx.Set([]byte("f/empty"), []byte{})
			return tx.Set([]byte("f/later"), []byte("4"))
		}); err != nil {
			t.Fatal(err)
		}
		err := e.Update(func(tx kv.Txn) error {
			tx.Set([]byte("f/b"), []byte("own"))
			if err := kv.Prefetch(tx, [][]byte{[]byte("f/a"), []byte("f/b"), []byte("f/empty"), []byte("f/none"), []byte("f/a")}); err != nil {
				return err
			}
			want := map[string]string{"f/a": "1", "f/b": "own", "f/empty": "", "f/later": "4"}
			check := func(when string) error {
				for k, w := range want {
					v, err := tx.Get([]byte(k))
					if w == "-" {
						if !errors.Is(err, kv.ErrNotFound) {
							return fmt.Errorf("%s: Get(%s) = %q, %v; want ErrNotFound", when, k, v, err)
						}
						if has, err := tx.Has([]byte(k)); has || err != nil {
							return fmt.Errorf("%s: Has(%s) = %v, %v", when, k, has, err)
						}
						continue
					}
					if err != nil || string(v) != w || v == nil {
						return fmt.Errorf("%s: Get(%s) = %q (nil %v), %v; want %q", when, k, v, v == nil, err, w)
					}
				}
				if _, err := tx.Get([]byte("f/none")); !errors.Is(err, kv.ErrNotFound) {
					return fmt.Errorf("%s: absent key: %v", when, err)
				}
				return nil
			}
			if err := check("prefetched"); err != nil {
				return err
			}
			tx.Set([]byte("f/a"), []byte("new"))
			tx.Delete([]byte("f/empty"))
			want["f/a"], want["f/empty"] = "new", "-"
			if err := check("after own writes"); err != nil {
				return err
			}
			if err := tx.Scan([]byte("f/"), true, func(k, v []byte) error { return nil }); err != nil {
				return err
			}
			return check("after a scan")
		})
		if err != nil {
			t.Fatal(err)
		}
		e.View(func(r kv.Reader) error {
			if v, err := r.Get([]byte("f/a")); err != nil || string(v) != "new" {
				t.Errorf("committed f/a = %q, %v", v, err)
			}
			return nil
		})
	})
}
