package dialback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"sync"
)

// redacted is what a Secret or a Key prints, logs or formats as.
const redacted = "REDACTED"

// ErrEmptySecret is returned by NewSecret for an empty secret: every key made
// from it could be recomputed by anyone.
var ErrEmptySecret = errors.New("dialback: empty secret")

// Secret makes and checks XEP-0185 dialback keys. It holds only the value
// derived from the configured secret (hex(SHA-256(secret))), never the secret
// itself, and it never prints it: String, GoString, Format and LogValue all
// give "REDACTED".
//
// Every relay instance configured with the same secret makes and accepts the
// same keys, so instances need no shared state to answer each other's
// db:verify requests.
//
// A Secret is immutable and safe for concurrent use. Build it with NewSecret;
// a nil *Secret is not usable.
type Secret struct {
	// hmacKey is the lowercase hex of SHA-256(secret), used as the HMAC key
	// in its 64-character text form, as XEP-0185 prescribes (using the 32
	// raw digest bytes is a known interop bug).
	hmacKey [sha256.Size * 2]byte

	// macs holds *keyer values, so that making a key does not allocate.
	macs *sync.Pool
}

// keyer is the reusable state for making one key.
type keyer struct {
	mac hash.Hash // HMAC-SHA256 keyed with hmacKey
	buf []byte    // the HMAC input, then its output
}

// NewSecret derives a Secret from the configured secret bytes. The caller may
// reuse or wipe secret afterwards. It fails only for an empty secret.
func NewSecret(secret []byte) (*Secret, error) {
	if len(secret) == 0 {
		return nil, ErrEmptySecret
	}
	sum := sha256.Sum256(secret)
	s := new(Secret)
	hex.Encode(s.hmacKey[:], sum[:])
	s.macs = &sync.Pool{New: func() any {
		return &keyer{mac: hmac.New(sha256.New, s.hmacKey[:]), buf: make([]byte, 0, 256)}
	}}
	return s, nil
}

// Key returns the dialback key for a stream from the Originating (sender)
// domain to the Receiving (target) domain whose stream ID, as sent by the
// Receiving server, is streamID:
//
//	hex(HMAC-SHA256(hex(SHA-256(secret)), receiving + " " + originating + " " + streamID))
//
// The domains must be given in the form both sides will later see on the
// wire; this package always uses the normalized form Parse produces.
func (s *Secret) Key(receiving, originating, streamID string) Key {
	var buf [KeyLen]byte
	return Key(s.AppendKey(buf[:0], receiving, originating, streamID))
}

// KeyLen is the length of a key made by a Secret: 64 lowercase hex digits.
const KeyLen = sha256.Size * 2

// AppendKey is like Key but appends the key's KeyLen hex digits to dst, for
// callers that write keys into a buffer without an intermediate string.
func (s *Secret) AppendKey(dst []byte, receiving, originating, streamID string) []byte {
	k := s.macs.Get().(*keyer)
	defer s.macs.Put(k)
	b := append(k.buf[:0], receiving...)
	b = append(b, ' ')
	b = append(b, originating...)
	b = append(b, ' ')
	b = append(b, streamID...)
	k.mac.Reset()
	k.mac.Write(b) // hash.Hash writes never fail
	b = k.mac.Sum(b[:0])
	dst = hex.AppendEncode(dst, b)
	if cap(b) <= 1024 {
		// Keep the buffer unless a huge stream ID grew it.
		k.buf = b[:0]
	}
	return dst
}

// Verify reports whether key is the key this Secret makes for (receiving,
// originating, streamID). Surrounding whitespace in key is ignored (peers
// pretty-print the element text) and the comparison takes constant time.
func (s *Secret) Verify(receiving, originating, streamID string, key Key) bool {
	k := strings.Trim(string(key), xmlSpace)
	var want [KeyLen]byte
	s.AppendKey(want[:0], receiving, originating, streamID)
	return hmac.Equal(want[:], []byte(k))
}

// String returns "REDACTED". The formatting methods have value receivers so
// that a dereferenced Secret is redacted too.
func (Secret) String() string { return redacted }

// GoString returns "REDACTED", so %#v does not print the derived key either.
func (Secret) GoString() string { return redacted }

// Format writes "REDACTED" for every verb, so that no fmt verb (%x, %d, …)
// reaches the fields.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer and returns "REDACTED".
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Key is a dialback key: the text of a db:result or db:verify request.
// Anyone who sees a key in time can use it on the stream it was made for, so
// it prints, formats and logs as "REDACTED"; use string(k) where the key
// itself is needed (writing it out, comparing it).
type Key string

// String returns "REDACTED", or "" for an empty key (a response carries
// none, and saying so gives nothing away).
func (k Key) String() string {
	if k == "" {
		return ""
	}
	return redacted
}

// GoString is like String.
func (k Key) GoString() string { return k.String() }

// Format writes what String returns, for every verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer and returns what String returns.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }
