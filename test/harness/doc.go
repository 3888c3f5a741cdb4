// Package harness runs whole fedrelay relays inside a test process, with
// everything they talk to faked on loopback addresses (127.0.0.0/8):
//
//   - StartRelay builds a relay with cmd/fedrelay/app from a YAML
//     configuration string laid over test defaults (short timeouts, listeners
//     on a loopback address of its own, no admin endpoint, DNS only from the
//     test), starts it, and shuts it down when the test ends. Its log records
//     are kept (Logs) and printed when the test fails; its bounces are kept
//     (Relay.Bounces) with the time they took.
//   - DNS is an in-process nameserver (UDP and TCP) with a mutable zone of
//     _xmpp-server and _xmpps-server SRV records, their targets' A records
//     (glue included), NXDOMAIN and "." answers, so that relays resolve the
//     test domains as they would public ones.
//   - FakeServer is an XMPP server that speaks real S2S, a strict
//     peer.Server (s2s/peer) bound to the test: it accepts streams (STARTTLS
//     with a self-signed certificate, Server Dialback as Receiving and
//     Authoritative server, with its own secret), collects the stanzas it
//     receives, fails the test on any protocol violation by its peers, and
//     opens authenticated streams of its own (Dial). Placed behind a relay
//     it plays an organisation's internal server; placed in DNS it plays a
//     server of the public federation.
//   - Script is a raw, scripted stream for negative tests: write any bytes,
//     read elements, read until a stream error and get its condition. The
//     stanza builders (Message, Presence, IQ, BigMessage) and Element are
//     peer's.
//   - Proxy is a TCP endpoint that forwards to a target, refuses or stalls on
//     command, and counts connections: a peer that goes down and comes back.
//   - CA issues certificates for SASL EXTERNAL tests.
//
// Every helper takes a testing.TB, registers its own cleanup, and waits by
// polling with a deadline, never by sleeping a fixed time.
package harness
