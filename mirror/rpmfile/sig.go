package rpmfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Errors of signature checks; each *SignatureError wraps one.
var (
	// ErrUnsigned: the package carries no OpenPGP signature of its
	// header that VerifySignature can check.
	ErrUnsigned = errors.New("rpm not signed")
	// ErrUnknownKey: signed, but by none of the keys trusted.
	ErrUnknownKey = errors.New("rpm signed by an unknown key")
	// ErrBadSignature: signed by a trusted key, and the signature does
	// not verify: the header was altered after signing (or the signature
	// was).
	ErrBadSignature = errors.New("rpm signature does not verify")
)

// SignatureError says why a package's signature is refused.
type SignatureError struct {
	Err error // ErrUnsigned, ErrUnknownKey or ErrBadSignature
	Msg string
}

func (e *SignatureError) Error() string { return e.Msg }
func (e *SignatureError) Unwrap() error { return e.Err }

// headerSig is one OpenPGP signature packet of the signature header.
type headerSig struct {
	tag    int
	packet []byte
}

func (s headerSig) tagName() string {
	if s.tag == sigTagRSA {
		return "RSAHEADER"
	}
	return "DSAHEADER"
}

// Keyring is a set of trusted OpenPGP public keys.
type Keyring struct {
	list openpgp.EntityList
}

// MaxKeySize bounds one armored or binary key file.
const MaxKeySize = 1 << 20

// maxSigPacket bounds one signature packet: an RSA 16384 signature with
// its subpackets is under 3 KiB.
const maxSigPacket = 64 << 10

// ParseKeys reads OpenPGP public keys, armored ("-----BEGIN PGP PUBLIC
// KEY BLOCK-----", as rpm --import and dnf's gpgkey take them) or binary,
// and adds them to the ring. A key with a private part is refused: a
// mirror needs only public keys, and a secret key in its config is a leak.
func (k *Keyring) ParseKeys(b []byte) error {
	if len(b) > MaxKeySize {
		return fmt.Errorf("openpgp key: %d bytes, more than %d", len(b), MaxKeySize)
	}
	var list openpgp.EntityList
	var err error
	if bytes.Contains(b, []byte("-----BEGIN PGP")) {
		list, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	} else {
		list, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil {
		return fmt.Errorf("openpgp key: %w", err)
	}
	if len(list) == 0 {
		return errors.New("openpgp key: no key found")
	}
	for _, e := range list {
		if e.PrivateKey != nil {
			return fmt.Errorf("openpgp key %X: has a private key; give the public key only", e.PrimaryKey.Fingerprint)
		}
	}
	k.list = append(k.list, list...)
	return nil
}

// Len is the number of primary keys in the ring.
func (k *Keyring) Len() int { return len(k.list) }

// KeyIDs returns the ring's primary key ids, as rpm prints them (16 hex
// digits).
func (k *Keyring) KeyIDs() []string {
	var ids []string
	for _, e := range k.list {
		ids = append(ids, fmt.Sprintf("%016x", e.PrimaryKey.KeyId))
	}
	return ids
}

// CheckDetached verifies a detached signature (armored or binary) of
// signed, such as repomd.xml.asc of repomd.xml, against the ring.
func (k *Keyring) CheckDetached(signed, sig []byte) error {
	if len(sig) > maxSigPacket {
		return &SignatureError{Err: ErrBadSignature, Msg: fmt.Sprintf("signature of %d bytes, more than %d", len(sig), maxSigPacket)}
	}
	if bytes.Contains(sig, []byte("-----BEGIN PGP")) {
		_, err := openpgp.CheckArmoredDetachedSignature(k.list, bytes.NewReader(signed), bytes.NewReader(sig), nil)
		return k.sigError(err, sig, "signature")
	}
	_, err := openpgp.CheckDetachedSignature(k.list, bytes.NewReader(signed), bytes.NewReader(sig), nil)
	return k.sigError(err, sig, "signature")
}

// sigError turns go-crypto's verdict into a *SignatureError naming the
// key, or nil.
func (k *Keyring) sigError(err error, sig []byte, what string) error {
	if err == nil {
		return nil
	}
	id := issuer(sig)
	var serr pgperrors.SignatureError
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return &SignatureError{Err: ErrUnknownKey, Msg: fmt.Sprintf("%s by key %s, which is not one of the trusted keys (%s)", what, id, strings.Join(k.KeyIDs(), ", "))}
	case errors.As(err, &serr):
		return &SignatureError{Err: ErrBadSignature, Msg: fmt.Sprintf("%s by key %s does not verify: the signed data was altered after signing (%v)", what, id, err)}
	}
	return &SignatureError{Err: ErrBadSignature, Msg: fmt.Sprintf("%s by key %s refused: %v", what, id, err)}
}

// issuer reads the issuer key id of a signature packet, for messages;
// "?" when it cannot.
func issuer(sig []byte) string {
	var r io.Reader = bytes.NewReader(sig)
	if bytes.Contains(sig, []byte("-----BEGIN PGP")) {
		return "?" // armored: go-crypto's own error names enough
	}
	p, err := packet.Read(r)
	if err != nil {
		return "?"
	}
	if s, ok := p.(*packet.Signature); ok && s.IssuerKeyId != nil {
		return fmt.Sprintf("%016x", *s.IssuerKeyId)
	}
	return "?"
}

// Signed reports whether the signature header holds an OpenPGP signature
// of the header (RSAHEADER or DSAHEADER).
func (h *Header) Signed() bool { return len(h.sigs) > 0 }

// VerifySignature checks the header-only OpenPGP signatures rpm 4 writes
// (RSAHEADER for RSA keys, DSAHEADER for DSA, ECDSA and EdDSA ones) of the
// main header against ring: at least one must be by a key of the ring and
// verify, and none by a key of the ring may fail. It returns the key id
// that signed. The header signature covers the payload only through the
// header's payload digest: the caller must check that digest over the
// payload (PayloadSHA256), and VerifySignature refuses a header without a
// SHA-256 payload digest.
//
// Not checked: rpm 3's signatures of header and payload (the PGP and GPG
// tags; a package signed only so is refused as unsigned) and rpm 6's v6
// signatures (OPENPGP; rpm 6 still writes a v4 signature beside them in
// RSAHEADER or DSAHEADER, which is checked).
func (h *Header) VerifySignature(ring *Keyring, now time.Time) (string, error) {
	if len(h.sigs) == 0 {
		msg := "not signed: no OpenPGP header signature (RSAHEADER or DSAHEADER)"
		if len(h.legacy) > 0 {
			msg += "; only " + strings.Join(h.legacy, ", ") + ", which retraced does not check"
		}
		return "", &SignatureError{Err: ErrUnsigned, Msg: msg}
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	var firstErr error
	signer := ""
	for _, s := range h.sigs {
		if len(s.packet) == 0 {
			return "", &SignatureError{Err: ErrBadSignature, Msg: s.tagName() + " holds no binary OpenPGP signature"}
		}
		if len(s.packet) > maxSigPacket {
			return "", &SignatureError{Err: ErrBadSignature, Msg: fmt.Sprintf("%s signature of %d bytes, more than %d", s.tagName(), len(s.packet), maxSigPacket)}
		}
		_, err := openpgp.CheckDetachedSignature(ring.list, bytes.NewReader(h.main), bytes.NewReader(s.packet), cfg)
		if err == nil {
			if signer == "" {
				signer = issuer(s.packet)
			}
			continue
		}
		serr := ring.sigError(err, s.packet, s.tagName()+" signature")
		if errors.Is(serr, ErrBadSignature) {
			return "", serr // a trusted key's signature that fails: never fine
		}
		if firstErr == nil {
			firstErr = serr
		}
	}
	if signer == "" {
		return "", firstErr
	}
	if h.PayloadSHA256 == "" {
		msg := "signed header has no SHA-256 payload digest: the signature does not cover the payload"
		if h.PayloadDigestAlgo != 0 {
			msg = fmt.Sprintf("signed header's payload digest uses algorithm %d; retraced checks only SHA-256 (8)", h.PayloadDigestAlgo)
		}
		return "", &SignatureError{Err: ErrUnsigned, Msg: msg}
	}
	return signer, nil
}
