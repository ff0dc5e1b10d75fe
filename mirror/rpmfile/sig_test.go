package rpmfile

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/retraced/retraced/fixtures"
)

// signedRing is the keyring of repo-signed's two trusted keys.
func signedRing(t testing.TB) *Keyring {
	t.Helper()
	k := new(Keyring)
	for _, name := range []string{"rsa.asc", "ed25519.asc"} {
		if err := k.ParseKeys([]byte(fixtures.Key(t, name))); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// TestVerifySignature: each package of repo-signed against rpm -K's
// verdict. The payload-altered one passes here (its header is intact: only
// the payload digest, which the caller checks while streaming, tells);
// the others fail with their error.
func TestVerifySignature(t *testing.T) {
	ring := signedRing(t)
	want := map[string]error{
		"counter-1.0-1.x86_64.rpm": ErrUnsigned,
		"counter-1.1-1.x86_64.rpm": ErrUnknownKey,
		"greeter-1.1-1.x86_64.rpm": ErrBadSignature,
		"crashme-1.1-1.x86_64.rpm": nil, // payload altered
	}
	for _, v := range fixtures.SignedPackages(t) {
		t.Run(v.File, func(t *testing.T) {
			f, err := os.Open(fixtures.Path("repo-signed", "Packages", v.File))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, err := ReadHeader(bufio.NewReader(f))
			if err != nil {
				t.Fatal(err)
			}
			signer, err := h.VerifySignature(ring, time.Now())
			wantErr, special := want[v.File]
			switch {
			case special && wantErr != nil:
				if !errors.Is(err, wantErr) || v.OK {
					t.Fatalf("%v, want %v (rpm -K: %s)", err, wantErr, v.RPM)
				}
			case err != nil || len(signer) != 16:
				t.Fatalf("signer %q, %v (rpm -K: %s)", signer, err, v.RPM)
			}
		})
	}
	// An empty ring trusts nothing.
	h := readSigned(t, "crashme-1.0-1.x86_64.rpm")
	if _, err := h.VerifySignature(new(Keyring), time.Now()); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("empty ring: %v", err)
	}
}

func readSigned(t testing.TB, name string) *Header {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path("repo-signed", "Packages", name))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestParseKeys: a key file is public keys only: a secret key, junk,
// nothing or too much is refused.
func TestParseKeys(t *testing.T) {
	e, err := openpgp.NewEntity("secret", "", "secret@retraced.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var secret bytes.Buffer
	w, _ := armor.Encode(&secret, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, b := range [][]byte{secret.Bytes(), nil, []byte("not a key"), bytes.Repeat([]byte("x"), MaxKeySize+1)} {
		if err := new(Keyring).ParseKeys(b); err == nil {
			t.Errorf("%.40q accepted as a key", b)
		}
	}
	var pub bytes.Buffer
	w, _ = armor.Encode(&pub, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	k := new(Keyring)
	if err := k.ParseKeys(pub.Bytes()); err != nil || k.Len() != 1 {
		t.Fatalf("its public half: %v", err)
	}
}

// FuzzVerifySignature: hostile headers and signatures never panic, and
// never verify unless unchanged.
func FuzzVerifySignature(f *testing.F) {
	matches, _ := filepath.Glob(fixtures.Path("repo-signed", "Packages", "*.rpm"))
	for _, p := range matches {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 8192)])
	}
	ring := signedRing(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		_, _ = h.VerifySignature(ring, time.Now())
	})
}
