package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
)

// TestServeRefusesOpenAdmin: serve will not listen on a non-loopback
// address with no admin_token, unless told --insecure-open-admin; with a
// token, or on loopback, it starts.
func TestServeRefusesOpenAdmin(t *testing.T) {
	cfg := testConfig(t)
	_, _, err := run(t, "--data", cfg.Data, "serve", "--listen", "0.0.0.0:0")
	if !errors.Is(err, ErrOpenAdmin) || !strings.Contains(err.Error(), "--insecure-open-admin") {
		t.Fatalf("serve on 0.0.0.0 with no token: %v, want ErrOpenAdmin naming the flag", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, serverFile)); !os.IsNotExist(err) {
		t.Fatalf("a refused serve left %s: %v", serverFile, err)
	}
	// Behind a reverse proxy on loopback, the world reaches it too.
	proxied := testConfig(t)
	proxied.TrustedProxies = []string{"127.0.0.1"}
	if err := Run(context.Background(), proxied); !errors.Is(err, ErrOpenAdmin) || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Fatalf("serve behind trusted_proxies with no token: %v, want ErrOpenAdmin naming trusted_proxies", err)
	}
	for name, c := range map[string]func(*Config){
		"insecure-open-admin": func(c *Config) { c.InsecureOpenAdmin = true },
		"admin_token":         func(c *Config) { c.AdminToken = "s3cret" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Listen = "0.0.0.0:0"
			c(&cfg)
			startServe(t, cfg)
		})
	}
}

// TestAPISources: a source added over the API is, by default
// (api_sources = "public"), refused when it is a local path, a file://
// URL, or a host with a loopback, private or link-local address, and
// nothing is added; api_sources = "private" allows the addresses and
// still refuses local paths.
func TestAPISources(t *testing.T) {
	repo := fixtures.NewServer(fixtures.FS("repo")).Start(t) // http://127.0.0.1:PORT
	port := repo[strings.LastIndexByte(repo, ':')+1:]
	post := func(t *testing.T, url, name, src string) (int, string) {
		b, _ := json.Marshal(map[string]string{"name": name, "url": src})
		resp, err := http.Post(url+"/api/v1/mirrors", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	refusedEverywhere := []string{fixtures.Path("repo"), "file://" + fixtures.Path("repo")}
	private := []string{repo, "http://localhost:" + port + "/", "http://[::1]:" + port + "/",
		"http://169.254.169.254/latest/", "http://10.1.2.3/repo/", "http://192.168.0.1/", "http://100.64.0.1/"}

	t.Run("public", func(t *testing.T) {
		cfg := testConfig(t)
		url := startServe(t, cfg)
		for i, src := range append(refusedEverywhere, private...) {
			code, body := post(t, url, "s"+string(rune('a'+i)), src)
			if code != http.StatusBadRequest || !strings.Contains(body, "api_sources") {
				t.Errorf("%s: %d %s, want 400 naming api_sources", src, code, body)
			}
		}
		var views []map[string]any
		getJSON(t, url+"/api/v1/mirrors", &views)
		if len(views) != 1 {
			t.Fatalf("sources after refusals: %v", views)
		}
	})
	t.Run("private", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.APISources = "private"
		url := startServe(t, cfg)
		for i, src := range refusedEverywhere {
			if code, body := post(t, url, "l"+string(rune('a'+i)), src); code != http.StatusBadRequest {
				t.Errorf("%s: %d %s, want 400", src, code, body)
			}
		}
		if code, body := post(t, url, "loopback", repo); code != http.StatusCreated {
			t.Errorf("%s with api_sources = private: %d %s, want 201", repo, code, body)
		}
	})
}

// testCA makes a CA and a certificate for 127.0.0.1 signed by it, and
// writes ca.pem, cert.pem and key.pem to dir.
func testCA(t *testing.T, dir, cn string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "retraced test CA " + cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// withCA runs name with args in a private mount namespace where the
// system's CA bundle is the test CA's (gdb and debuginfod-find use
// libcurl with GnuTLS, which reads no CA from the environment).
func withCA(t *testing.T, ca string, env []string, name string, args ...string) ([]byte, error) {
	t.Helper()
	const bundle = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(bundle); err != nil {
		t.Skipf("no %s to stand the test CA in for: %v", bundle, err)
	}
	unshare := []string{"--mount"}
	if os.Getuid() != 0 {
		unshare = append(unshare, "--map-root-user")
	}
	script := `mount --bind "$0" ` + bundle + ` && exec "$@"`
	cmd := exec.Command("unshare", append(append(unshare, "sh", "-c", script, ca, name), args...)...)
	cmd.Env = env
	return cmd.CombinedOutput()
}

// TestTLSServe: with tls_cert and tls_key, serve speaks HTTPS only;
// debuginfod-find and gdb, trusting the test CA, fetch an executable and
// a whole backtrace's debuginfo from it; after the files are replaced by
// a pair from another CA, SIGHUP makes serve present the new one without
// a restart.
func TestTLSServe(t *testing.T) {
	for _, tool := range []string{"debuginfod-find", "gdb", "unshare", "eu-readelf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (CI installs it)", tool)
		}
	}
	dir := t.TempDir()
	ca, cert, key := testCA(t, dir, "one")
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = cert, key
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	url := ""
	for deadline := time.Now().Add(30 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var info serverInfo
		b, err := os.ReadFile(filepath.Join(cfg.Data, serverFile))
		if err != nil || json.Unmarshal(b, &info) != nil {
			continue
		}
		resp, err := client.Get(info.URL + "/api/v1/mirrors")
		if err != nil {
			continue
		}
		var views []map[string]any
		json.NewDecoder(resp.Body).Decode(&views)
		resp.Body.Close()
		if len(views) > 0 && views[0]["last_sync"] != nil {
			url = info.URL
		}
	}
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("serve with TLS did not come up synced: %q", url)
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + strings.TrimPrefix(url, "https://") + "/healthz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain http answered 200: %s", body)
		}
	}

	var exe fixtures.ELFFile
	for _, e := range fixtures.ELFFiles(t) {
		if e.NEVRA == "crashme-1.0-1.x86_64" && e.Path == "/usr/bin/crashme" {
			exe = e
		}
	}
	home := t.TempDir()
	env := []string{"HOME=" + home, "DEBUGINFOD_URLS=" + url, "DEBUGINFOD_CACHE_PATH=" + filepath.Join(home, "cache"),
		"DEBUGINFOD_TIMEOUT=20", "PATH=" + os.Getenv("PATH")}
	out, err := withCA(t, ca, env, "debuginfod-find", "executable", exe.BuildID)
	if err != nil {
		t.Fatalf("debuginfod-find over TLS: %v\n%s", err, out)
	}
	path := strings.TrimSpace(string(out))
	notes, err := exec.Command("eu-readelf", "-n", path).CombinedOutput()
	if err != nil || !strings.Contains(string(notes), "Build ID: "+exe.BuildID) {
		t.Fatalf("debuginfod-find's file %s: %v\n%s", path, err, notes)
	}
	// Without the test CA, the same client refuses the server.
	cmd := exec.Command("debuginfod-find", "executable", exe.BuildID)
	cmd.Env = append(env[1:], "HOME="+t.TempDir(), "DEBUGINFOD_CACHE_PATH="+filepath.Join(t.TempDir(), "cache"))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("debuginfod-find trusted the test server without its CA:\n%s", out)
	}

	core := fixtures.CoreFile(t, "crashme-1.0.core.zst")
	out, err = withCA(t, ca, append(env[1:], "HOME="+t.TempDir(), "DEBUGINFOD_CACHE_PATH="+filepath.Join(t.TempDir(), "cache")),
		"gdb", "-batch", "-nx", "-iex", "set debuginfod enabled on", "-ex", "bt", "-c", core)
	if err != nil || !strings.Contains(string(out), "crashme_dispatch") || !strings.Contains(string(out), "crashme.c:") {
		t.Fatalf("gdb over TLS: %v\n%s", err, out)
	}

	// SIGHUP: the files now hold another CA's pair; serve presents it.
	ca2, cert2, key2 := testCA(t, t.TempDir(), "two")
	for src, dst := range map[string]string{cert2: cert, key2: key} {
		b, _ := os.ReadFile(src)
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	issuer := func() string {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Issuer.CommonName
	}
	if got := issuer(); got != "retraced test CA one" {
		t.Fatalf("before SIGHUP the server presents a certificate of %q", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for issuer() != "retraced test CA two" {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err = withCA(t, ca2, append(env[1:], "HOME="+t.TempDir(), "DEBUGINFOD_CACHE_PATH="+filepath.Join(t.TempDir(), "cache")),
		"debuginfod-find", "executable", exe.BuildID)
	if err != nil {
		t.Fatalf("debuginfod-find with the second CA after SIGHUP: %v\n%s", err, out)
	}
}

// TestMirrorAddGPGKey: `mirror add --gpg-key` (a file, and a URL) turns
// gpgcheck on; the sync exits 1 naming the refused packages; `mirror list
// --json` and, while serve runs, the status page show gpgcheck and each
// refused package with its reason.
func TestMirrorAddGPGKey(t *testing.T) {
	cfg := testConfig(t)
	repo := fixtures.NewServer(fixtures.FS("repo-signed")).Start(t)
	keys := fixtures.NewServer(fixtures.FS("keys")).Start(t)
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "signed", repo, "--gpg-key", fixtures.Path("keys", "rsa.asc"),
		"--gpg-key", strings.TrimSuffix(keys, "/")+"/ed25519.asc", "--repo-gpgcheck"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "nokey", repo, "--repo-gpgcheck"); err == nil {
		t.Fatal("--repo-gpgcheck without a key was accepted")
	}
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "secret", repo, "--gpg-key", fixtures.Path("repo-signed", "repodata", "repomd.xml")); err == nil {
		t.Fatal("a file that is no key was accepted")
	}
	out, errOut, err := run(t, "--data", cfg.Data, "mirror", "sync", "signed")
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 || !strings.Contains(out, "4 new") || !strings.Contains(out, "4 failed") {
		t.Fatalf("sync: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"counter-1.0-1.x86_64.rpm: not signed", "crashme-1.1-1.x86_64.rpm: payload digest", "does not verify"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("sync output lacks %q:\n%s%s", want, out, errOut)
		}
	}
	out, _, err = run(t, "--data", cfg.Data, "mirror", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var views []struct {
		Name     string
		GPGCheck bool     `json:"gpgcheck"`
		Keys     []string `json:"gpg_keys"`
		Failed   []struct{ Location, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 {
		t.Fatalf("mirror list --json: %v\n%s", err, out)
	}
	v := views[0]
	if !v.GPGCheck || len(v.Keys) != 2 || len(v.Failed) != 4 {
		t.Fatalf("mirror list --json: %+v", v)
	}

	// Through serve's API (the fixture server is on loopback: private).
	cfg.APISources = "private"
	url := startServe(t, cfg)
	if out, _, err := run(t, "--data", cfg.Data, "mirror", "add", "signed2", repo, "--gpg-key", fixtures.Path("keys", "rsa.asc")); err != nil || !strings.Contains(out, "gpgcheck on") {
		t.Fatalf("add with a key through serve: %v %q", err, out)
	}
	var remote []struct {
		Name     string
		GPGCheck bool     `json:"gpgcheck"`
		Keys     []string `json:"gpg_keys"`
	}
	getJSON(t, url+"/api/v1/mirrors", &remote)
	if len(remote) != 2 || remote[1].Name != "signed2" || !remote[1].GPGCheck || len(remote[1].Keys) != 1 {
		t.Fatalf("sources through serve: %+v", remote)
	}
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, f := range v.Failed {
		if !strings.Contains(string(page), `data-refused="`+f.Location+`"`) {
			t.Errorf("the status page does not list refused %s", f.Location)
		}
	}
	if !strings.Contains(string(page), `data-gpgcheck="true"`) {
		t.Error("the status page does not say the source checks signatures")
	}
}

// TestRefusedUploadAnswered: through serve's own HTTP server (its
// timeouts, its connection cap), a 50 MB upload that /create refuses
// after its first bytes (a malformed archive, 400) and one refused by its
// Content-Length (413, over max_packed_size) get their answer 20 times of
// 20, never a connection reset.
func TestRefusedUploadAnswered(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 2 GB")
	}
	cfg := testConfig(t)
	cfg.Retrace.MaxPackedSize = 16 // MiB
	url := startServe(t, cfg)
	junk := bytes.Repeat([]byte("not an xz stream "), 1<<16) // 1.1 MB
	// tries sends 50 MB (head, then junk) to path 20 times, each on a
	// connection of its own, and counts the answers (or errors).
	tries := func(path, contentType string, head []byte, length int64) map[string]int {
		got := map[string]int{}
		for range 20 {
			parts := []io.Reader{bytes.NewReader(head)}
			for n := int64(len(head)); n < 50<<20; n += int64(len(junk)) {
				parts = append(parts, bytes.NewReader(junk))
			}
			req, _ := http.NewRequest(http.MethodPost, url+path, io.LimitReader(io.MultiReader(parts...), 50<<20))
			req.ContentLength = length
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
			if err != nil {
				got[err.Error()]++
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got[resp.Status]++
		}
		return got
	}
	for _, c := range []struct {
		name   string
		length int64
		want   int
	}{{"malformed, chunked", -1, http.StatusBadRequest}, {"too large", 50 << 20, http.StatusRequestEntityTooLarge}} {
		got := tries("/create", "application/x-xz-compressed-tar", nil, c.length)
		if got[fmt.Sprintf("%d %s", c.want, http.StatusText(c.want))] != 20 {
			t.Errorf("%s: answers of 20 tries: %v", c.name, got)
		}
	}
	// coredump2packages: an xz stream that goes wrong after its header,
	// refused while 50 MB are still on their way.
	xzHeader := []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4, 0xe6, 0xd6, 0xb4, 0x46}
	if got := tries("/api/v1/coredump2packages", "", xzHeader, -1); got["400 Bad Request"] != 20 {
		t.Errorf("coredump2packages, a malformed xz core: answers of 20 tries: %v", got)
	}
}

// TestGuessesBehindProxy: behind a reverse proxy in trusted_proxies, the
// guesses of one client (the address the proxy appends to
// X-Forwarded-For) block that client, not the others coming through the
// same proxy, and the status page names it.
func TestGuessesBehindProxy(t *testing.T) {
	cfg := testConfig(t)
	cfg.TrustedProxies = []string{"127.0.0.1"}
	cfg.AdminToken = "s3cret" // behind a proxy serve wants one
	url := startServe(t, cfg)
	task := createTask(t, url, crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"), nil))
	get := func(client, pw string) int {
		code, _, _ := httpDo(t, http.MethodGet, url+"/"+task.id, map[string]string{"X-Task-Password": pw, "X-Forwarded-For": client}, nil)
		return code
	}
	wrong := strings.Repeat("x", 32)
	for i := range 20 {
		if code := get("203.0.113.7", wrong); code != http.StatusForbidden {
			t.Fatalf("guess %d: %d, want 403", i+1, code)
		}
	}
	if code := get("203.0.113.7", task.pw); code != http.StatusTooManyRequests {
		t.Fatalf("the guesser, right password: %d, want 429", code)
	}
	if code := get("203.0.113.8", task.pw); code != http.StatusOK {
		t.Fatalf("another client behind the proxy: %d, want 200", code)
	}
	_, _, page := httpDo(t, http.MethodGet, url+"/", nil, nil)
	if !strings.Contains(page, `data-client="203.0.113.7"`) || strings.Contains(page, `data-client="127.0.0.1"`) {
		t.Fatalf("the status page does not name the blocked client 203.0.113.7 (and only it)")
	}
}

// TestSIGHUPWithoutTLS: the systemd unit's reload sends SIGHUP; serve with
// no certificate to reload carries on.
func TestSIGHUPWithoutTLS(t *testing.T) {
	cfg := testConfig(t)
	url := startServe(t, cfg)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if code := getJSON(t, url+"/healthz", nil); code != http.StatusOK {
		t.Fatalf("after SIGHUP: %d", code)
	}
}
