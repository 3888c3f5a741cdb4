// Package test holds fedrelay's whole-relay tests: a harness that starts
// relays from a configuration string on loopback addresses with an in-process
// DNS server, interop tests against real XMPP servers (Prosody, ejabberd)
// started by the tests themselves, and the benchmark tool's library
// (test/bench, with test/bench/prosody), which measures the relay as its
// own process.
package test
