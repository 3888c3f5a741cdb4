package peer

import (
	"bytes"
	"encoding/xml"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// nsPing qualifies XEP-0199 pings.
const nsPing = "urn:xmpp:ping"

// Element is a top-level element read from a stream, copied out of the
// framer's buffer so that it can be kept.
type Element struct {
	// Kind is how the framer classified the element: wire.Message,
	// wire.DialbackResult, wire.StreamError…
	Kind wire.Kind
	// Name and NS are the element's local name and namespace.
	Name, NS string
	// To, From, Type, ID and Lang are the start tag's attributes, decoded.
	To, From, Type, ID, Lang string
	// Raw is the element's exact bytes.
	Raw string
}

// ElementOf copies el out of the framer's buffer.
func ElementOf(el *wire.Element) Element {
	return Element{
		Kind: el.Kind, Name: string(el.Local), NS: string(el.NS),
		To: string(el.To), From: string(el.From), Type: string(el.Type), ID: string(el.ID), Lang: string(el.Lang),
		Raw: string(el.Raw),
	}
}

// String returns the raw XML.
func (e Element) String() string { return e.Raw }

// StreamErrorCondition returns the defined condition of a <stream:error/>
// ("policy-violation"), or "" if there is none (RFC 6120 §4.9.3).
func (e Element) StreamErrorCondition() string {
	cond := ""
	e.children(func(d *xml.Decoder, t xml.StartElement) bool {
		if t.Name.Space == wire.NSStreamError && t.Name.Local != "text" {
			cond = t.Name.Local
			return false
		}
		return true
	})
	return cond
}

// StanzaError returns the type attribute, the defined condition and the text
// of the <error/> child of an error stanza (RFC 6120 §8.3.2); all are "" when
// there is none.
func (e Element) StanzaError() (typ, cond, text string) {
	d := xml.NewDecoder(strings.NewReader(e.Raw))
	depth := 0
	inError := false
	for {
		tok, err := d.Token()
		if err != nil {
			return typ, cond, text
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 2 && t.Name.Local == "error":
				inError = true
				for _, a := range t.Attr {
					if a.Name.Local == "type" {
						typ = a.Value
					}
				}
			case depth == 3 && inError && t.Name.Space == wire.NSStanzaError && t.Name.Local == "text":
				var s string
				if d.DecodeElement(&s, &t) == nil {
					text = s
				}
				depth--
			case depth == 3 && inError && t.Name.Space == wire.NSStanzaError && cond == "":
				cond = t.Name.Local
			}
		case xml.EndElement:
			if depth == 2 {
				inError = false
			}
			depth--
		}
	}
}

// Body returns the text of a message's <body/>.
func (e Element) Body() string {
	body := ""
	e.children(func(d *xml.Decoder, t xml.StartElement) bool {
		if t.Name.Local != "body" {
			return true
		}
		d.DecodeElement(&body, &t)
		return false
	})
	return body
}

// IsPing reports whether e is an XEP-0199 ping request.
func (e Element) IsPing() bool {
	if e.Name != "iq" || e.Type != "get" {
		return false
	}
	ping := false
	e.children(func(_ *xml.Decoder, t xml.StartElement) bool {
		ping = t.Name.Space == nsPing && t.Name.Local == "ping"
		return !ping
	})
	return ping
}

// children calls fn with each child of the root element, in order, until
// it returns false. fn may consume the child with the decoder.
func (e Element) children(fn func(d *xml.Decoder, t xml.StartElement) bool) {
	d := xml.NewDecoder(strings.NewReader(e.Raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 1 {
				offset := d.InputOffset()
				if !fn(d, t) {
					return
				}
				if d.InputOffset() != offset {
					continue // fn read the whole child
				}
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

// Stanza is a message, presence or iq stanza: built to be sent (Message,
// Presence, IQ, Ping, BigMessage), or received and kept by a Server.
type Stanza struct {
	Element
	// Pair is the domain pair of a received stanza, "from→to", as
	// authorized on the stream it came on; "" for a stanza built here.
	Pair string
	// At is when a received stanza was kept.
	At time.Time
}

// Message returns a chat message with a body.
func Message(from, to, id, body string) Stanza {
	return build(wire.Message, "message", from, to, id, "chat", "<body>"+Escape(body)+"</body>")
}

// BigMessage returns a chat message whose body is size bytes long.
func BigMessage(from, to, id string, size int) Stanza {
	return Message(from, to, id, strings.Repeat("x", size))
}

// Presence returns a presence stanza; typ "" is available presence,
// "subscribe" and "subscribed" are subscription requests and approvals
// (RFC 6121 §3).
func Presence(from, to, id, typ string) Stanza {
	return build(wire.Presence, "presence", from, to, id, typ, "")
}

// IQ returns an iq stanza of type typ: a disco#info query (XEP-0030) for a
// request, empty for a result.
func IQ(from, to, id, typ string) Stanza {
	payload := ""
	if typ == "get" || typ == "set" {
		payload = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
	}
	return build(wire.IQ, "iq", from, to, id, typ, payload)
}

// Ping returns an XEP-0199 ping: an iq get whose answer is an empty result.
func Ping(from, to, id string) Stanza {
	return build(wire.IQ, "iq", from, to, id, "get", "<ping xmlns='"+nsPing+"'/>")
}

// result returns the empty iq result answering st.
func result(st Stanza) Stanza {
	return build(wire.IQ, "iq", st.To, st.From, st.ID, "result", "")
}

// iqError returns the iq error answering st with a cancel-type condition
// (RFC 6120 §8.3).
func iqError(st Stanza, cond string) Stanza {
	return build(wire.IQ, "iq", st.To, st.From, st.ID, "error",
		"<error type='cancel'><"+cond+" xmlns='"+wire.NSStanzaError+"'/></error>")
}

func build(kind wire.Kind, name, from, to, id, typ, payload string) Stanza {
	var b strings.Builder
	b.WriteString("<" + name + " from='" + Escape(from) + "' to='" + Escape(to) + "' id='" + Escape(id) + "'")
	if typ != "" {
		b.WriteString(" type='" + Escape(typ) + "'")
	}
	if payload == "" {
		b.WriteString("/>")
	} else {
		b.WriteString(">" + payload + "</" + name + ">")
	}
	return Stanza{Element: Element{Kind: kind, Name: name, NS: wire.NSServer,
		From: from, To: to, ID: id, Type: typ, Raw: b.String()}}
}

// Escape returns s escaped as XML character data or as an attribute value
// between single or double quotes, exactly as encoding/xml.EscapeText does.
// Text with nothing to escape, the usual case, is returned as it is.
func Escape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '&' || c == '<' || c == '>' || c == '\'' || c == '"' {
			var b bytes.Buffer
			xml.EscapeText(&b, []byte(s))
			return b.String()
		}
	}
	return s
}

// DomainOf returns the domainpart of a JID in dialback's normal form
// (dialback.Domain), or "" if addr is not a JID.
func DomainOf(addr string) string {
	j, err := jid.Parse(addr)
	if err != nil {
		return ""
	}
	d, err := dialback.Domain(j.Domainpart())
	if err != nil {
		return ""
	}
	return d
}

// domainBytes returns the domainpart of a JID as written, without
// validating it: what is left of addr without its resourcepart (from the
// first '/') and its localpart (up to the '@', which a localpart cannot
// contain). It does not allocate.
func domainBytes(addr []byte) []byte {
	if i := bytes.IndexByte(addr, '/'); i >= 0 {
		addr = addr[:i]
	}
	if i := bytes.IndexByte(addr, '@'); i >= 0 {
		addr = addr[i+1:]
	}
	return addr
}
