// Package routing owns the relay's decisions about where a stanza goes: the
// domain→route table of the two faces (federation face: the internal domains
// and their configured routes; internal face: every remote domain), the
// RFC 6120 §10 routing rules (from must be authenticated on the stream, to
// must be reachable from that face, never an open relay, loop prevention of
// §10.5), bounces with the right stanza error (§10.4.3), and the circuit
// breaker kept per destination domain (with short open periods for the
// internal domains, whose servers restart rather than vanish).
//
// It declares the small interfaces it needs from the network layer (a link it
// can write to, a dialer that yields one) and never imports package s2s.
package routing
