package rpmfile

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/internal/decompress/decompresstest"
)

func fixtureRPMs(t testing.TB) []string {
	t.Helper()
	m, err := filepath.Glob(fixtures.Path("repo", "Packages", "*.rpm"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no fixture RPMs: %v", err)
	}
	return m
}

// rpmQuery asks rpm itself (the reference) for a package's file list.
func rpmQuery(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILESIZES} %{FILEMODES:octal}\n]", path).Output()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v", path, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	return lines
}

func TestReadHeaderMatchesRPM(t *testing.T) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm not installed (CI installs it)")
	}
	for _, p := range fixtureRPMs(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			br, h := openRPM(t, p)
			var got []string
			for _, e := range h.Files {
				got = append(got, e.Path+" "+itoa(e.Size)+" "+octal(e.Mode))
			}
			sort.Strings(got)
			if want := rpmQuery(t, p); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("files:\n%s\nrpm says:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			nevr, err := exec.Command("rpm", "-qp", "--qf", "%{NAME} %{EPOCHNUM} %{VERSION} %{RELEASE} %{ARCH} %{PAYLOADCOMPRESSOR}", p).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join([]string{h.Name, itoa(int64(h.Epoch)), h.Version, h.Release, h.Arch, h.Compressor}, " "); got != string(nevr) {
				t.Fatalf("identity %q, rpm says %q", got, nevr)
			}
			digests, err := exec.Command("rpm", "-qp", "--qf", "%{SHA256HEADER} %{PAYLOADDIGEST}", p).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := h.HeaderSHA256 + " " + h.PayloadSHA256; got != string(digests) {
				t.Fatalf("digests %q, rpm says %q", got, digests)
			}
			if ok, err := h.VerifyHeader(); !ok || err != nil {
				t.Fatalf("VerifyHeader = %v, %v", ok, err)
			}
			hs := sha256.New()
			if _, err := io.Copy(hs, br); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(hs.Sum(nil)); got != h.PayloadSHA256 {
				t.Fatalf("payload hashes to %s, header says %s", got, h.PayloadSHA256)
			}
		})
	}
}

// xzDecoders lists the xz decoders this build has, and xzBin's when it
// is not empty.
func xzDecoders(xzBin string) []Options {
	o := []Options{{XZ: XZGo}}
	if HaveLiblzma {
		o = append(o, Options{XZ: XZLiblzma})
	}
	if xzBin != "" {
		o = append(o, Options{XZ: xzBin})
	}
	return o
}

func itoa(n int64) string   { return strconv.FormatInt(n, 10) }
func octal(m uint32) string { return strconv.FormatUint(uint64(m), 8) }

// TestWalkMatchesCpio walks every fixture payload and compares member
// names and sizes with rpm2cpio | cpio -t (the reference).
func TestWalkMatchesCpio(t *testing.T) {
	fixtures.RequireTools(t, "rpm2cpio", "cpio")
	xzBin, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("xz not installed (CI installs it)")
	}
	for _, p := range fixtureRPMs(t) {
		for _, opts := range xzDecoders(xzBin) {
			t.Run(filepath.Base(p)+"/xz="+opts.XZ, func(t *testing.T) {
				br, h := openRPM(t, p)
				pr, err := Decompress(context.Background(), br, h.Compressor, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer pr.Close()
				var got []string
				if err := Walk(pr, func(m *Member, data io.Reader) error {
					n, err := io.Copy(io.Discard, data)
					if err != nil {
						return err
					}
					if n != m.Size {
						t.Errorf("%s: read %d bytes of %d", m.Path, n, m.Size)
					}
					got = append(got, "."+m.Path)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command("sh", "-c", "rpm2cpio \"$1\" | cpio -t --quiet", "sh", p).Output()
				if err != nil {
					t.Fatal(err)
				}
				want := strings.Split(strings.TrimSpace(string(out)), "\n")
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("members:\n%s\ncpio -t:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			})
		}
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "./usr/bin/x", want: "/usr/bin/x"},
		{in: "usr/bin/x", want: "/usr/bin/x"},
		{in: "./usr//bin/./x", want: "/usr/bin/x"},
		{in: "/etc/passwd", err: "absolute"},
		{in: ".//etc/passwd", err: "absolute"},
		{in: "./../../etc/evil", err: "climbs"},
		{in: "./usr/../../x", err: "climbs"},
		{in: "./", err: "empty"},
		{in: "", err: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := CleanPath(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("CleanPath(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestTruncatedAndGarbage(t *testing.T) {
	b, err := os.ReadFile(fixtureRPMs(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 10, 96, 200, len(b) / 2} {
		_, err := walkAll(b[:n], Options{})
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%d of %d bytes: err = %v, want *FormatError", n, len(b), err)
		}
	}
}

// openRPM opens the RPM at p and reads its header; the payload is next
// in the returned reader. The file is closed when the test ends.
func openRPM(t *testing.T, p string) (*bufio.Reader, *Header) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	br := bufio.NewReader(f)
	h, err := ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	return br, h
}

// walkAll reads a whole package, the way the fuzzer does.
func walkAll(b []byte, o Options) (int, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	h, err := ReadHeader(br)
	if err != nil {
		return 0, err
	}
	pr, err := Decompress(context.Background(), br, h.Compressor, o)
	if err != nil {
		return 0, err
	}
	defer pr.Close()
	n := 0
	err = Walk(io.LimitReader(pr, 64<<20), func(m *Member, data io.Reader) error {
		n++
		_, err := io.Copy(io.Discard, data)
		return err
	})
	return n, err
}

func FuzzPackage(f *testing.F) {
	for _, p := range fixtureRPMs(f) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, o := range xzDecoders("") {
			_, _ = walkAll(b, o) // must not panic, hang or allocate without bound
		}
	})
}

func FuzzWalk(f *testing.F) {
	f.Add([]byte("070701000000010000a1ff000000000000000000000001000000000000000000000000000000000000000000000000000000000000000b00000000./usr/bin/x\x00\x00\x00\x00"))
	f.Add([]byte("07070100000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000b00000000TRAILER!!!\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Walk(bytes.NewReader(b), func(m *Member, data io.Reader) error {
			if strings.Contains(m.Path, "..") && strings.Contains("/"+m.Path+"/", "/../") {
				t.Fatalf("member path %q climbs", m.Path)
			}
			if !strings.HasPrefix(m.Path, "/") {
				t.Fatalf("member path %q not absolute", m.Path)
			}
			_, err := io.Copy(io.Discard, data)
			return err
		})
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error of another type: %T %v", err, err)
			}
		}
	})
}

// TestXZDecoders checks each xz decoder against xz itself on a fixture
// payload: the same bytes whole, a clear error when the stream is cut
// short or corrupt, and a clean Close before the end.
func TestXZDecoders(t *testing.T) {
	xzBin, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("xz not installed (CI installs it)")
	}
	var payload []byte
	for _, p := range fixtureRPMs(t) {
		br, h := openRPM(t, p)
		if h.Compressor == "xz" {
			if payload, err = io.ReadAll(br); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if payload == nil {
		t.Fatal("no xz payload among the fixtures")
	}
	cmd := exec.Command(xzBin, "-dc")
	cmd.Stdin = bytes.NewReader(payload)
	want, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(payload)
	corrupt[len(corrupt)/2] ^= 0x55
	decode := func(o Options, b []byte) ([]byte, error) {
		pr, err := Decompress(context.Background(), bytes.NewReader(b), "xz", o)
		if err != nil {
			return nil, err
		}
		defer pr.Close()
		return io.ReadAll(pr)
	}
	for _, o := range xzDecoders(xzBin) {
		t.Run(filepath.Base(o.XZ), func(t *testing.T) {
			got, err := decode(o, payload)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("whole payload: %d bytes, err %v; xz -dc gives %d bytes", len(got), err, len(want))
			}
			for name, b := range map[string][]byte{"truncated": payload[:len(payload)*2/3], "corrupt": corrupt} {
				// Truncation may surface as io.ErrUnexpectedEOF, which Walk
				// reports naming the member.
				if got, err := decode(o, b); err == nil {
					t.Errorf("%s payload: no error (%d bytes)", name, len(got))
				} else if !errors.As(err, new(*FormatError)) && !(name == "truncated" && errors.Is(err, io.ErrUnexpectedEOF)) {
					t.Errorf("%s payload: err = %v, want *FormatError", name, err)
				}
			}
			pr, err := Decompress(context.Background(), bytes.NewReader(payload), "xz", o)
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 100)
			if _, err := io.ReadFull(pr, head); err != nil || !bytes.Equal(head, want[:100]) {
				t.Fatalf("first bytes: %q, %v", head, err)
			}
			if err := pr.Close(); err != nil {
				t.Errorf("close before the end: %v", err)
			}
		})
	}
}

// TestHeaderSize: the size the signature gives is each fixture RPM's
// length on disk (what a tree sync checks when nothing else gives one).
func TestHeaderSize(t *testing.T) {
	rpms, err := filepath.Glob(fixtures.Path("repo", "Packages", "*.rpm"))
	if err != nil || len(rpms) == 0 {
		t.Fatalf("fixture RPMs: %v", err)
	}
	for _, p := range rpms {
		_, h := openRPM(t, p)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if h.Size != fi.Size() {
			t.Errorf("%s: header says %d bytes, file has %d", filepath.Base(p), h.Size, fi.Size())
		}
	}
}

// TestXZDictionaryGuard: an xz payload with a block asking for a 4 GiB
// dictionary is refused by every xz decoder before it allocates it, the
// first block when the payload is opened, a later one when it is reached,
// with a *FormatError saying so.
func TestXZDictionaryGuard(t *testing.T) {
	xzBin, _ := exec.LookPath("xz")
	br, h := openRPM(t, fixtureRPMs(t)[0])
	pr, err := Decompress(context.Background(), br, h.Compressor, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cpio, err := io.ReadAll(pr)
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	multi := decompresstest.XZ(t, cpio, 4<<10)
	blocks := decompresstest.XZBlocks(t, multi)
	if len(blocks) < 2 {
		t.Fatalf("%d blocks, want 2 or more", len(blocks))
	}
	walk := func(payload []byte, o Options) (int, error) {
		pr, err := Decompress(context.Background(), bytes.NewReader(payload), "xz", o)
		if err != nil {
			return 0, err
		}
		defer pr.Close()
		n := 0
		return n, Walk(pr, func(*Member, io.Reader) error { n++; return nil })
	}
	for _, o := range xzDecoders(xzBin) {
		for _, at := range []int{blocks[0], blocks[len(blocks)-1]} {
			t.Run(fmt.Sprintf("%s/block at %d", filepath.Base(o.XZ), at), func(t *testing.T) {
				if n, err := walk(multi, o); err != nil || n == 0 {
					t.Fatalf("good payload: %d members, %v", n, err)
				}
				_, err := walk(decompresstest.WithXZDict(t, multi, 40, at), o)
				var fe *FormatError
				want := fmt.Sprintf("xz block at byte %d needs a 4095 MiB dictionary, more than the 256 MiB allowed", at)
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want a *FormatError saying %q", err, want)
				}
			})
		}
	}
}
