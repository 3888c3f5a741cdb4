package demo

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// nsPing qualifies XEP-0199 pings.
const nsPing = "urn:xmpp:ping"

// Stanza is a message, presence or iq stanza: the attributes the demo needs
// and the exact bytes, as written or as received.
type Stanza struct {
	// Kind is "message", "presence" or "iq".
	Kind               string
	From, To, ID, Type string
	Raw                string
}

// Message returns a chat message with a body.
func Message(from, to, id, body string) Stanza {
	return build("message", from, to, id, "chat", "<body>"+escape(body)+"</body>")
}

// Presence returns a presence stanza; typ "" is available presence,
// "subscribe" and "subscribed" are subscription requests and approvals
// (RFC 6121 §3).
func Presence(from, to, id, typ string) Stanza {
	return build("presence", from, to, id, typ, "")
}

// Ping returns an XEP-0199 ping: an iq get whose answer is an empty
// result.
func Ping(from, to, id string) Stanza {
	return build("iq", from, to, id, "get", "<ping xmlns='"+nsPing+"'/>")
}

// result returns the empty iq result answering st.
func result(st Stanza) Stanza {
	return build("iq", st.To, st.From, st.ID, "result", "")
}

// iqError returns the iq error answering st with a cancel-type condition
// (RFC 6120 §8.3).
func iqError(st Stanza, cond string) Stanza {
	return build("iq", st.To, st.From, st.ID, "error",
		"<error type='cancel'><"+cond+" xmlns='"+wire.NSStanzaError+"'/></error>")
}

func build(kind, from, to, id, typ, payload string) Stanza {
	var b strings.Builder
	fmt.Fprintf(&b, "<%s from='%s' to='%s' id='%s'", kind, escape(from), escape(to), escape(id))
	if typ != "" {
		fmt.Fprintf(&b, " type='%s'", escape(typ))
	}
	if payload == "" {
		b.WriteString("/>")
	} else {
		fmt.Fprintf(&b, ">%s</%s>", payload, kind)
	}
	return Stanza{Kind: kind, From: from, To: to, ID: id, Type: typ, Raw: b.String()}
}

func escape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// stanzaOf copies a stanza out of the framer's buffer.
func stanzaOf(el *wire.Element) Stanza {
	return Stanza{
		Kind: string(el.Local), From: string(el.From), To: string(el.To),
		ID: string(el.ID), Type: string(el.Type), Raw: string(el.Raw),
	}
}

// domainOf returns the domainpart of a JID, "" if it is not one.
func domainOf(addr string) string {
	j, err := jid.Parse(addr)
	if err != nil {
		return ""
	}
	return j.Domainpart()
}

// contents is what the demo reads inside a stanza.
type contents struct {
	Body  string    `xml:"body"`
	Ping  *struct{} `xml:"urn:xmpp:ping ping"`
	Error *struct {
		Type  string `xml:"type,attr"`
		Inner []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"error"`
}

func (st Stanza) contents() contents {
	var c contents
	xml.Unmarshal([]byte(st.Raw), &c) // a stanza the framer accepted is well-formed
	return c
}

// Body returns the text of a message's <body/>.
func (st Stanza) Body() string { return st.contents().Body }

// IsPing reports whether st is an XEP-0199 ping request.
func (st Stanza) IsPing() bool {
	return st.Kind == "iq" && st.Type == "get" && st.contents().Ping != nil
}

// Error returns the error type, defined condition and text of an error
// stanza (RFC 6120 §8.3.2); cond is "" when st carries no error.
func (st Stanza) Error() (typ, cond, text string) {
	e := st.contents().Error
	if e == nil {
		return "", "", ""
	}
	for _, in := range e.Inner {
		if in.XMLName.Space != wire.NSStanzaError {
			continue
		}
		if in.XMLName.Local == "text" {
			text = in.Text
		} else if cond == "" {
			cond = in.XMLName.Local
		}
	}
	return e.Type, cond, text
}

// innerNames returns the local names of the root element's children in
// namespace ns, in order.
func (st Stanza) innerNames(ns string) []string {
	d := xml.NewDecoder(strings.NewReader(st.Raw))
	var names []string
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return names
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Space == ns {
				names = append(names, t.Name.Local)
			}
		case xml.EndElement:
			depth--
		}
	}
}
