package federation_test

import (
	"fmt"
	"testing"

	"github.com/fedrelay/fedrelay/s2s"
	"github.com/fedrelay/fedrelay/test/harness"
)

// TestTwoRelaysBidi: with certificates from a CA both relays trust, relay A
// opens the one federation stream, asks for XEP-0288 bidi on it, and relay B
// sends its own traffic for a.test back over it instead of connecting to A:
// one TCP connection carries the pair both ways, each relay playing one
// side of bidi.
func TestTwoRelaysBidi(t *testing.T) {
	ca := harness.NewCA(t)
	certA, keyA := ca.Issue(t, "a.test")
	certB, keyB := ca.Issue(t, "b.test")
	w := startWorld(t,
		fmt.Sprintf("domains: [{name: a.test, route: $ROUTE, cert_file: %q, key_file: %q}]\ntls: {ca_file: %q}", certA, keyA, ca.File()),
		fmt.Sprintf("domains: [{name: b.test, route: $ROUTE, cert_file: %q, key_file: %q}]\ntls: {ca_file: %q}", certB, keyB, ca.File()),
		nil)
	for i := range 3 {
		w.roundTrip(t, fmt.Sprintf("bidi%d", i))
	}
	// B never authenticated to A: its stanzas went back on A's stream.
	if w.A.Logs.Has("peer authenticated by SASL EXTERNAL", "face", "federation") ||
		w.A.Logs.Has("peer authenticated by dialback", "face", "federation") {
		t.Errorf("relay A accepted a federation stream from B: B did not use the bidirectional stream")
	}
	if w.B.Logs.Has("outbound stream up", "face", "federation") {
		t.Errorf("relay B opened a federation stream of its own")
	}
	federation := func(r *harness.Relay, dir string) []s2s.StreamInfo {
		var out []s2s.StreamInfo
		for _, si := range r.Server.Streams() {
			if si.Face == "federation" && si.Direction == dir {
				out = append(out, si)
			}
		}
		return out
	}
	// A: one outbound link to b.test, bidi, which read B's stanzas.
	if out := federation(w.A, "out"); len(out) != 1 || !out[0].Bidi || out[0].StanzasIn < 3 {
		t.Errorf("relay A's federation links: %+v, want one bidi link that read B's 3 replies", out)
	}
	if in := federation(w.A, "in"); len(in) != 0 {
		t.Errorf("relay A's inbound federation streams: %+v, want none", in)
	}
	// B: the inbound stream from A, bidi, and the link riding it, with the
	// inbound stream's address.
	in, out := federation(w.B, "in"), federation(w.B, "out")
	if len(in) != 1 || !in[0].Bidi || len(out) != 1 || !out[0].Bidi || out[0].Peer != in[0].Peer || out[0].StanzasOut < 3 {
		t.Errorf("relay B's federation streams: in %+v, out %+v; want one bidi inbound stream and a link riding it", in, out)
	}
	if n := w.B.Server.Stats().BidiLinks.Load(); n != 1 {
		t.Errorf("relay B: %d bidi links open, want 1", n)
	}
	if n := w.A.Server.BidiOutbound(); n != 1 {
		t.Errorf("relay A: %d outbound bidi links, want 1", n)
	}
	harness.Balanced(t, w.A, w.B)
}

// TestTwoRelaysNoBidiOnDNSOnly: with self-signed certificates relay A knows
// relay B by DNS alone, so it does not ask for bidi (dialback proves A to B,
// never B to A), and B's traffic comes on a stream of B's, checked by
// dialback.
func TestTwoRelaysNoBidiOnDNSOnly(t *testing.T) {
	w := startWorld(t, "", "", nil)
	w.roundTrip(t, "dnsonly")
	w.A.Logs.Wait(t, "peer authenticated by dialback", "face", "federation", "pair", "b.test→a.test")
	for _, r := range []*harness.Relay{w.A, w.B} {
		for _, si := range r.Server.Streams() {
			if si.Face == "federation" && si.Bidi && si.Direction == "out" {
				t.Errorf("%s: a bidi federation link although the peer was not authenticated: %+v", r.Name, si)
			}
		}
	}
	harness.Balanced(t, w.A, w.B)
}
