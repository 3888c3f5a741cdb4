package wire

import (
	"bytes"
	"unicode/utf8"

	"mellium.im/xmpp/stream"
)

// Kind classifies a top-level element by its resolved name.
type Kind uint8

// Kinds of top-level elements.
const (
	// Other is any element not listed below: TLS, SASL, bidi, prefixed or
	// foreign-namespace "stanzas". See Element.CheckStanza.
	Other Kind = iota
	// Space is a run of whitespace between top-level elements (a
	// keepalive); only returned after Reader.ReportSpace(true).
	Space
	// Message, Presence and IQ are the stanzas: the unprefixed elements of
	// those names in jabber:server.
	Message
	Presence
	IQ
	// DialbackResult and DialbackVerify are <db:result/> and <db:verify/>
	// in jabber:server:dialback (XEP-0220), whatever their prefix.
	DialbackResult
	DialbackVerify
	// Features and StreamError are <stream:features/> and <stream:error/>.
	Features
	StreamError
)

var kindNames = [...]string{"other", "space", "message", "presence", "iq", "db:result", "db:verify", "stream:features", "stream:error"}

// String returns a short lower-case name for logs.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// Element is one top-level element of a stream, as returned by Reader.Next.
//
// Every slice points into the Reader's buffers: an Element and its slices are
// valid only until the next call to Next, ReadHeader or Reset on that Reader.
// Copy what must outlive that (AppendTo is the way to copy Raw).
type Element struct {
	Kind Kind
	// Raw is the exact input: from the '<' of the start tag to the '>' that
	// ends the element. For Space it is the whitespace.
	Raw []byte
	// Prefix and Local are the element's name as written; Prefix is nil when
	// there is none.
	Prefix, Local []byte
	// NS is the namespace the name resolves to, nil for none.
	NS []byte
	// To, From, Type, ID and Lang (xml:lang) are the start tag's
	// attributes, entity-decoded and whitespace-normalised as XML requires;
	// nil when absent, empty but non-nil when present and empty.
	To, From, Type, ID, Lang []byte
	// Oversize is zero except for a stanza that was skipped rather than
	// read (see Limits.MaxSkip): then it is the stanza's size in bytes,
	// from its '<' to the '>' that ends it, more than Limits.MaxStanza. Such
	// an Element has Kind, Local, NS, To, From, Type and ID, enough to
	// bounce it (AppendBounce); Raw and Lang are nil, and AppendTo and
	// AppendText add nothing.
	Oversize int64

	nameEnd int     // offset in Raw just past the element's name
	fix     []int   // header declarations the element relies on (indexes into hdr.NS)
	noNS    bool    // it relies on the header declaring no default namespace
	hdr     *Header // header of the stream the element came from
}

// IsStanza reports whether e is a message, presence or iq stanza: unprefixed
// and in jabber:server.
func (e *Element) IsStanza() bool {
	return e.Kind == Message || e.Kind == Presence || e.Kind == IQ
}

// CheckStanza returns nil for a stanza, and otherwise the stream error RFC
// 6120 recommends for a top-level element that is to be routed but is not a
// stanza: bad-namespace-prefix for a prefixed element in jabber:server
// (§4.8.5), invalid-namespace for jabber:client content (§4.8.3), and
// unsupported-stanza-type for anything else (§4.8.4). The caller deals with
// dialback, TLS, SASL and feature elements before asking; the RFC also lets
// it drop such elements instead of closing the stream.
func (e *Element) CheckStanza() error {
	switch {
	case e.IsStanza() || e.Kind == Space:
		return nil
	case string(e.NS) == NSServer && e.Prefix != nil:
		return stream.BadNamespacePrefix
	case string(e.NS) == NSClient:
		return stream.InvalidNamespace
	}
	return stream.UnsupportedStanzaType
}

// AppendTo appends the element to dst as it must be written on another
// stream, whose header has xml:lang outLang ("" for none) and declares the
// namespaces Writer.WriteHeader declares.
//
// Usually that is Raw unchanged. Two things an element can inherit from the
// header of the stream it came from are added to its start tag when the
// destination would not provide them (RFC 6120 §4.8.5 and §4.7.4):
//   - a namespace declaration the element uses (on itself or any descendant,
//     for an element or attribute name) that is on the incoming header and
//     is not one of default jabber:server, stream or db as Writer declares
//     them; or xmlns=” if it has unprefixed names and the incoming header
//     declared no default namespace (prefix-free canonicalization);
//   - the header's xml:lang, when the element has none and outLang differs.
//
// Nothing else changes; in the common case this is one append of Raw.
func (e *Element) AppendTo(dst []byte, outLang string) []byte {
	needLang := e.needLang(outLang)
	if len(e.fix) == 0 && !needLang && !e.noNS {
		return append(dst, e.Raw...)
	}
	dst = append(dst, e.Raw[:e.nameEnd]...)
	if e.noNS {
		dst = append(dst, " xmlns=''"...)
	}
	for _, i := range e.fix {
		d := e.hdr.NS[i]
		if d.Prefix == "" {
			dst = append(dst, " xmlns='"...)
		} else {
			dst = append(dst, " xmlns:"...)
			dst = append(dst, d.Prefix...)
			dst = append(dst, "='"...)
		}
		dst = appendEscaped(dst, d.URI, true)
		dst = append(dst, '\'')
	}
	if needLang {
		dst = append(dst, " xml:lang='"...)
		dst = appendEscaped(dst, e.hdr.Lang, true)
		dst = append(dst, '\'')
	}
	return append(dst, e.Raw[e.nameEnd:]...)
}

// NeedsFixup reports whether AppendTo(dst, outLang) would change Raw.
func (e *Element) NeedsFixup(outLang string) bool {
	return len(e.fix) > 0 || e.noNS || e.needLang(outLang)
}

func (e *Element) needLang(outLang string) bool {
	return e.Lang == nil && e.hdr != nil && e.hdr.Lang != "" && e.hdr.Lang != outLang && e.Kind != Space
}

// AppendText appends the character data of the element and all its
// descendants, in document order, to dst: references decoded, CDATA sections
// included, line ends normalised to LF. For <db:result>KEY</db:result> it is
// the key. It costs one pass over Raw and no allocation when dst has room.
func (e *Element) AppendText(dst []byte) []byte {
	if e.Kind == Space {
		return dst
	}
	b := e.Raw
	for i := 0; i < len(b); {
		if b[i] != '<' {
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				j = len(b) - i
			}
			dst = appendDecoded(dst, b[i:i+j], false)
			i += j
			continue
		}
		if bytes.HasPrefix(b[i:], cdataOpen) {
			i += len(cdataOpen)
			j := bytes.Index(b[i:], cdataClose)
			dst = appendNewlines(dst, b[i:i+j])
			i += j + len(cdataClose)
			continue
		}
		i = skipTag(b, i)
	}
	return dst
}

var (
	cdataOpen  = []byte("<![CDATA[")
	cdataClose = []byte("]]>")
)

// skipTag returns the index just past the tag starting at b[i] == '<',
// stepping over quoted attribute values (which may contain '>').
func skipTag(b []byte, i int) int {
	var quote byte
	for i++; i < len(b); i++ {
		c := b[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '>':
			return i + 1
		}
	}
	return i
}

// appendDecoded appends already validated character data or attribute value
// s with references replaced and XML's line-end normalisation applied; attr
// also turns tab, LF and CR into spaces (attribute-value normalisation).
func appendDecoded(dst, s []byte, attr bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '&':
			end, r, _ := lexRef(s, i, len(s))
			dst = utf8.AppendRune(dst, r)
			i = end
			continue
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			c = '\n'
		}
		if attr && (c == '\n' || c == '\t') {
			c = ' '
		}
		dst = append(dst, c)
		i++
	}
	return dst
}

// appendNewlines appends CDATA content with CRLF and CR turned into LF.
func appendNewlines(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' {
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			c = '\n'
		}
		dst = append(dst, c)
	}
	return dst
}
