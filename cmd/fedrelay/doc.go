// Command fedrelay is the XMPP federation relay: the edge between an
// organisation's internal XMPP servers and the public federation (RFC 6120
// server-to-server streams, XEP-0220 dialback, XEP-0368 direct TLS).
//
// Subcommands: run (the relay), demo (two relays and their internal servers
// on loopback, the relay's main job end to end), check-config, check
// (certificates, DNS, connectivity), resolve and version; and, through a
// running relay's admin API, status, streams, breakers, close, policy check,
// reload and queue. They are wired here from the packages that do the work; this
// package holds no protocol logic. Configuration errors exit with status 2.
package main
