// Package test holds fedrelay's whole-relay tests: a harness that starts
// relays from a configuration string on loopback addresses with an in-process
// DNS server, and interop tests against real XMPP servers (Prosody,
// ejabberd) started by the tests themselves.
package test
