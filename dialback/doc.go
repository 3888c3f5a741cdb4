// Package dialback implements Server Dialback for the relay: XEP-0220
// (Server Dialback, 1.1.1), its key generation from XEP-0185 (Dialback Key
// Generation and Validation, 1.0) and the certificate shortcut of XEP-0344
// (Impact of TLS and DNSSEC on Dialback, 0.4).
//
// The package owns keys, elements, verdicts and the per-stream state of
// dialback. It opens no sockets, starts no goroutines and does not log: the
// s2s connection owner reads db:result and db:verify elements, hands them
// here, and carries out the decisions it gets back.
//
// # Pieces
//
//   - Secret makes and checks keys: hex(HMAC-SHA256(hex(SHA-256(secret)),
//     Receiving + " " + Originating + " " + StreamID)). Keys depend only on
//     the secret and the stream, so relay instances sharing a secret can
//     answer for each other's keys without shared state. Secret and Key
//     never print their value.
//   - Element is a db:result or db:verify; Parse reads one from the bytes
//     the framer cut out of the stream, Append writes one. Parse errors wrap
//     the mellium stream error to close the stream with.
//   - Stream is the dialback state of one XML stream: authorized domain
//     pairs per direction (several per stream, "piggybacking"), the requests
//     sent on it awaiting an answer, the requests received on it awaiting
//     the Authoritative server. Typed elements that answer nothing we sent
//     on that very stream are ignored, which defeats the unsolicited
//     dialback attacks of XEP-0220 §3.1.
//
// # Roles
//
// Every stream can play three roles; Stream.Handle picks the one an element
// calls for:
//
//   - Initiating (Originating) server: SendResult sends a key for (our
//     domain → their domain); the answer arrives as a Settle decision whose
//     Outcome says whether to flush or bounce the stanzas queued for the
//     pair.
//   - Receiving server: a db:result request from the peer becomes a Forward
//     decision with the db:verify to send, on another stream, to the
//     Authoritative server of the sender domain (SendVerify there); its
//     answer comes back on that stream as a Deliver decision, and Conclude
//     on the original stream turns it into the db:result answer and
//     authorizes the pair. XEP-0344: if the peer's certificate covers the
//     sender domain, the request is answered valid at once.
//   - Authoritative server: a db:verify request is answered valid or
//     invalid by recomputing the key with our Secret, or item-not-found
//     for a domain we do not hold the secret for.
//
// # The relay's two faces
//
// Each face of the relay uses its own Config.Serves (the Secret is the same
// relay secret on both):
//
//   - Federation face: the relay is the internal domains. It sends
//     db:result as them to remote servers, is their Receiving server for
//     inbound remote streams, and is their Authoritative server when remote
//     servers send db:verify for keys it made.
//   - Internal face: the relay is every remote domain. It sends db:result
//     as remote domains to the internal servers, is the Receiving server for
//     their streams (verifying with the internal server's own Authoritative
//     server, found through the configured route), and is the Authoritative
//     server for remote domains when internal servers check its keys.
//
// # Domains
//
// All domains in Elements, Pairs and Serves calls are in one normal form,
// that of Domain: validated as bare JIDs by mellium.im/xmpp/jid, lowercase,
// without a trailing dot, with internationalized labels in A-label
// ("xn--") form. Keys are made over that form.
//
// # Writing elements
//
// Append writes the db: prefix without declaring it. Every stream the relay
// opens or accepts declares xmlns:db='jabber:server:dialback' on its header
// (XEP-0220, Advertisement; some peers accept no other prefix), and elements must be
// written only on such streams.
package dialback
