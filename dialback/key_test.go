package dialback_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
)

func mustSecret(t testing.TB, s string) *dialback.Secret {
	t.Helper()
	sec, err := dialback.NewSecret([]byte(s))
	if err != nil {
		t.Fatalf("NewSecret(%q): %v", s, err)
	}
	return sec
}

// Vectors from XEP-0185 §4 and XEP-0220 §2 (recomputed in the protocol digest).
var keyVectors = []struct {
	name, secret, receiving, originating, id, key string
}{
	{
		name:   "XEP-0185",
		secret: "s3cr3tf0rd14lb4ck", receiving: "xmpp.example.com", originating: "example.org", id: "D60000229F",
		key: "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643",
	},
	{
		name:   "XEP-0220 montague as Authoritative",
		secret: "d14lb4ck43v3r", receiving: "capulet.example", originating: "montague.example", id: "417GAF25",
		key: "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d",
	},
	{
		name:   "XEP-0220 capulet as Initiating",
		secret: "s3cr3tf0rd14lb4ck", receiving: "montague.example", originating: "capulet.example", id: "D60000229F",
		key: "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3",
	},
}

func TestKeyVectors(t *testing.T) {
	for _, v := range keyVectors {
		t.Run(v.name, func(t *testing.T) {
			s := mustSecret(t, v.secret)
			if got := s.Key(v.receiving, v.originating, v.id); string(got) != v.key {
				t.Errorf("Key = %s, want %s", string(got), v.key)
			}
			if got := s.AppendKey([]byte("k="), v.receiving, v.originating, v.id); string(got) != "k="+v.key {
				t.Errorf("AppendKey = %s, want k=%s", got, v.key)
			}
			if !s.Verify(v.receiving, v.originating, v.id, dialback.Key(v.key)) {
				t.Error("Verify(vector key) = false")
			}
		})
	}
}

// The HMAC key is the 64-character hex text of SHA-256(secret). Using the 32
// raw digest bytes instead is a bug other implementations have had; it gives
// 4530485c… for the XEP-0185 vector.
func TestKeyNotRawDigest(t *testing.T) {
	v := keyVectors[0]
	sum := sha256.Sum256([]byte(v.secret))
	if got, want := hex.EncodeToString(sum[:]), "a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc"; got != want {
		t.Fatalf("SHA256(secret) = %s, want %s", got, want)
	}
	mac := hmac.New(sha256.New, sum[:])
	mac.Write([]byte(v.receiving + " " + v.originating + " " + v.id))
	buggy := hex.EncodeToString(mac.Sum(nil))
	if !strings.HasPrefix(buggy, "4530485c") {
		t.Fatalf("raw-digest key = %s, want 4530485c…", buggy)
	}
	s := mustSecret(t, v.secret)
	if got := s.Key(v.receiving, v.originating, v.id); string(got) == buggy {
		t.Errorf("Key uses the raw digest as HMAC key: %s", string(got))
	}
	if s.Verify(v.receiving, v.originating, v.id, dialback.Key(buggy)) {
		t.Error("Verify accepts the raw-digest key")
	}
}

func TestVerify(t *testing.T) {
	v := keyVectors[0]
	s := mustSecret(t, v.secret)
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{"exact", v.key, true},
		{"surrounding whitespace", "\n\t  " + v.key + " \r\n", true},
		{"uppercase", strings.ToUpper(v.key), false},
		{"truncated", v.key[:63], false},
		{"longer", v.key + "0", false},
		{"inner space", v.key[:32] + " " + v.key[32:], false},
		{"empty", "", false},
		{"other key", keyVectors[2].key, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Verify(v.receiving, v.originating, v.id, dialback.Key(tt.key)); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("other stream id", func(t *testing.T) {
		if s.Verify(v.receiving, v.originating, "D60000229G", dialback.Key(v.key)) {
			t.Error("Verify accepts a key for another stream")
		}
	})
	t.Run("domains swapped", func(t *testing.T) {
		if s.Verify(v.originating, v.receiving, v.id, dialback.Key(v.key)) {
			t.Error("Verify accepts a key for the reverse direction")
		}
	})
	t.Run("other secret", func(t *testing.T) {
		if mustSecret(t, "another").Verify(v.receiving, v.originating, v.id, dialback.Key(v.key)) {
			t.Error("Verify accepts a key made with another secret")
		}
	})
}

func TestNewSecretEmpty(t *testing.T) {
	for _, in := range [][]byte{nil, {}} {
		if _, err := dialback.NewSecret(in); !errors.Is(err, dialback.ErrEmptySecret) {
			t.Errorf("NewSecret(%q) error = %v, want ErrEmptySecret", in, err)
		}
	}
}

func TestNewSecretCopies(t *testing.T) {
	v := keyVectors[0]
	b := []byte(v.secret)
	s, err := dialback.NewSecret(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if got := s.Key(v.receiving, v.originating, v.id); string(got) != v.key {
		t.Errorf("Key after wiping the input = %s, want %s", string(got), v.key)
	}
}

// Neither the secret (nor what is derived from it) nor keys may reach a log
// or a formatted string.
func TestRedaction(t *testing.T) {
	const secret = "s3cr3tf0rd14lb4ck"
	s := mustSecret(t, secret)
	key := s.Key("b.test", "a.test", "id1")
	sum := sha256.Sum256([]byte(secret))
	derived := hex.EncodeToString(sum[:])
	el := dialback.Element{Kind: dialback.KindResult, From: "a.test", To: "b.test", Key: key}

	leaks := func(t *testing.T, out string) {
		t.Helper()
		for _, bad := range []string{secret, derived, derived[:16], string(key), string(key[:16])} {
			if strings.Contains(out, bad) {
				t.Errorf("output leaks %q: %s", bad, out)
			}
		}
		// Byte-wise verbs print numbers; look for the first bytes.
		if strings.Contains(out, fmt.Sprint([]byte(derived[:4]))[1:8]) {
			t.Errorf("output leaks derived bytes: %s", out)
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		t.Run("fmt "+verb, func(t *testing.T) {
			out := fmt.Sprintf(verb, s) + fmt.Sprintf(verb, *s) + fmt.Sprintf(verb, key) + fmt.Sprintf(verb, el) + fmt.Sprintf(verb, &el)
			leaks(t, out)
		})
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		t.Run("slog "+name, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("dialback", "secret", s, "key", key, "element", el, "any", any(s))
			out := buf.String()
			leaks(t, out)
			if !strings.Contains(out, "REDACTED") {
				t.Errorf("no redaction marker in %s", out)
			}
			if !strings.Contains(out, "a.test") {
				t.Errorf("element attributes missing from %s", out)
			}
		})
	}
	if got := dialback.Key("").String(); got != "" {
		t.Errorf("empty Key prints %q, want \"\"", got)
	}
}

func BenchmarkKey(b *testing.B) {
	s := mustSecret(b, "s3cr3tf0rd14lb4ck")
	buf := make([]byte, 0, dialback.KeyLen)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendKey(buf[:0], "montague.example", "capulet.example", "D60000229F")
	}
}
