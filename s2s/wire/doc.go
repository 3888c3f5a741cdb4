// Package wire frames XMPP server-to-server streams without parsing them into
// trees: it reads a stream header and then hands out each top-level element
// as the exact bytes received, with the little the relay needs to route it
// (name, namespace, to, from, type, id), and writes headers, elements, stream
// errors and bounces on the way out. It owns no sockets; the connection owner
// in package s2s drives one Reader and one Writer per stream.
//
// A relay decides where a stanza goes from its start tag and forwards the
// same bytes, so decoding with encoding/xml (13–22 µs per stanza, and it
// rewrites namespaces) is wasted work. The Reader instead scans each element
// once, checking as it goes everything a stream must be refused for:
//
//   - RFC 6120 §4.7 and §4.8: the stream header (<stream> in
//     http://etherx.jabber.org/streams, content namespace jabber:server or
//     prefix-free canonicalization), its restart after TLS and SASL, and the
//     namespace rules for first-level elements (Element.CheckStanza).
//   - RFC 6120 §11 and XML 1.0 with Namespaces: well-formed tags and nesting,
//     attribute syntax, no duplicate attributes, UTF-8 only, XML 1.0
//     characters, bound prefixes; no comments, processing instructions, DTDs
//     or entity references other than the five predefined ones and character
//     references (restricted-xml, §11.1).
//   - RFC 6120 §4.9: every refusal is one of mellium's stream errors
//     (mellium.im/xmpp/stream), ready for Writer.WriteStreamError, and Limits
//     bound the memory a peer can make a stream use (policy-violation).
//   - A stanza over Limits.MaxStanza on an authenticated stream need not
//     cost the stream: with Limits.MaxSkip set, the Reader reads it to its
//     end without keeping it (the buffer does not grow) and returns it with
//     Element.Oversize set and the attributes a bounce needs, and the
//     stream goes on. What is skipped is still scanned for its nesting and
//     checked for what XMPP never allows; past MaxSkip, or for an element
//     that cannot be bounced, the stream fails as before.
//   - RFC 6120 §8.3: AppendBounce builds the stanza error for an element
//     that cannot be delivered, never for an error or an IQ result.
//
// Copying an element to another stream is not always a byte copy: it may
// rely on declarations or an xml:lang it inherits from the header of the
// stream it came on (§4.7.4, §4.8.5). Element.AppendTo and
// Writer.WriteElement add exactly those to the copy's start tag, and nothing
// in the common case.
//
// An Element is only valid until the next call on its Reader: reading
// reuses the buffer, so that the steady state allocates nothing.
package wire
