package harness

import "github.com/fedrelay/fedrelay/s2s/peer"

// Element is a top-level element read from a stream, copied out of the
// framer's buffer (peer.Element: StreamErrorCondition, StanzaError, Body).
type Element = peer.Element

// The stanza builders of the tests return the raw XML that Script.Send
// writes; peer builds it.

// Message returns a chat message stanza.
func Message(from, to, id, body string) string { return peer.Message(from, to, id, body).Raw }

// Presence returns a presence stanza; typ "" is available presence.
func Presence(from, to, id, typ string) string { return peer.Presence(from, to, id, typ).Raw }

// IQ returns an IQ stanza with a disco#info query (type get or set) or
// empty (result).
func IQ(from, to, id, typ string) string { return peer.IQ(from, to, id, typ).Raw }

// BigMessage returns a message whose body is size bytes long.
func BigMessage(from, to, id string, size int) string {
	return peer.BigMessage(from, to, id, size).Raw
}
