package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// nsBomb is a message of about size bytes whose body nests depth
// elements, each declaring perLevel prefixes, around many small
// unprefixed elements: every name resolution walks the declarations in
// scope.
func nsBomb(depth, perLevel, size int) []byte {
	var b bytes.Buffer
	b.WriteString(`<message xmlns='jabber:server' from='a@a.test' to='b@b.test' id='x'>`)
	for d := 0; d < depth; d++ {
		b.WriteString("<x xmlns='urn:x'")
		for p := 0; p < perLevel; p++ {
			fmt.Fprintf(&b, " xmlns:p%d_%d='urn:p:%d:%d'", d, p, d, p)
		}
		b.WriteString(">")
	}
	for b.Len() < size-depth*4-12 {
		b.WriteString("<y/>")
	}
	b.WriteString(strings.Repeat("</x>", depth))
	b.WriteString("</message>")
	return b.Bytes()
}

// TestNamespaceBomb: a stanza that keeps many namespace declarations in
// scope costs time in proportion to its size, not to its size times the
// declarations: the Reader refuses more than MaxNamespaces in scope
// (policy-violation), and below that a big stanza reads in about the time
// of a plain one of its size. (Before, 62 × 31 declarations in a 250 kB
// stanza cost the relay 61 ms of CPU, about 50 times a plain stanza.)
func TestNamespaceBomb(t *testing.T) {
	read := func(st []byte) (time.Duration, error) {
		src := append([]byte(prosodyHeader), st...)
		r := wire.NewReader(bytes.NewReader(src), wire.Limits{MaxStanza: 1 << 20, MaxStanzaPreAuth: 1 << 20})
		if _, err := r.ReadHeader(); err != nil {
			return 0, err
		}
		r.SetAuthenticated(true)
		start := time.Now()
		_, err := r.Next()
		return time.Since(start), err
	}
	_, err := read(nsBomb(62, 31, 250_000))
	if !errors.Is(err, stream.PolicyViolation) {
		t.Errorf("62 × 31 declarations in scope: %v, want policy-violation", err)
	}
	plain, err := read(nsBomb(0, 0, 250_000))
	if err != nil {
		t.Fatal(err)
	}
	most, err := read(nsBomb(wire.MaxNamespaces/9, 8, 250_000)) // 8 prefixes and a default per level
	if err != nil {
		t.Fatalf("%d declarations in scope: %v", wire.MaxNamespaces, err)
	}
	t.Logf("250 kB: plain %v, with %d declarations in scope %v", plain, wire.MaxNamespaces, most)
}

// BenchmarkNamespaceBomb reads a 250 kB stanza with wire.MaxNamespaces
// declarations in scope, and a plain one of the same size: compare the two.
func BenchmarkNamespaceBomb(b *testing.B) {
	for _, bc := range []struct {
		name            string
		depth, perLevel int
	}{{"plain", 0, 0}, {"max-in-scope", wire.MaxNamespaces / 9, 8}} {
		b.Run(bc.name, func(b *testing.B) {
			src := append([]byte(prosodyHeader), nsBomb(bc.depth, bc.perLevel, 250_000)...)
			rd := bytes.NewReader(src)
			r := wire.NewReader(rd, wire.Limits{MaxStanza: 1 << 20, MaxStanzaPreAuth: 1 << 20})
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				rd.Reset(src)
				r.Reset(rd)
				if _, err := r.ReadHeader(); err != nil {
					b.Fatal(err)
				}
				r.SetAuthenticated(true)
				if _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
