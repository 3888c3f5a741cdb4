package harness

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Element is a top-level element read from a stream, copied out of the
// framer's buffer.
type Element struct {
	Kind                     wire.Kind
	Name, NS                 string
	To, From, Type, ID, Lang string
	Raw                      string
}

func copyElement(e *wire.Element) Element {
	return Element{
		Kind: e.Kind, Name: string(e.Local), NS: string(e.NS),
		To: string(e.To), From: string(e.From), Type: string(e.Type), ID: string(e.ID), Lang: string(e.Lang),
		Raw: string(e.Raw),
	}
}

// String returns the raw XML.
func (e Element) String() string { return e.Raw }

// StreamErrorCondition returns the condition of a <stream:error/> element
// ("policy-violation"), or "" if there is none.
func (e Element) StreamErrorCondition() string {
	cond, _ := childCondition(e.Raw, wire.NSStreamError)
	return cond
}

// StanzaError returns the type attribute and the condition of the <error/>
// child of an error stanza (RFC 6120 §8.3), and its text if any.
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
			case depth == 3 && inError && t.Name.Space == wire.NSStanzaError:
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

// Condition is the stanza error condition of an error stanza, "" if none.
func (e Element) Condition() string {
	_, c, _ := e.StanzaError()
	return c
}

// childCondition returns the local name of the first child of raw's root in
// namespace ns that is not <text/>.
func childCondition(raw, ns string) (string, bool) {
	d := xml.NewDecoder(strings.NewReader(raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return "", false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Space == ns && t.Name.Local != "text" {
				return t.Name.Local, true
			}
		case xml.EndElement:
			depth--
		}
	}
}

// Message returns a chat message stanza.
func Message(from, to, id, body string) string {
	return fmt.Sprintf("<message from='%s' to='%s' id='%s' type='chat'><body>%s</body></message>",
		esc(from), esc(to), esc(id), esc(body))
}

// Presence returns a presence stanza; typ "" is available presence.
func Presence(from, to, id, typ string) string {
	t := ""
	if typ != "" {
		t = " type='" + esc(typ) + "'"
	}
	return fmt.Sprintf("<presence from='%s' to='%s' id='%s'%s/>", esc(from), esc(to), esc(id), t)
}

// IQ returns an IQ stanza with a disco#info query (type get) or empty
// (result).
func IQ(from, to, id, typ string) string {
	child := "<query xmlns='http://jabber.org/protocol/disco#info'/>"
	if typ == "result" {
		child = ""
	}
	return fmt.Sprintf("<iq from='%s' to='%s' id='%s' type='%s'>%s</iq>", esc(from), esc(to), esc(id), esc(typ), child)
}

// BigMessage returns a message of at least size bytes.
func BigMessage(from, to, id string, size int) string {
	return Message(from, to, id, strings.Repeat("x", size))
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Domain returns the domainpart of a JID.
func Domain(jid string) string {
	if i := strings.IndexByte(jid, '/'); i >= 0 {
		jid = jid[:i]
	}
	if i := strings.LastIndexByte(jid, '@'); i >= 0 {
		jid = jid[i+1:]
	}
	return strings.ToLower(jid)
}
