package routing_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestBounceRemoteServerNotFound: a domain that does not resolve (NXDOMAIN)
// or decidedly offers no S2S service (SRV target ".") gets
// remote-server-not-found (cancel), RFC 6120 §10.4.3, for messages, IQ get
// and subscription requests; error stanzas and IQ results are never
// answered.
func TestBounceRemoteServerNotFound(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	s.DNS.SetNoService(t, "noservice.test")
	for _, d := range []string{"nowhere.test", "noservice.test"} {
		out := s.FromInside(t, d)
		out.Send(harness.Message("alice@a.test", "x@"+d, d+"-msg", "hi"))
		out.Send(harness.IQ("alice@a.test/phone", "x@"+d, d+"-iq", "get"))
		out.Send(harness.Presence("alice@a.test", "x@"+d, d+"-sub", "subscribe"))
		out.Send(harness.IQ("alice@a.test/phone", "x@"+d, d+"-res", "result"))
		expectError(t, s.Internal, d+"-msg", "message", "cancel", "remote-server-not-found")
		expectError(t, s.Internal, d+"-iq", "iq", "cancel", "remote-server-not-found")
		expectError(t, s.Internal, d+"-sub", "presence", "cancel", "remote-server-not-found")
	}
	s.Relay.WaitBalanced(t)
	notReceived(t, s.Internal, "nowhere.test-res", "noservice.test-res")
	if d := s.Relay.Router.Stats().Dropped.Load(); d != 2 {
		t.Errorf("dropped %d, want the 2 IQ results (%s)", d, s.Relay.Stats())
	}
}

// TestBounceRemoteServerTimeout: a domain that resolves but cannot be
// reached (the port refuses), or whose server does not accept the relay's
// dialback, gets remote-server-timeout (wait).
func TestBounceRemoteServerTimeout(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test", "rejects.test")
	t.Run("port refuses", func(t *testing.T) {
		s.DNS.SetSRV(t, "down.test", harness.ClosedAddr(t))
		out := s.FromInside(t, "down.test")
		out.Send(harness.Message("alice@a.test", "x@down.test", "down-1", "hi"))
		expectError(t, s.Internal, "down-1", "message", "wait", "remote-server-timeout")
	})
	t.Run("dialback invalid", func(t *testing.T) {
		// rejects.test asks a liar, not the relay, to verify a.test's key.
		liar := harness.NewFakeServer(t, "liar", "a.test")
		liar.SetRefuseVerify(true)
		s.Remote.SetAuthoritativeFunc(func(d string) string {
			if d == "a.test" {
				return liar.Addr
			}
			return s.Relay.FederationAddr
		})
		out := s.FromInside(t, "rejects.test")
		out.Send(harness.Message("alice@a.test", "x@rejects.test", "rej-1", "hi"))
		st := expectError(t, s.Internal, "rej-1", "message", "wait", "remote-server-timeout")
		if _, _, text := st.StanzaError(); !strings.Contains(text, "invalid") {
			t.Errorf("bounce text %q does not say the key was refused", text)
		}
	})
	s.Relay.WaitBalanced(t)
}

// TestCircuitBreaker: breaker.failures consecutive failures open the
// breaker of a domain; while open, stanzas to it bounce at once with
// remote-server-timeout and no connection is attempted; after
// breaker.open_for one probe goes through (half-open); a failed probe
// opens it again, a successful one closes it and the link stays up.
func TestCircuitBreaker(t *testing.T) {
	const refuseDelay = 300 * time.Millisecond
	s := harness.StartSite(t, "breaker: {failures: 2, open_for: 300ms, max_open_for: 2s}", "flaky.test")
	proxy := harness.StartProxy(t, s.Remote.Addr)
	proxy.SetMode(harness.Refuse)
	proxy.SetRefuseDelay(refuseDelay)
	s.DNS.SetSRV(t, "flaky.test", proxy.Addr)
	out := s.FromInside(t, "flaky.test")
	n := 0
	send := func() string {
		n++
		id := fmt.Sprintf("f%d", n)
		out.Send(harness.Message("alice@a.test", "x@flaky.test", id, "hi"))
		return id
	}
	stats := s.Relay.Router.Stats()

	// Two real failures: each bounce waits for the refused connection.
	var opened time.Time
	for range 2 {
		id := send()
		b := s.Relay.WaitBounce(t, id)
		if b.Condition != "remote-server-timeout" || b.Latency < refuseDelay {
			t.Errorf("bounce of %s: %s after %s, want remote-server-timeout after a failed attempt (>= %s)",
				id, b.Condition, b.Latency, refuseDelay)
		}
		expectError(t, s.Internal, id, "message", "wait", "remote-server-timeout")
		// The breaker counts the failure just before the bounce.
		opened = b.At
	}
	attempts := proxy.Accepted()
	if attempts != 2 {
		t.Fatalf("%d connection attempts, want 2", attempts)
	}

	// Open: an immediate bounce, no connection.
	id := send()
	b := s.Relay.WaitBounce(t, id)
	if b.Condition != "remote-server-timeout" || !strings.Contains(b.Text, "circuit breaker open") || b.Latency >= refuseDelay {
		t.Errorf("bounce while open: %s %q after %s, want an immediate remote-server-timeout from the breaker",
			b.Condition, b.Text, b.Latency)
	}
	expectError(t, s.Internal, id, "message", "wait", "remote-server-timeout")
	if got := stats.BreakerBounces.Load(); got != 1 {
		t.Errorf("breaker bounces %d, want 1", got)
	}

	// Half-open after open_for: one probe, which fails: open again.
	sentBefore := n
	waitProbe(t, proxy, send, attempts)
	if at := proxy.AcceptTimes()[attempts]; at.Sub(opened) < 290*time.Millisecond {
		t.Errorf("probe %s after the breaker opened, want breaker.open_for (300ms)", at.Sub(opened))
	}
	attempts++
	// Every stanza sent meanwhile bounces: all from the open breaker but
	// the probe (and any that queued behind it), which waited for the
	// failed attempt.
	slow := 0
	for i := sentBefore + 1; i <= n; i++ {
		b := s.Relay.WaitBounce(t, fmt.Sprintf("f%d", i))
		if !strings.Contains(b.Text, "circuit breaker open") {
			slow++
		}
	}
	if slow == 0 {
		t.Errorf("no stanza bounced from the failed probe")
	}
	id = send()
	if b := s.Relay.WaitBounce(t, id); !strings.Contains(b.Text, "circuit breaker open") {
		t.Errorf("after a failed probe: %q, want the breaker open again", b.Text)
	}
	if got := proxy.Accepted(); got != attempts {
		t.Errorf("%d connection attempts, want %d: one probe", got, attempts)
	}

	// The peer is back: the next probe succeeds, the breaker closes, and
	// the link carries everything from then on.
	proxy.SetMode(harness.Forward)
	probe := waitProbe(t, proxy, send, attempts)
	s.Remote.WaitID(t, probe)
	var ids []string
	for range 3 {
		ids = append(ids, send())
	}
	for _, id := range ids {
		s.Remote.WaitID(t, id)
	}
	if got := proxy.Accepted(); got != attempts+1 {
		t.Errorf("%d connections after recovery, want one link (%d before)", got, attempts)
	}
	s.Relay.WaitBalanced(t)
	t.Logf("%s", s.Relay.Stats())
}

// waitProbe sends a stanza every 50ms, each bounced by the open breaker,
// until one goes through as the half-open probe (the proxy accepts a new
// connection), and returns the id of the last stanza sent: the probe or
// one queued on its link.
func waitProbe(t *testing.T, proxy *harness.Proxy, send func() string, attempts int64) string {
	t.Helper()
	var last string
	harness.Eventually(t, func() bool {
		if proxy.Accepted() > attempts {
			return true
		}
		last = send()
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) && proxy.Accepted() == attempts {
			time.Sleep(5 * time.Millisecond)
		}
		return proxy.Accepted() > attempts
	}, "a half-open probe")
	return last
}

// TestQueueOverflow: while a link is being set up (here to a server that
// accepts TCP and never answers), at most limits.queue_stanzas wait; the
// rest bounce at once with resource-constraint (wait), and the queued ones
// with remote-server-timeout when the attempt gives up.
func TestQueueOverflow(t *testing.T) {
	s := harness.StartSite(t, "limits: {queue_stanzas: 2, connect_timeout: 1s, negotiation_timeout: 1s}", "stall.test")
	proxy := harness.StartProxy(t, s.Remote.Addr)
	proxy.SetMode(harness.Stall)
	s.DNS.SetSRV(t, "stall.test", proxy.Addr)
	out := s.FromInside(t, "stall.test")
	// Two overflow, no more: their bounces travel on the link
	// stall.test → a.test, whose queue has the same bound
	// (TestQueueBoundOnEstablishedLink).
	for i := range 4 {
		out.Send(harness.Message("alice@a.test", "x@stall.test", fmt.Sprintf("q%d", i), "hi"))
	}
	for _, id := range []string{"q2", "q3"} {
		expectError(t, s.Internal, id, "message", "wait", "resource-constraint")
		if b := s.Relay.WaitBounce(t, id); b.Latency > time.Second {
			t.Errorf("%s bounced after %s, want at once", id, b.Latency)
		}
	}
	for _, id := range []string{"q0", "q1"} {
		expectError(t, s.Internal, id, "message", "wait", "remote-server-timeout")
	}
	if got := proxy.Accepted(); got != 1 {
		t.Errorf("%d connections, want one link attempt", got)
	}
	s.Relay.WaitBalanced(t)
}

// TestQueueBoundOnEstablishedLink: limits.queue_stanzas bounds the
// stanzas held for a pair "while its outbound stream is being set up"
// (docs/config.md); a burst on a link that is up is written, not refused.
//
// A regression test: the bound used to apply to established links too, so
// a burst faster than the link's writer was refused with
// resource-constraint although the stream was up (18 of 20 here), and the
// relay's own bounces of it, refused in turn on the link back to the
// sender, were dropped without trace; fixed in 332ee76 (an established link
// now waits for its writer).
func TestQueueBoundOnEstablishedLink(t *testing.T) {
	s := harness.StartSite(t, "limits: {queue_stanzas: 2}", "remote.test")
	out := s.FromInside(t, "remote.test")
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "up", "hi"))
	s.Remote.WaitID(t, "up")
	var burst strings.Builder
	for i := range 20 {
		burst.WriteString(harness.Message("alice@a.test", "bob@remote.test", fmt.Sprintf("b%d", i), "hi"))
	}
	out.Send(burst.String())
	harness.Eventually(t, func() bool {
		stats := s.Relay.Router.Stats()
		return stats.Accepted.Load() == 21 && stats.Balanced()
	}, "the burst to be accounted for (%s)", s.Relay.Stats())
	if b := s.Relay.Bounces(); len(b) > 0 {
		t.Errorf("%d of 20 stanzas on an established link bounced, first: %s %q (%s)",
			len(b), b[0].Condition, b[0].Text, s.Relay.Stats())
	}
	s.Relay.WaitBalanced(t)
}

// TestRemoteCutWhileAuthenticating: a remote server that resets the
// connection while the relay authenticates (after the TCP connection and
// TLS; here at its db:result) gets one more connection before anything
// bounces, so a stanza arrives over the second; one that does it again
// gets its stanzas bounced, remote-server-timeout, after those two
// connections and no third.
func TestRemoteCutWhileAuthenticating(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test", "cutter.test")

	s.Remote.SetCutResults(1)
	out := s.FromInside(t, "remote.test")
	out.Send(harness.Message("alice@a.test", "x@remote.test", "cut-once", "hi"))
	s.Remote.WaitID(t, "cut-once")
	if n := s.Remote.Accepted(); n != 2 {
		t.Errorf("remote.test accepted %d connections, want 2 (the cut one, then the one that carried the stanza)", n)
	}
	notReceived(t, s.Internal, "cut-once") // no bounce came back

	before := s.Remote.Accepted()
	s.Remote.SetCutResults(2)
	out2 := s.FromInside(t, "cutter.test")
	out2.Send(harness.Message("alice@a.test", "x@cutter.test", "cut-twice", "hi"))
	st := expectError(t, s.Internal, "cut-twice", "message", "wait", "remote-server-timeout")
	if _, _, text := st.StanzaError(); !strings.Contains(text, "connection reset") {
		t.Errorf("bounce text %q does not say the connection was reset", text)
	}
	time.Sleep(300 * time.Millisecond) // a third connection would come after dropRetryDelay
	if n := s.Remote.Accepted() - before; n != 2 {
		t.Errorf("cutter.test accepted %d connections, want 2 (one more after the first cut, no third)", n)
	}
	s.Relay.WaitBalanced(t)
}
