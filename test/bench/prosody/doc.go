// Package prosody runs an unmodified Debian Prosody (0.12) on a loopback
// address for the benchmark, and logs in minimal, fast c2s clients to it, so
// that the relay's cost per stanza can be compared, in the same run, with
// Prosody doing the same job: an S2S stream in, each message delivered to an
// online local user.
//
// Start writes a configuration into its own folder (dialback over STARTTLS
// with a self-signed certificate, the few modules that job needs, internal
// plain-text accounts, no offline storage, warnings logged to a file),
// registers the users with prosodyctl while the server is stopped, starts
// Prosody as the prosody user and waits until Prosody itself listens on its
// c2s and s2s addresses. Nothing is written outside that folder: no
// /etc/prosody, no /var/lib/prosody, no system resolver settings.
//
// Name resolution is private too: Prosody resolves through lua-unbound, given
// a hosts file made of Options.Hosts, so the peers it dials back for
// dialback verification are found at the addresses the benchmark chose (on
// port 5269). A static root zone makes libunbound answer every other query
// itself, at once: without it, Prosody's SRV lookups for a peer
// (_xmpps-server, then _xmpp-server) wait for time-outs before the address
// lookup, and the first dialback verification starts about 30 s late (as
// measured here). The resolv.conf
// names port 53 of Prosody's own address, a dead end, should anything still
// be asked.
//
// Login is a c2s client for the receiving end: STARTTLS without certificate
// verification, SASL PLAIN, resource binding, roster request and initial
// presence. Its reader frames the stream with the relay's own framer
// (s2s/wire) rather than encoding/xml, so that the client costs the
// benchmark little per message.
//
// Prosody 0.12 behaviour this package relies on or works around:
//   - It refuses to run as root: it is started through setpriv as the prosody
//     user, and every file it must read or write is given to that user.
//   - "prosody --version" starts a server; it is never called.
//   - A port it cannot bind is logged, not fatal: Start checks that the ports
//     are free first and then that Prosody's own process holds the listening
//     sockets, instead of trusting a successful connection.
//   - With lua-unbound, /etc/hosts is ignored; the hoststxt option is the way
//     to give it names.
//   - SCRAM from simple clients can fail over channel binding, so the client
//     uses PLAIN, only ever over TLS.
//   - A resource that has not requested its roster is not an "interested
//     resource" and misses roster pushes, so the client requests it.
//   - offline (message storage) is loaded automatically; it is disabled, so
//     a message for a user who is not online bounces instead of piling up.
//   - A message that arrives before the user's initial presence has been
//     processed bounces likewise, so Login waits until the server echoes
//     that presence back.
//   - A dialback verification (db:verify) waits in the queue of Prosody's
//     outgoing stream to the peer until that stream is itself authenticated:
//     the peer must accept Prosody's own dialback there first.
//   - Outgoing connections (to verify a peer) come from 127.0.0.1, not from
//     Options.IP: 0.12.3 has no setting for their source address.
package prosody
