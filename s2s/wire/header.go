package wire

import "mellium.im/xmpp/stream"

// Namespaces the framer knows about.
const (
	NSServer      = "jabber:server"
	NSClient      = "jabber:client"
	NSDialback    = "jabber:server:dialback"
	NSStream      = stream.NS
	NSStreamError = stream.NSError
	NSStanzaError = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSXML         = "http://www.w3.org/XML/1998/namespace"
	nsXMLNS       = "http://www.w3.org/2000/xmlns/"
)

// Header is a stream header (RFC 6120 §4.7). Reader.ReadHeader fills every
// field; Writer.WriteHeader uses only To, From, ID, Version and Lang and
// always declares the jabber:server, stream and dialback namespaces itself.
//
// An empty string stands for an absent attribute: Version "" is a pre-1.0
// ("0.9") peer, to be answered without a version (RFC 6120 §4.7.5).
type Header struct {
	To, From, ID string
	Version      string // as sent; parse with mellium's stream.ParseVersion
	Lang         string // xml:lang

	// Prefix is the prefix of the stream element as sent: "stream" in
	// practice, "" with prefix-free canonicalization (RFC 6120 §4.8.2).
	Prefix string
	// NS lists the namespace declarations of the header in document order.
	// RFC 6120 §4.8.5 forbids declaring namespaces for stanza content
	// there; a caller that wants to enforce that closes the stream with
	// invalid-namespace when it finds more than the default, stream and db
	// declarations. Elements that use such a declaration are fixed up when
	// copied (see Element.AppendTo).
	NS []NS
}

// NS is one namespace declaration. Prefix "" is the default namespace.
type NS struct {
	Prefix, URI string
}

// Lookup returns the namespace the header binds prefix to ("" for the
// default namespace).
func (h *Header) Lookup(prefix string) (uri string, ok bool) {
	for _, d := range h.NS {
		if d.Prefix == prefix {
			return d.URI, true
		}
	}
	return "", false
}

// Default returns the default (content) namespace of the stream: jabber:server
// for every header ReadHeader accepts without error, except prefix-free ones
// where it is the stream namespace or "".
func (h *Header) Default() string {
	uri, _ := h.Lookup("")
	return uri
}

// standardDecl reports whether a header declaration is one that every
// header written by Writer.WriteHeader carries too, so that elements using
// it need no fix-up when copied to such a stream.
func standardDecl(prefix, uri string) bool {
	switch prefix {
	case "":
		return uri == NSServer
	case "stream":
		return uri == NSStream
	case "db":
		return uri == NSDialback
	case "xml":
		return true // bound by definition everywhere
	}
	return false
}
