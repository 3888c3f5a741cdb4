package dialback

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// Namespaces of XEP-0220.
const (
	// NS qualifies db:result and db:verify. Streams that may carry them
	// declare it with the prefix "db" on the stream header.
	NS = "jabber:server:dialback"

	// NSFeature qualifies the <dialback/> stream feature; its <errors/>
	// child advertises support for dialback errors (type='error').
	NSFeature = "urn:xmpp:features:dialback"
)

// RemoteConnectionFailed is the dialback error condition meaning that the
// Receiving server could not connect to the Authoritative server. XEP-0220
// uses it although RFC 6120 lists it as a stream error only, so package
// stanza has no constant for it.
const RemoteConnectionFailed stanza.Condition = "remote-connection-failed"

// Kind says which dialback element an Element is.
type Kind uint8

// The two dialback elements.
const (
	// KindResult is <db:result/>: Initiating ↔ Receiving server.
	KindResult Kind = iota + 1
	// KindVerify is <db:verify/>: Receiving ↔ Authoritative server.
	KindVerify
)

// String returns the element's local name, "result" or "verify".
func (k Kind) String() string {
	switch k {
	case KindResult:
		return "result"
	case KindVerify:
		return "verify"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Type is the type attribute of a dialback element. Requests have none;
// responses always have one.
type Type uint8

// Dialback element types.
const (
	// TypeRequest is an element without a type attribute: a request that
	// carries a key. It is the zero Type.
	TypeRequest Type = iota
	// TypeValid answers a request whose key (or certificate) checked out.
	TypeValid
	// TypeInvalid answers a request whose key did not.
	TypeInvalid
	// TypeError answers a request that could not be checked; the element
	// carries a Condition.
	TypeError
)

// String returns the attribute value ("valid", "invalid", "error"), or
// "request" for TypeRequest.
func (t Type) String() string {
	if t == TypeRequest {
		return "request"
	}
	if v := t.attr(); v != "" {
		return v
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

func (t Type) attr() string {
	switch t {
	case TypeValid:
		return "valid"
	case TypeInvalid:
		return "invalid"
	case TypeError:
		return "error"
	}
	return ""
}

// Element is a db:result or db:verify element, as read from a peer or to be
// written to one. Parse returns it with From and To in the normal form of
// Domain; the Stream methods return elements ready to Append.
//
// Element is comparable; its Key prints as "REDACTED".
type Element struct {
	Kind Kind
	Type Type

	// From and To are the element's addresses, bare domains. For a
	// request, From is the Sender (Originating) domain and To the Target
	// (Receiving) domain; a response swaps them.
	From, To string

	// ID is the stream ID the key was made with. It is required on
	// db:verify; on db:result it is optional and carries no meaning
	// (Prosody adds one to responses).
	ID string

	// Key is the dialback key carried by a request, without surrounding
	// whitespace. Responses normally have none; text on a response is kept
	// but never checked.
	Key Key

	// Condition is set when Type is TypeError: a stanza error condition
	// from XEP-0220's table of dialback error conditions. Conditions this
	// package does not know are read as stanza.UndefinedCondition.
	Condition stanza.Condition
}

// Pair returns the (sender, target) domain pair the element is about, in
// the direction stanzas flow once the pair is authorized, whichever element
// it is and whichever way it travels: a db:result request goes from sender
// to target and a db:verify request from target to sender; answers swap
// their request's addresses.
func (e Element) Pair() Pair {
	p := Pair{From: e.From, To: e.To}
	if e.Kind == KindVerify {
		p.From, p.To = p.To, p.From
	}
	if e.Type != TypeRequest {
		p.From, p.To = p.To, p.From
	}
	return p
}

// Response returns the typed answer to the request e: same element, From and
// To swapped, the ID copied for db:verify, no key. Use it with TypeValid or
// TypeInvalid; ErrorResponse builds TypeError answers.
func (e Element) Response(t Type) Element {
	r := Element{Kind: e.Kind, Type: t, From: e.To, To: e.From}
	if e.Kind == KindVerify {
		r.ID = e.ID
	}
	if t == TypeError {
		r.Condition = stanza.UndefinedCondition
	}
	return r
}

// ErrorResponse returns the type='error' answer to the request e with the
// given condition (stanza.ItemNotFound, stanza.RemoteServerNotFound,
// RemoteConnectionFailed, stanza.PolicyViolation, …).
//
// The s2s engine uses it for refusals it decides itself (dialback before TLS
// → stanza.PolicyViolation) and, applied to a Decision's Verify element, to
// report that the Authoritative server could not be reached (see
// Stream.Conclude).
func (e Element) ErrorResponse(cond stanza.Condition) Element {
	r := e.Response(TypeError)
	if cond != "" {
		r.Condition = cond
	}
	return r
}

// LogValue implements slog.LogValuer. The key is never included.
func (e Element) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("kind", e.Kind.String()),
		slog.String("type", e.Type.String()),
		slog.String("from", e.From),
		slog.String("to", e.To),
	}
	if e.ID != "" {
		attrs = append(attrs, slog.String("id", e.ID))
	}
	if e.Condition != "" {
		attrs = append(attrs, slog.String("condition", string(e.Condition)))
	}
	return slog.GroupValue(attrs...)
}

// Append appends the element's XML to dst and returns the extended slice:
//
//	<db:result from='a.test' to='b.test'>KEY</db:result>
//	<db:verify from='b.test' to='a.test' id='X' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>
//
// It uses the prefix "db" without declaring it: write the element only on a
// stream whose header declares xmlns:db='jabber:server:dialback' (every
// stream of the relay does; some peers accept no other prefix). Attribute
// values and text are escaped. Append does not validate e; elements from
// Parse and from this package's constructors are valid.
func (e Element) Append(dst []byte) []byte {
	name := e.Kind.String()
	dst = append(dst, "<db:"...)
	dst = append(dst, name...)
	dst = appendAttr(dst, "from", e.From)
	dst = appendAttr(dst, "to", e.To)
	if e.ID != "" {
		dst = appendAttr(dst, "id", e.ID)
	}
	if t := e.Type.attr(); t != "" {
		dst = appendAttr(dst, "type", t)
	}
	if e.Key == "" && e.Type != TypeError {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	dst = appendEscaped(dst, string(e.Key))
	if e.Type == TypeError {
		cond := e.Condition
		if cond == "" {
			cond = stanza.UndefinedCondition
		}
		// Dialback errors are of type cancel in every XEP-0220 example.
		dst = append(dst, "<error type='cancel'><"...)
		dst = append(dst, cond...)
		dst = append(dst, " xmlns='"+stanza.NSError+"'/></error>"...)
	}
	dst = append(dst, "</db:"...)
	dst = append(dst, name...)
	return append(dst, '>')
}

func appendAttr(dst []byte, name, value string) []byte {
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, "='"...)
	dst = appendEscaped(dst, value)
	return append(dst, '\'')
}

// appendEscaped escapes s for use as text or as a single- or double-quoted
// attribute value. Whitespace other than the space is written as character
// references so that XML's end-of-line and attribute normalization leave it
// as it was; invalid UTF-8 and characters XML forbids become U+FFFD.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '&':
			dst = append(dst, "&amp;"...)
		case r == '<':
			dst = append(dst, "&lt;"...)
		case r == '>':
			dst = append(dst, "&gt;"...)
		case r == '\'':
			dst = append(dst, "&apos;"...)
		case r == '"':
			dst = append(dst, "&quot;"...)
		case r == '\t':
			dst = append(dst, "&#x9;"...)
		case r == '\n':
			dst = append(dst, "&#xA;"...)
		case r == '\r':
			dst = append(dst, "&#xD;"...)
		case r == utf8.RuneError && size == 1, !isXMLChar(r):
			dst = utf8.AppendRune(dst, utf8.RuneError)
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// isXMLChar reports whether r matches production [2] Char of XML 1.0.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// xmlSpace is the XML whitespace (production [3] S) trimmed off keys.
const xmlSpace = " \t\r\n"

// knownConditions are the conditions Parse keeps; any other one is read as
// undefined-condition, as RFC 6120 asks for unknown error conditions.
var knownConditions = map[stanza.Condition]bool{
	stanza.BadRequest:            true,
	stanza.Conflict:              true,
	stanza.FeatureNotImplemented: true,
	stanza.Forbidden:             true,
	stanza.Gone:                  true,
	stanza.InternalServerError:   true,
	stanza.ItemNotFound:          true,
	stanza.JIDMalformed:          true,
	stanza.NotAcceptable:         true,
	stanza.NotAllowed:            true,
	stanza.NotAuthorized:         true,
	stanza.PolicyViolation:       true,
	stanza.RecipientUnavailable:  true,
	stanza.Redirect:              true,
	stanza.RegistrationRequired:  true,
	stanza.RemoteServerNotFound:  true,
	stanza.RemoteServerTimeout:   true,
	stanza.ResourceConstraint:    true,
	stanza.ServiceUnavailable:    true,
	stanza.SubscriptionRequired:  true,
	stanza.UndefinedCondition:    true,
	stanza.UnexpectedRequest:     true,
	RemoteConnectionFailed:       true,
}

// parseError wraps the stream error a connection owner should close with.
func parseError(cond stream.Error, format string, args ...any) error {
	return fmt.Errorf("dialback: "+format+": %w", append(args, cond)...)
}

// Parse reads one complete db:result or db:verify element from raw, the
// bytes as they came off the wire, for example
//
//	<db:result from='a.test' to='b.test'>KEY</db:result>
//
// The caller has already resolved the element to the dialback namespace on
// its stream (where the prefix was declared), so Parse does not need the
// declaration and accepts any prefix; it refuses only a fragment that itself
// binds the element to another namespace. Only the local name, the from, to,
// id and type attributes, the text and an <error/> child are read; other
// attributes and children are ignored.
//
// From and To must be bare domains and are returned in the normal form of
// Domain. A request must carry a key; db:verify must carry an id. A
// type='error' element without a known condition gets
// stanza.UndefinedCondition.
//
// Errors wrap the mellium stream error to close the stream with, usable with
// errors.Is and errors.As: stream.NotWellFormed (XML syntax, duplicate
// attributes, trailing content), stream.RestrictedXML (comments, processing
// instructions, DTDs), stream.UnsupportedStanzaType (not result or verify,
// foreign namespace), stream.ImproperAddressing (from or to missing or not a
// bare domain) and stream.BadFormat (missing id or key, unknown type).
func Parse(raw []byte) (Element, error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	var (
		e       Element
		rooted  bool   // the root element has started
		depth   int    // elements open
		inError bool   // inside the first <error/> child
		errSeen bool   // an <error/> child was met
		cond    string // first condition in <error/>
		text    []byte
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Element{}, parseError(stream.NotWellFormed, "%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1 && rooted:
				return Element{}, parseError(stream.NotWellFormed, "content after the element")
			case depth == 1:
				rooted = true
				if err := parseRoot(&e, t); err != nil {
					return Element{}, err
				}
			case depth == 2 && t.Name.Local == "error" && !errSeen:
				errSeen, inError = true, true
			case depth == 3 && inError && cond == "" &&
				t.Name.Space == stanza.NSError && t.Name.Local != "text":
				cond = t.Name.Local
			}
		case xml.EndElement:
			// The decoder has checked that it matches.
			depth--
			if depth == 1 {
				inError = false
			}
		case xml.CharData:
			switch depth {
			case 0:
				if len(bytes.Trim(t, xmlSpace)) != 0 {
					return Element{}, parseError(stream.NotWellFormed, "text outside the element")
				}
			case 1:
				text = append(text, t...)
			}
		case xml.Comment, xml.ProcInst, xml.Directive:
			return Element{}, parseError(stream.RestrictedXML, "comment, processing instruction or DTD")
		}
	}
	if !rooted {
		return Element{}, parseError(stream.NotWellFormed, "no element")
	}

	e.Key = Key(bytes.Trim(text, xmlSpace))
	if e.Type == TypeRequest && e.Key == "" {
		return Element{}, parseError(stream.BadFormat, "%s request without a key", e.Kind)
	}
	if e.Type == TypeError {
		e.Condition = stanza.Condition(cond)
		if !knownConditions[e.Condition] {
			e.Condition = stanza.UndefinedCondition
		}
	}
	return e, nil
}

// parseRoot fills e from the start tag of the element.
func parseRoot(e *Element, t xml.StartElement) error {
	switch t.Name.Local {
	case "result":
		e.Kind = KindResult
	case "verify":
		e.Kind = KindVerify
	default:
		return parseError(stream.UnsupportedStanzaType, "unknown element <%.40q>", t.Name.Local)
	}

	var from, to, typ string
	var hasFrom, hasTo, hasType bool
	seen := make(map[xml.Name]bool, len(t.Attr))
	for _, a := range t.Attr {
		if seen[a.Name] {
			return parseError(stream.NotWellFormed, "duplicate attribute %.40q", a.Name.Local)
		}
		seen[a.Name] = true
		// After the decoder's translation a declaration of the element's
		// own prefix (or of the default namespace, for an unprefixed
		// element) carries the namespace the element ended up in. A
		// prefix bound only on the stream header stays untranslated and
		// is trusted to be the dialback one, as the caller resolved it.
		isDecl := a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns"
		if isDecl && a.Value == t.Name.Space && a.Value != NS {
			return parseError(stream.UnsupportedStanzaType, "element in namespace %.80q", a.Value)
		}
		if a.Name.Space != "" {
			continue
		}
		switch a.Name.Local {
		case "from":
			from, hasFrom = a.Value, true
		case "to":
			to, hasTo = a.Value, true
		case "id":
			e.ID = a.Value
		case "type":
			typ, hasType = a.Value, true
		}
	}

	if hasType {
		switch typ {
		case "valid":
			e.Type = TypeValid
		case "invalid":
			e.Type = TypeInvalid
		case "error":
			e.Type = TypeError
		default:
			return parseError(stream.BadFormat, "%s with type %.20q", e.Kind, typ)
		}
	}
	if e.Kind == KindVerify && e.ID == "" {
		return parseError(stream.BadFormat, "verify without an id")
	}

	var err error
	if e.From, err = parseAddr(e.Kind, "from", from, hasFrom); err != nil {
		return err
	}
	if e.To, err = parseAddr(e.Kind, "to", to, hasTo); err != nil {
		return err
	}
	return nil
}

func parseAddr(k Kind, name, v string, present bool) (string, error) {
	if !present || v == "" {
		return "", parseError(stream.ImproperAddressing, "%s without %s", k, name)
	}
	if isPlainDomain(v) {
		return v, nil
	}
	d, err := normalizeDomain(v)
	if err != nil {
		return "", parseError(stream.ImproperAddressing, "%s %s: %v", k, name, err)
	}
	return d, nil
}
