// Package s2s owns fedrelay's sockets: the listeners of both faces, outbound
// dialing, stream negotiation (RFC 6120 §4: stream headers, STARTTLS §5,
// SASL EXTERNAL §6 with XEP-0178), Server Dialback on the wire (XEP-0220,
// with the key logic of package dialback), and the connection owners that
// read and write stanzas with the raw-byte framer of s2s/wire.
//
// Sub-packages:
//   - s2s/wire: the stanza framer, reading and writing streams as raw bytes
//     (RFC 6120 §4, §8, §11).
//   - s2s/resolve: SRV resolution of remote domains and outbound dialing
//     (RFC 6120 §3.2, XEP-0368, RFC 2782, RFC 8305).
//   - s2s/certs: certificates by SNI (configured, self-signed, on demand)
//     and peer verification (RFC 6125/9525, XEP-0178).
//   - s2s/internaldns: the internal face's DNS responder.
//   - s2s/peer: a small real S2S server for one or more domains (STARTTLS,
//     XEP-0220 dialback in all three roles) that the relay talks to: the
//     demo's internal servers, the test harness's fake servers, load
//     generation. The relay itself does not import it.
//
// s2s satisfies the small interfaces that package routing declares; routing
// never imports s2s.
package s2s
