package retrace

import (
	"crypto/rand"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestEarlyRefusalIsRead: a 50 MB upload refused while most of it is still
// arriving gets its 4xx, never a connection reset, 20 times of 20: by its
// Content-Length (413), by its Content-Type (415), by its X-Task-Key
// (400), and as a malformed archive after its first bytes, sent chunked
// (400). Before, the server closed the connection with the body unread
// and the kernel answered the client's next segments with a reset, which
// often destroyed the 4xx before the client read it.
func TestEarlyRefusalIsRead(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 4 GB")
	}
	ts := newTestServer(t, &elfRetracer{}, testConfig()) // max_packed_size 1 MiB
	const size = 50 << 20
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	body := func() io.Reader {
		readers := make([]io.Reader, size/len(junk))
		for i := range readers {
			readers[i] = strings.NewReader(string(junk))
		}
		return io.MultiReader(readers...)
	}
	cases := []struct {
		name    string
		ct, key string
		length  int64 // -1: chunked
		want    int
	}{
		{"too large", "application/x-xz-compressed-tar", "", size, http.StatusRequestEntityTooLarge},
		{"wrong type", "application/zip", "", size, http.StatusUnsupportedMediaType},
		{"bad key, chunked", "application/x-xz-compressed-tar", "short", -1, http.StatusBadRequest},
		{"garbage, chunked", "application/x-xz-compressed-tar", "", -1, http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]int{} // "NNN Status" or the client's error
			for range 20 {
				req, err := http.NewRequest(http.MethodPost, ts.url+"/create", body())
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = c.length
				req.Header.Set("Content-Type", c.ct)
				if c.key != "" {
					req.Header.Set(HeaderTaskKey, c.key)
				}
				// A fresh connection each time.
				client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := client.Do(req)
				if err != nil {
					got[err.Error()]++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got[resp.Status]++
			}
			if got[strconv.Itoa(c.want)+" "+http.StatusText(c.want)] != 20 {
				t.Fatalf("answers of 20 tries: %v; want %d every time", got, c.want)
			}
		})
	}
}
