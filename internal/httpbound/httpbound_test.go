package httpbound

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// rateServer is a real server whose routes read the whole body behind
// BodyRate(1 KiB/s over 200 ms, /skip left alone) and answer 200 with
// the byte count, or 408 with the read error. Each handler's read error
// is also sent on errs.
func rateServer(t *testing.T) (addr string, errs chan error) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	e := gin.New()
	e.Use(BodyRate(1<<10, 200*time.Millisecond, 10*time.Second, "/skip"))
	errs = make(chan error, 16)
	read := func(c *gin.Context) {
		n, err := io.Copy(io.Discard, c.Request.Body)
		errs <- err
		if err != nil {
			c.String(http.StatusRequestTimeout, "%v", err)
			return
		}
		c.String(http.StatusOK, "%d", n)
	}
	e.POST("/read", read)
	e.POST("/skip", read)
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	return strings.TrimPrefix(hs.URL, "http://"), errs
}

// TestBodyRate: a body sent at once is read whole; one trickling 20
// bytes a second is cut with ErrTooSlow within two 200 ms windows; one
// that sends nothing after its headers is cut within two windows too
// (its Read ends at the read deadline, past the window: ErrTooSlow); a route BodyRate skips is not cut.
func TestBodyRate(t *testing.T) {
	addr, errs := rateServer(t)
	t.Run("fast", func(t *testing.T) {
		body := bytes.Repeat([]byte("x"), 100<<10)
		resp, err := http.Post("http://"+addr+"/read", "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != fmt.Sprint(len(body)) {
			t.Errorf("fast body: %s %q", resp.Status, b)
		}
		if err := <-errs; err != nil {
			t.Errorf("fast body: read error %v", err)
		}
	})
	for _, tc := range []struct {
		name    string
		trickle bool
		want    error
	}{
		{"trickle", true, ErrTooSlow},
		{"silent", false, ErrTooSlow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialPost(t, addr, "/read", 1000, tc.trickle)
			start := time.Now()
			select {
			case err := <-errs:
				took := time.Since(start)
				if !errors.Is(err, tc.want) || took > time.Second {
					t.Errorf("read error %v after %s, want %v within two windows", err, took, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the slow body was not cut in 5 s")
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("answer %s, want 408", resp.Status)
			}
		})
	}
	t.Run("skipped route", func(t *testing.T) {
		dialPost(t, addr, "/skip", 1000, true)
		select {
		case err := <-errs:
			t.Errorf("a skipped route's body was cut: %v", err)
		case <-time.After(time.Second):
		}
	})
}

// dialPost opens a connection and posts headers announcing n bytes to
// path, then a byte every 50 ms when trickle is set, else nothing.
func dialPost(t *testing.T, addr, path string, n int, trickle bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", path, n)
	if trickle {
		go func() {
			for range n {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	return c
}

// TestLimitListener: with a cap of 2, a third connection is not served
// while two are held open, and is served once one of them closes.
func TestLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(LimitListener(ln, 2))
	t.Cleanup(func() { srv.Close() })
	get := func(c net.Conn, wait time.Duration) error {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	var held []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		err = get(c, 500*time.Millisecond)
		if i < 2 && err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if i == 2 && err == nil {
			t.Fatal("a third connection was served over the cap of 2")
		}
	}
	held[0].Close()
	held[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(held[2]), nil)
	if err != nil {
		t.Fatalf("the third connection, once one closed: %v", err)
	}
	resp.Body.Close()
}

// TestMaxConns: half the descriptors left after 64, from 16 to 4096.
func TestMaxConns(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{{400, 168}, {1024, 480}, {100, 18}, {64, 16}, {10, 16}, {1 << 20, 4096}} {
		if got := MaxConns(tc.nofile); got != tc.want {
			t.Errorf("MaxConns(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}

// TestRefusal: an upload of 32 MiB refused by its headers, before any
// of its body is read, reaches the client as the 413 written, in each of
// 10 tries; a client that stops sending gets the answer at once and is
// let go after two idle seconds (not sooner: the linger is what lets a
// client still writing read its answer).
func TestRefusal(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after := Refusal(w, r.Body)
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Length", "8")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "too big\n")
		after()
	})
	hs := httptest.NewServer(refuse)
	t.Cleanup(hs.Close)
	body := bytes.Repeat([]byte("x"), 32<<20)
	for i := range 10 {
		resp, err := http.Post(hs.URL, "application/x-tar", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("try %d: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too big\n" {
			t.Fatalf("try %d: %s %q", i+1, resp.Status, b)
		}
	}
	t.Run("stalled client", func(t *testing.T) {
		c := dialPost(t, strings.TrimPrefix(hs.URL, "http://"), "/", 1<<20, false)
		start := time.Now()
		c.SetReadDeadline(start.Add(10 * time.Second))
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("answer %v, %v", resp, err)
		}
		io.Copy(io.Discard, r)
		if took := time.Since(start); took < lingerIdle || took > lingerIdle+2*time.Second {
			t.Errorf("connection closed after %s, want after the %s idle linger", took, lingerIdle)
		}
	})
}
