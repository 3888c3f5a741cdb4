package peer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
)

// NSTLS qualifies STARTTLS (RFC 6120 §5).
const NSTLS = "urn:ietf:params:xml:ns:xmpp-tls"

// NSSM is the namespace of XEP-0198 stream management.
const NSSM = "urn:xmpp:sm:3"

// NewID returns a fresh stream id: 96 random bits in hex (RFC 6120 §4.7.3
// asks for an unpredictable one; dialback keys are made with it).
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StreamError is a stream error the other side sent (RFC 6120 §4.9), read
// where something else was expected or ending a stream.
type StreamError struct {
	// Condition is the defined condition, "" if it sent none.
	Condition string
	// Raw is the <stream:error/> element as received.
	Raw string
}

// Error returns the condition and the element.
func (e *StreamError) Error() string {
	return "stream error " + e.Condition + " from the peer: " + e.Raw
}

// withText returns se with a text saying why.
func withText(se stream.Error, format string, args ...any) stream.Error {
	se.Text = append(se.Text[:0:0], struct {
		Lang  string
		Value string
	}{Value: fmt.Sprintf(format, args...)})
	return se
}

// featureNames returns the children of <stream:features/> as "namespace
// local" names.
func featureNames(raw []byte) map[string]bool {
	names := map[string]bool{}
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return names
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				names[t.Name.Space+" "+t.Name.Local] = true
			}
		case xml.EndElement:
			depth--
		}
	}
}

// appendPairKey appends the key under which streams keep an authorized pair
// for lookups that do not allocate: "from to" (a domain has no space).
func appendPairKey[T ~string | ~[]byte](dst []byte, from, to T) []byte {
	dst = append(dst, from...)
	dst = append(dst, ' ')
	return append(dst, to...)
}

func pairString(p dialback.Pair) string { return p.From + "→" + p.To }
