package s2s

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/fedrelay/fedrelay/dialback"
)

// Namespaces of stream negotiation (RFC 6120 §5, §6; XEP-0288).
const (
	NSTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBidi      = "urn:xmpp:bidi"
	NSBidiFeat  = "urn:xmpp:features:bidi"
	NSLimits    = "urn:xmpp:stream-limits:0" // XEP-0478
	NSSM        = "urn:xmpp:sm:3"            // XEP-0198
	nsPing      = "urn:xmpp:ping"
	langDefault = "en"
)

// features is what a peer's <stream:features/> offers us.
type features struct {
	StartTLS         bool
	StartTLSRequired bool
	// Mechanisms is nil when no <mechanisms/> was offered and empty when it
	// was offered empty ("your certificate is not acceptable").
	Mechanisms     []string
	Dialback       bool // urn:xmpp:features:dialback
	DialbackErrors bool
	// Bidi is XEP-0288 bidirectional streams, offered in either namespace:
	// urn:xmpp:features:bidi, or urn:xmpp:bidi as ejabberd 24.10 to 24.12
	// offer it (ejabberd #4300).
	Bidi bool
	// MaxBytes and IdleSeconds are the peer's stream limits (XEP-0478),
	// zero when not advertised.
	MaxBytes    int
	IdleSeconds int
	// SM: the peer offers XEP-0198 stream management (urn:xmpp:sm:3).
	SM bool
	// Required lists required features we cannot do, for
	// unsupported-feature.
	Unknown []string
}

// External reports whether SASL EXTERNAL is offered.
func (f *features) External() bool {
	for _, m := range f.Mechanisms {
		if m == "EXTERNAL" {
			return true
		}
	}
	return false
}

// parseFeatures reads a <stream:features/> element. The element's own prefix
// is bound on the stream header, which is not part of raw; encoding/xml
// tolerates that, and the children carry their own namespaces.
func parseFeatures(raw []byte) (*features, error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = true
	f := &features{}
	depth := 0
	var path [3]xml.Name
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth <= len(path) {
				path[depth-1] = t.Name
			}
			switch {
			case depth == 2 && t.Name.Space == NSTLS && t.Name.Local == "starttls":
				f.StartTLS = true
			case depth == 3 && path[1] == (xml.Name{Space: NSTLS, Local: "starttls"}) && t.Name.Local == "required":
				f.StartTLSRequired = true
			case depth == 2 && t.Name.Space == NSSASL && t.Name.Local == "mechanisms":
				f.Mechanisms = []string{}
			case depth == 2 && t.Name.Space == dialback.NSFeature && t.Name.Local == "dialback":
				f.Dialback = true
			case depth == 2 && t.Name.Space == NSSM && t.Name.Local == "sm":
				f.SM = true
			case depth == 2 && (t.Name.Space == NSBidiFeat || t.Name.Space == NSBidi) && t.Name.Local == "bidi":
				f.Bidi = true
			case depth == 3 && path[1] == (xml.Name{Space: dialback.NSFeature, Local: "dialback"}) && t.Name.Local == "errors":
				f.DialbackErrors = true
			case depth == 3 && path[1] == (xml.Name{Space: NSSASL, Local: "mechanisms"}) && t.Name.Local == "mechanism":
				var m string
				if err := d.DecodeElement(&m, &t); err != nil {
					return nil, err
				}
				depth--
				f.Mechanisms = append(f.Mechanisms, strings.ToUpper(strings.TrimSpace(m)))
			case depth == 3 && path[1] == (xml.Name{Space: NSLimits, Local: "limits"}) &&
				(t.Name.Local == "max-bytes" || t.Name.Local == "idle-seconds"):
				var v string
				if err := d.DecodeElement(&v, &t); err != nil {
					return nil, err
				}
				depth--
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || n < 0 {
					continue // not a count: as if not advertised
				}
				if t.Name.Local == "max-bytes" {
					f.MaxBytes = n
				} else {
					f.IdleSeconds = n
				}
			case depth == 3 && t.Name.Local == "required" && path[1].Space != NSTLS:
				f.Unknown = append(f.Unknown, path[1].Space+" "+path[1].Local)
			}
		case xml.EndElement:
			depth--
		}
	}
	return f, nil
}

// saslAuth is an <auth/> element (RFC 6120 §6.4.2).
type saslAuth struct {
	Mechanism string
	// AuthzID is the decoded authorization identity; "" when the response
	// was empty ("=") or absent.
	AuthzID string
}

var errBadAuth = errors.New("malformed SASL auth element")

// parseAuth reads <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'
// mechanism='…'>base64</auth>.
func parseAuth(raw []byte) (saslAuth, error) {
	var v struct {
		XMLName   xml.Name
		Mechanism string `xml:"mechanism,attr"`
		Text      string `xml:",chardata"`
	}
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = true
	if err := d.Decode(&v); err != nil || v.XMLName.Space != NSSASL || v.XMLName.Local != "auth" {
		return saslAuth{}, errBadAuth
	}
	a := saslAuth{Mechanism: strings.ToUpper(v.Mechanism)}
	text := strings.TrimSpace(v.Text)
	if text == "" || text == "=" {
		return a, nil
	}
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return saslAuth{}, errBadAuth
	}
	a.AuthzID = string(b)
	return a, nil
}
