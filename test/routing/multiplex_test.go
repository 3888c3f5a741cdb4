package routing_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/s2s"
	"github.com/fedrelay/fedrelay/test/harness"
)

// muxSite is a relay fronting several internal domains, all served by one
// internal server, and a remote server hosting remote.test.
type muxSite struct {
	relay            *harness.Relay
	internal, remote *harness.FakeServer
	from             map[string]*harness.Script // the internal server's streams to remote.test, by domain
}

func startMuxSite(t *testing.T, configYAML string, locals ...string) *muxSite {
	t.Helper()
	return startMuxSiteCerts(t, configYAML, nil, locals...)
}

// startMuxSiteCerts is startMuxSite with certificates of a CA for the
// domains in withCert (cert_file, key_file).
func startMuxSiteCerts(t *testing.T, configYAML string, withCert []string, locals ...string) *muxSite {
	t.Helper()
	var ca *harness.CA
	if len(withCert) > 0 {
		ca = harness.NewCA(t)
	}
	dns := harness.StartDNS(t)
	m := &muxSite{from: map[string]*harness.Script{}}
	m.internal = harness.NewFakeServer(t, "internal "+strings.Join(locals, ","), locals...)
	m.remote = harness.NewFakeServer(t, "remote remote.test", "remote.test")
	var domains []string
	for _, d := range locals {
		entry := fmt.Sprintf("{name: %s, route: %q", d, m.internal.Addr)
		if slices.Contains(withCert, d) {
			cert, key := ca.Issue(t, d)
			entry += fmt.Sprintf(", cert_file: %q, key_file: %q", cert, key)
		}
		domains = append(domains, entry+"}")
	}
	m.relay = harness.StartRelay(t, "domains: ["+strings.Join(domains, ", ")+"]\n"+configYAML,
		harness.WithDNS(dns), harness.WithName("relay"))
	m.internal.SetAuthoritative(m.relay.InternalAddr)
	m.remote.SetAuthoritative(m.relay.FederationAddr)
	dns.SetSRV(t, "remote.test", m.remote.Addr)
	for _, d := range locals {
		dns.SetSRV(t, d, m.relay.FederationAddr)
		m.from[d] = m.internal.Dial(t, m.relay.InternalAddr, d, "remote.test")
	}
	return m
}

// send sends n messages from alice@local to bob@remote.test, with ids
// local-i for i in [from, from+n).
func (m *muxSite) send(local string, from, n int) {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		b.WriteString(harness.Message("alice@"+local, "bob@remote.test", fmt.Sprintf("%s-%d", local, i), "hi"))
	}
	m.from[local].Send(b.String())
}

// received checks that remote.test got the messages local-0 … local-(n-1)
// once each, in order.
func (m *muxSite) received(t *testing.T, local string, n int) {
	t.Helper()
	m.remote.WaitID(t, fmt.Sprintf("%s-%d", local, n-1))
	var got []string
	for _, st := range m.remote.Stanzas() {
		if strings.HasPrefix(st.ID, local+"-") {
			got = append(got, st.ID)
		}
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("%s-%d", local, i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("remote.test got from %s %d messages %v…, want %d in order", local, len(got), got[:min(len(got), 5)], n)
	}
}

// outStreams returns the relay's outbound streams to remote.test.
func (m *muxSite) outStreams() []s2s.StreamInfo {
	var out []s2s.StreamInfo
	for _, si := range m.relay.Server.Streams() {
		if si.Direction == "out" && slices.Equal(si.Remote, []string{"remote.test"}) {
			out = append(out, si)
		}
	}
	return out
}

// TestMultiplexOneStream: two internal domains talking to one remote domain
// share one outbound stream (XEP-0220 §4.3): the second domain is
// authenticated by another db:result on the stream the first opened, the
// remote server accepts one connection, gets every stanza of both in
// order, and the admin API lists one stream with both local domains. Both
// start at once (the second waits for the first's stream), then a third
// joins the stream that is up.
func TestMultiplexOneStream(t *testing.T) {
	m := startMuxSite(t, "", "a.test", "e.test", "i.test")
	var wg sync.WaitGroup
	for _, d := range []string{"a.test", "e.test"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i += 10 {
				m.send(d, i, 10)
			}
		}()
	}
	wg.Wait()
	m.received(t, "a.test", 100)
	m.received(t, "e.test", 100)
	m.send("i.test", 0, 50)
	m.received(t, "i.test", 50)
	if n := m.remote.Accepted(); n != 1 {
		t.Errorf("remote.test's server accepted %d connections, want 1 (one stream for the three pairs)", n)
	}
	waitFor(t, "250 written", func() bool { s := m.outStreams(); return len(s) == 1 && s[0].StanzasOut == 250 })
	streams := m.outStreams()
	if len(streams) != 1 {
		t.Fatalf("the admin API lists %d outbound streams to remote.test, want 1: %+v", len(streams), streams)
	}
	if si := streams[0]; !slices.Equal(si.Local, []string{"a.test", "e.test", "i.test"}) || si.StanzasOut != 250 || !si.Up {
		t.Errorf("the stream lists local %v, %d stanzas written, up %v; want [a.test e.test i.test], 250, true", si.Local, si.StanzasOut, si.Up)
	}
	if n := m.relay.Server.Stats().Multiplexed.Load(); n != 2 {
		t.Errorf("%d links multiplexed, want 2", n)
	}
	// Replies come back on remote.test's own streams, one per pair.
	for _, d := range []string{"a.test", "e.test"} {
		in := m.remote.Dial(t, m.relay.FederationAddr, "remote.test", d)
		in.Send(harness.Message("bob@remote.test", "alice@"+d, "re-"+d, "hi"))
		m.internal.WaitID(t, "re-"+d)
	}
	stats := m.relay.Router.Stats()
	m.relay.WaitBalanced(t)
	if a, d, b := stats.Accepted.Load(), stats.Delivered.Load(), stats.Bounced.Load(); a != 252 || d != 252 || b != 0 {
		t.Errorf("accepted %d, delivered %d, bounced %d; want 252, 252, 0", a, d, b)
	}
}

// TestMultiplexRefused: a peer that will not take a second domain on a
// stream (it answers the db:result with type='error' or 'invalid', or not
// at all) gets a stream per pair, as without multiplexing, and nothing is
// lost; the relay remembers the refusal, so a third domain opens its own
// stream without asking.
func TestMultiplexRefused(t *testing.T) {
	for _, how := range []string{"error", "invalid", "ignore"} {
		t.Run(how, func(t *testing.T) {
			m := startMuxSite(t, "limits: {negotiation_timeout: 2s}", "a.test", "e.test", "i.test")
			m.remote.SetRefuseMultiplex(how)
			m.send("a.test", 0, 20)
			m.remote.WaitID(t, "a.test-0")
			m.send("e.test", 0, 20)
			m.send("a.test", 20, 20)
			m.received(t, "e.test", 20)
			m.received(t, "a.test", 40)
			m.send("i.test", 0, 20)
			m.received(t, "i.test", 20)
			if n := m.remote.Accepted(); n != 3 {
				t.Errorf("remote.test's server accepted %d connections, want 3 (one per pair)", n)
			}
			ss := m.relay.Server.Stats()
			if r, x := ss.MultiplexRefused.Load(), ss.Multiplexed.Load(); r != 1 || x != 0 {
				t.Errorf("%d links refused multiplexing, %d multiplexed; want 1, 0", r, x)
			}
			if !m.relay.Logs.Has("the peer does not take another domain on a stream; opening one for this pair") {
				t.Errorf("the refusal was not logged")
			}
			stats := m.relay.Router.Stats()
			m.relay.WaitBalanced(t)
			if d, b := stats.Delivered.Load(), stats.Bounced.Load(); d != 80 || b != 0 {
				t.Errorf("delivered %d, bounced %d; want 80, 0", d, b)
			}
		})
	}
}

// TestMultiplexStreamDies: when the stream two pairs share dies, each
// pair's stanzas that the peer had not acknowledged (XEP-0198, whose count
// spans the whole stream) are sent again on a new shared stream: every
// stanza arrives once, none bounces. Without stream management a stream
// cut while idle is replaced by one shared stream too.
func TestMultiplexStreamDies(t *testing.T) {
	t.Run("stream management", func(t *testing.T) {
		m := startMuxSite(t, "limits: {ack_timeout: 1s}", "a.test", "e.test")
		m.remote.SetStreamManagement(true)
		stats := m.relay.Router.Stats()
		m.send("a.test", 0, 30)
		m.remote.WaitID(t, "a.test-0")
		m.send("e.test", 0, 30)
		waitFor(t, "60 acknowledged", func() bool { return stats.Acknowledged.Load() == 60 })
		if s := m.outStreams(); len(s) != 1 || !s[0].StreamManagement || s[0].Acknowledged != 60 {
			t.Fatalf("streams to remote.test: %+v; want one with stream management, 60 acknowledged", s)
		}
		m.remote.Lose()
		m.send("a.test", 30, 30)
		m.send("e.test", 30, 30)
		waitFor(t, "120 written", func() bool { s := m.outStreams(); return len(s) == 1 && s[0].StanzasOut == 120 })
		if a := stats.Acknowledged.Load(); a != 60 {
			t.Errorf("acknowledged %d with 60 written to a lost connection; want 60", a)
		}
		m.remote.Cut()
		m.received(t, "a.test", 60)
		m.received(t, "e.test", 60)
		waitFor(t, "all 120 acknowledged", func() bool { return stats.Acknowledged.Load() == 120 })
		if n := m.remote.Accepted(); n != 2 {
			t.Errorf("remote.test's server accepted %d connections, want 2 (a shared stream, then its successor)", n)
		}
		if b := stats.Bounced.Load(); b != 0 {
			t.Errorf("%d bounced, want none", b)
		}
		m.relay.WaitBalanced(t)
	})
	t.Run("no stream management", func(t *testing.T) {
		m := startMuxSite(t, "", "a.test", "e.test")
		stats := m.relay.Router.Stats()
		m.send("a.test", 0, 10)
		m.remote.WaitID(t, "a.test-0")
		m.send("e.test", 0, 10)
		m.received(t, "e.test", 10)
		m.received(t, "a.test", 10)
		m.remote.Lose()
		m.remote.Cut()
		waitFor(t, "the stream gone", func() bool { return len(m.outStreams()) == 0 })
		m.send("e.test", 10, 10)
		m.send("a.test", 10, 10)
		m.received(t, "e.test", 20)
		m.received(t, "a.test", 20)
		if n := m.remote.Accepted(); n != 2 {
			t.Errorf("remote.test's server accepted %d connections, want 2", n)
		}
		m.relay.WaitBalanced(t)
		if d, b := stats.Delivered.Load(), stats.Bounced.Load(); d != 40 || b != 0 {
			t.Errorf("delivered %d, bounced %d; want 40, 0", d, b)
		}
	})
}

// TestMultiplexOff: with limits.multiplex false each pair has its stream.
func TestMultiplexOff(t *testing.T) {
	m := startMuxSite(t, "limits: {multiplex: false}", "a.test", "e.test")
	m.send("a.test", 0, 10)
	m.remote.WaitID(t, "a.test-0")
	m.send("e.test", 0, 10)
	m.received(t, "a.test", 10)
	m.received(t, "e.test", 10)
	if n := m.remote.Accepted(); n != 2 {
		t.Errorf("remote.test's server accepted %d connections, want 2", n)
	}
	m.relay.WaitBalanced(t)
}

// TestMultiplexPendingIQ: IQ requests are tracked per pair on a shared
// stream: when the stream dies, the unanswered request of the pair that
// rode it gets its remote-server-timeout error, the answered one of the
// pair that opened it nothing more.
func TestMultiplexPendingIQ(t *testing.T) {
	m := startMuxSite(t, "", "a.test", "e.test")
	m.from["a.test"].Send(harness.IQ("alice@a.test/phone", "bob@remote.test/laptop", "qa", "get"))
	m.remote.WaitID(t, "qa")
	m.from["e.test"].Send(harness.IQ("alice@e.test/phone", "bob@remote.test/laptop", "qe", "get"))
	m.remote.WaitID(t, "qe")
	if n := m.remote.Accepted(); n != 1 {
		t.Fatalf("remote.test's server accepted %d connections, want 1", n)
	}
	in := m.remote.Dial(t, m.relay.FederationAddr, "remote.test", "a.test")
	in.Send(harness.IQ("bob@remote.test/laptop", "alice@a.test/phone", "qa", "result"))
	m.internal.Wait(t, "the answer to qa", func(st harness.Stanza) bool { return st.ID == "qa" && st.Type == "result" })

	m.remote.Lose()
	m.remote.Cut()
	got := m.internal.Wait(t, "an error for qe", func(st harness.Stanza) bool { return st.ID == "qe" })
	if typ, cond, _ := got.StanzaError(); got.Type != "error" || typ != "wait" || cond != "remote-server-timeout" ||
		got.To != "alice@e.test/phone" {
		t.Errorf("e.test received %s, want a remote-server-timeout error for alice@e.test", got.Raw)
	}
	if n := m.internal.Count(func(st harness.Stanza) bool { return st.ID == "qa" }); n != 1 {
		t.Errorf("a.test received %d stanzas for the answered qa, want only its result", n)
	}
	m.relay.WaitBalanced(t)
	if n := m.relay.Router.Stats().PendingIQErrors.Load(); n != 1 {
		t.Errorf("PendingIQErrors = %d, want 1", n)
	}
}

// TestMultiplexIdle: the shared stream is idle when all its pairs are: a
// pair that stays busy keeps it open for the one that went quiet, and once
// both are quiet for limits.idle_timeout it closes, with both pairs.
func TestMultiplexIdle(t *testing.T) {
	m := startMuxSite(t, "limits: {idle_timeout: 1s}", "a.test", "e.test")
	m.send("a.test", 0, 1)
	m.remote.WaitID(t, "a.test-0")
	for i := range 8 {
		m.send("e.test", i, 1)
		m.remote.WaitID(t, fmt.Sprintf("e.test-%d", i))
		time.Sleep(300 * time.Millisecond)
	}
	if s := m.outStreams(); len(s) != 1 || !slices.Equal(s[0].Local, []string{"a.test", "e.test"}) {
		t.Fatalf("after 2.4 s of traffic from e.test only, streams to remote.test: %+v; want the shared one", s)
	}
	if n := m.remote.Accepted(); n != 1 {
		t.Errorf("remote.test's server accepted %d connections, want 1", n)
	}
	waitFor(t, "the idle stream closed", func() bool { return len(m.outStreams()) == 0 })
	for _, si := range m.relay.Server.Streams() {
		if si.Direction == "out" {
			t.Errorf("a link is left: %+v", si)
		}
	}
	m.send("e.test", 8, 1)
	m.send("a.test", 1, 1)
	m.received(t, "e.test", 9)
	m.received(t, "a.test", 2)
	m.relay.WaitBalanced(t)
}

// TestMultiplexPolicyReload: a reload that withdraws federation with the
// remote domain closes the shared stream once (policy-violation) and ends
// every pair on it, and the counts balance.
func TestMultiplexPolicyReload(t *testing.T) {
	m := startMuxSite(t, "", "a.test", "e.test")
	m.send("a.test", 0, 5)
	m.remote.WaitID(t, "a.test-0")
	m.send("e.test", 0, 5)
	m.received(t, "e.test", 5)
	m.relay.ReloadYAML(t, fmt.Sprintf("domains: [{name: a.test, route: %[1]q}, {name: e.test, route: %[1]q}]\npolicy: {deny: [remote.test]}", m.internal.Addr))
	m.relay.Logs.Wait(t, "configuration reloaded")
	m.remote.WaitStreamError(t, "policy-violation")
	waitFor(t, "no link left", func() bool { return len(m.outStreams()) == 0 })
	if errs := m.remote.StreamErrors(); len(errs) != 1 {
		t.Errorf("remote.test's server got stream errors %v, want one policy-violation", errs)
	}
	waitFor(t, "both pairs' links ended", func() bool { return m.relay.Server.Stats().OutboundOpen.Load() == 0 })
	m.relay.WaitBalanced(t)
}

// TestMultiplexNotWithCertificate: a domain with a certificate of its own
// (cert_file, for SASL EXTERNAL) does not ride another domain's stream,
// where its peer could authenticate it by dialback only; its own stream
// carries the domains that authenticate by dialback anyway.
func TestMultiplexNotWithCertificate(t *testing.T) {
	m := startMuxSiteCerts(t, "", []string{"c.test"}, "a.test", "c.test", "e.test")
	m.send("a.test", 0, 5)
	m.remote.WaitID(t, "a.test-0")
	m.send("c.test", 0, 5)
	m.received(t, "c.test", 5)
	m.send("e.test", 0, 5)
	m.received(t, "e.test", 5)
	m.received(t, "a.test", 5)
	if n := m.remote.Accepted(); n != 2 {
		t.Errorf("remote.test's server accepted %d connections, want 2 (a.test and e.test on one, c.test on its own)", n)
	}
	var locals [][]string
	for _, si := range m.outStreams() {
		locals = append(locals, si.Local)
	}
	slices.SortFunc(locals, slices.Compare)
	if want := [][]string{{"a.test", "e.test"}, {"c.test"}}; !slices.EqualFunc(locals, want, slices.Equal) {
		t.Errorf("streams to remote.test carry %v, want %v", locals, want)
	}
	m.relay.WaitBalanced(t)
}

// TestMultiplexReplyOnFirstStream: Prosody sends what the server itself
// says to a domain that rode the relay's shared stream (the result of a
// disco#info to the server, an error) on its own stream to the shared
// stream's first domain. The relay takes it there while the pair rides the
// shared stream; otherwise such a stanza still closes the stream with
// host-unknown.
func TestMultiplexReplyOnFirstStream(t *testing.T) {
	m := startMuxSite(t, "", "a.test", "e.test", "i.test")
	m.send("a.test", 0, 1)
	m.remote.WaitID(t, "a.test-0")
	m.from["e.test"].Send(harness.IQ("alice@e.test/phone", "remote.test", "disco-1", "get"))
	m.remote.WaitID(t, "disco-1")
	in := m.remote.Dial(t, m.relay.FederationAddr, "remote.test", "a.test")
	in.Send(harness.IQ("remote.test", "alice@e.test/phone", "disco-1", "result"))
	m.internal.Wait(t, "the answer to disco-1", func(st harness.Stanza) bool { return st.ID == "disco-1" && st.Type == "result" })
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "still-open", "hi"))
	m.internal.WaitID(t, "still-open")
	// i.test has no link riding the stream: not accepted.
	in.Send(harness.Message("bob@remote.test", "alice@i.test", "misdirected", "hi"))
	in.ExpectStreamError("host-unknown")
	notReceived(t, m.internal, "misdirected")
	m.relay.WaitBalanced(t)
}

// TestMultiplexPeerBusy: a peer that answers the db:result with a
// transient error (remote-server-not-found: ejabberd, when its connection
// to the Authoritative server failed) has not refused multiplexing: the
// pair gets a stream of its own this time, and the next pair tries the
// shared stream again.
func TestMultiplexPeerBusy(t *testing.T) {
	m := startMuxSite(t, "", "a.test", "e.test", "i.test")
	m.send("a.test", 0, 5)
	m.remote.WaitID(t, "a.test-0")
	m.remote.SetRefuseMultiplex("busy")
	m.send("e.test", 0, 5)
	m.received(t, "e.test", 5)
	m.remote.SetRefuseMultiplex("")
	m.send("i.test", 0, 5)
	m.received(t, "i.test", 5)
	m.received(t, "a.test", 5)
	if n := m.remote.Accepted(); n != 2 {
		t.Errorf("remote.test's server accepted %d connections, want 2 (a.test and i.test on one, e.test on its own)", n)
	}
	ss := m.relay.Server.Stats()
	if r, x := ss.MultiplexRefused.Load(), ss.Multiplexed.Load(); r != 0 || x != 1 {
		t.Errorf("%d links refused multiplexing, %d multiplexed; want 0, 1", r, x)
	}
	m.relay.WaitBalanced(t)
}
