// Package peer is a small real XMPP server-to-server peer, for the places
// that need one next to a relay: the internal servers of `fedrelay demo`,
// the fake servers of the whole-relay tests (test/harness), and load
// generation.
//
// A Server hosts one or more domains and speaks RFC 6120 streams with
// STARTTLS (§5; a self-signed certificate by default, the peer's never
// verified) and Server Dialback (XEP-0220, with the keys of XEP-0185 from
// package dialback) in its three roles: Initiating (Dial, Outbound.Authorize
// for more pairs on one stream), Receiving (its listeners, asking the
// Authoritative server of the sender domain by db:verify on a connection of
// its own) and Authoritative (db:verify of its own keys). It checks every
// stanza against the pairs authorized on its stream (§8.1.1.2) and, if
// Strict, records what its peers do wrong.
//
// Stanzas reach a Handler on the reading goroutine of their stream, as the
// framer (s2s/wire) returned them, without a copy or an allocation by the
// peer; without Handler the Server keeps them (Received, Wait) and answers
// iq requests (XEP-0199 pings with a result). Outbound.Write sends raw
// stanza bytes as fast as the TLS connection takes them.
//
// The rest are helpers for whoever drives streams: Element (a copied
// top-level element, with StreamErrorCondition, StanzaError, Body and
// IsPing), the Stanza builders (Message, Presence, IQ, Ping, BigMessage),
// Escape, NewID and SelfSigned.
//
// It is not part of the relay: no relay code imports it.
package peer
