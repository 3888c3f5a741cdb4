// Package demo is `fedrelay demo`: the relay's main job, end to end, on
// one machine with nothing but Go. Run starts, all in process on 127.0.0.1
// with ports the system chooses,
//
//   - two relays from the embedded configurations in config/ (relay A
//     fronts a.example, relay B fronts b.example; each finds the other
//     through dns.overrides, and every other domain through a nameserver
//     that knows none, so nothing leaves the machine);
//   - behind each relay an endpoint, a peer.Server (s2s/peer), the small
//     S2S server that plays the organisation's internal server for its
//     domain (RFC 6120 streams, STARTTLS, XEP-0220 dialback with the
//     relay's internal face, which is the Authoritative server of every
//     remote domain there);
//
// then sends a message from alice@a.example to bob@b.example and bob's
// answer back, presence subscriptions both ways, an XEP-0199 ping, and a
// message to a domain that does not exist, which must come back as an
// error stanza; checks that both relays' counters balance; shuts
// everything down and reports each step (Report).
package demo
