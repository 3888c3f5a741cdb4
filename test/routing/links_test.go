package routing_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/test/harness"
)

// twoRoutes is a site fronting a.test, whose route is a proxy that can
// freeze or drop its connections, and b.test, a second internal domain on a
// server of its own.
type twoRoutes struct {
	*harness.Site
	Proxy *harness.Proxy
	B     *harness.FakeServer
}

func startTwoRoutes(t *testing.T, extra string) *twoRoutes {
	t.Helper()
	b := harness.NewFakeServer(t, "internal b.test", "b.test")
	// The proxy's target is only known once the site exists: start it on a
	// placeholder, then point a.test's route at it.
	internalA := harness.NewFakeServer(t, "internal a.test (behind the proxy)", "a.test")
	proxy := harness.StartProxy(t, internalA.Addr)
	conf := fmt.Sprintf("domains: [{name: a.test, route: %q}, {name: b.test, route: %q}]\n%s", proxy.Addr, b.Addr, extra)
	s := harness.StartSite(t, conf, "remote.test")
	internalA.SetAuthoritative(s.Relay.InternalAddr)
	b.SetAuthoritative(s.Relay.InternalAddr)
	s.Internal = internalA
	s.DNS.SetSRV(t, "b.test", s.Relay.FederationAddr)
	return &twoRoutes{Site: s, Proxy: proxy, B: b}
}

// pollFor polls cond until it holds or d passes.
func pollFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// bigMessage is a message of about size bytes.
func bigMessage(from, to, id string, size int) string {
	return harness.Message(from, to, id, strings.Repeat("x", size))
}

// TestStuckRouteDoesNotSlowOtherPairs: one inbound stream carries two
// pairs, remote.test→a.test and remote.test→b.test. a.test's server stops
// reading; its link fills up. A stanza for a.test waits at most
// limits.stall_timeout for room, after which the link refuses at once until
// its writer moves again (and the stream never waits more than
// limits.stall_budget in all): the stanzas for a.test bounce with
// resource-constraint, and the messages for b.test keep flowing. (Before, each stanza for the stuck link could hold the whole stream
// for limits.negotiation_timeout.)
func TestStuckRouteDoesNotSlowOtherPairs(t *testing.T) {
	s := startTwoRoutes(t, `limits: {queue_stanzas: 20, queue_bytes: 1000000, stall_timeout: 10ms, stall_budget: 200ms, write_timeout: 20s}`)
	in := s.FromOutside(t, "remote.test")
	if typ, cond, err := in.Dialback(s.Remote.Secret(), "remote.test", "b.test"); err != nil || typ != dialback.TypeValid {
		t.Fatalf("second pair: %v %s %v", typ, cond, err)
	}
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "warm-a", "hi"))
	in.Send(harness.Message("bob@remote.test", "carol@b.test", "warm-b", "hi"))
	s.Internal.WaitID(t, "warm-a")
	s.B.WaitID(t, "warm-b")

	s.Proxy.Freeze(true)
	defer s.Proxy.Freeze(false)
	// One round in flight at a time: 30 big messages for a.test, then one
	// for b.test, and the next round once that one has arrived. The
	// latency is then the relay's time for one round, stalls included, and
	// not the megabytes the test's socket buffers hold in front of the
	// relay: with all rounds sent at once, a b.test message queued behind
	// up to 24 MB, whose parsing alone took a p90 of 108 ms under -race on
	// a loaded CI machine. The a.test messages fill the kernel's buffers
	// towards the frozen proxy within a few rounds, then the link's queue:
	// most rounds run beside a full link.
	const rounds, perRound = 100, 30
	var lat []time.Duration
	for r := 0; r < rounds; r++ {
		var batch strings.Builder
		for i := 0; i < perRound; i++ {
			batch.WriteString(bigMessage("bob@remote.test", "alice@a.test", fmt.Sprintf("a-%d-%d", r, i), 8000))
		}
		id := fmt.Sprintf("b-%d", r)
		batch.WriteString(harness.Message("bob@remote.test", "carol@b.test", id, "still flowing?"))
		sent := time.Now()
		in.Send(batch.String())
		st := s.B.WaitID(t, id)
		lat = append(lat, st.At.Sub(sent))
	}
	slices.Sort(lat)
	p50, p90, worst := lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1]
	t.Logf("b.test latency beside a stuck a.test: p50 %s, p90 %s, max %s", p50, p90, worst)
	if worst > 2*time.Second {
		t.Errorf("a message for b.test waited %s behind the stuck a.test (stall budget 200ms)", worst)
	}
	if p90 > 100*time.Millisecond {
		t.Errorf("p90 latency for b.test %s beside a stuck a.test, want a few ms", p90)
	}
	// What did not fit came back to the sender as resource-constraint.
	harness.Eventually(t, func() bool {
		return s.Remote.Count(func(st harness.Stanza) bool { return st.Type == "error" && strings.HasPrefix(st.ID, "a-") }) > 0
	}, "bounces for the stuck a.test")
	var cond string
	for _, st := range s.Remote.Stanzas() {
		if st.Type == "error" && strings.HasPrefix(st.ID, "a-") {
			_, cond, _ = st.StanzaError()
			break
		}
	}
	if cond != "resource-constraint" {
		t.Errorf("bounce condition %q, want resource-constraint", cond)
	}
	s.Proxy.Freeze(false)
	s.Relay.WaitBalanced(t)
}

// TestCloseIsImmediate: Server.Close with idle authenticated streams both
// ways (inbound on both faces, outbound links) returns at once, without
// waiting for any peer.
func TestCloseIsImmediate(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	in := s.FromOutside(t, "remote.test")
	out := s.FromInside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "c-in", "hi"))
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "c-out", "hi"))
	s.Internal.WaitID(t, "c-in")
	s.Remote.WaitID(t, "c-out")
	start := time.Now()
	s.Relay.Server.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s with idle streams", d)
	}
	if n := s.Relay.Server.Stats().InboundOpen.Load() + s.Relay.Server.Stats().OutboundOpen.Load(); n != 0 {
		t.Errorf("%d streams still open after Close", n)
	}
	s.Relay.WaitBalanced(t)
}

// TestShutdownKeepsItsDeadline: with a link whose peer stopped reading and
// stanzas still queued, Shutdown with a 300 ms context returns within
// 500 ms, and every stanza accepted is counted delivered, bounced or
// dropped.
func TestShutdownKeepsItsDeadline(t *testing.T) {
	s := startTwoRoutes(t, `limits: {queue_stanzas: 200, write_timeout: 20s}`)
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "warm", "hi"))
	s.Internal.WaitID(t, "warm")
	s.Proxy.Freeze(true)
	defer s.Proxy.Freeze(false)
	// Enough to fill the socket buffers and the link's queue.
	var batch strings.Builder
	for i := 0; i < 4000; i++ {
		batch.WriteString(bigMessage("bob@remote.test", "alice@a.test", fmt.Sprint("q-", i), 8000))
	}
	go in.Write(batch.String())
	st := s.Relay.Router.Stats()
	harness.Eventually(t, func() bool {
		return st.Accepted.Load()-st.Delivered.Load()-st.Bounced.Load()-st.Dropped.Load() >= 150
	}, "stanzas to wait in the stuck link's queue")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Relay.Shutdown(ctx)
	took := time.Since(start)
	t.Logf("Shutdown returned %v after %s; %s", err, took, s.Relay.Stats())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the context's deadline", err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("Shutdown took %s with a 300 ms context", took)
	}
	s.Relay.WaitBalanced(t)
}

// TestWriteDeadline: an authenticated peer that sends db:verify after
// db:verify and never reads the answers is cut off when a write to it has
// waited limits.write_timeout; the relay logs its repeated requests a few
// times, not once each.
func TestWriteDeadline(t *testing.T) {
	s := harness.StartSite(t, `limits: {write_timeout: 1s}`, "remote.test")
	in := s.FromOutside(t, "remote.test")
	before := s.Relay.Server.Stats().InboundOpen.Load()
	logsBefore := len(s.Relay.Logs.Records())
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		v := dialback.Element{Kind: dialback.KindVerify, From: "remote.test", To: "a.test", ID: "x", Key: "0123456789abcdef"}
		chunk := strings.Repeat(string(v.Append(nil)), 200)
		for !stop.Load() {
			if in.Write(chunk) != nil {
				return
			}
		}
	}()
	defer func() { stop.Store(true); <-done }()
	start := time.Now()
	// The write blocks only once the loopback socket buffers (several MB,
	// autotuned) are full of answers: 6 to 10 s here, longer under -race
	// on a loaded machine; then the cut comes within write_timeout.
	if !pollFor(45*time.Second, func() bool { return s.Relay.Server.Stats().InboundOpen.Load() < before }) {
		t.Fatalf("the relay did not cut the peer off within 45 s")
	}
	t.Logf("cut off after %s", time.Since(start))
	if n := len(s.Relay.Logs.Records()) - logsBefore; n > 50 {
		t.Errorf("%d log lines for one peer's repeated element", n)
	}
}

// TestSlowAuthoritative: when the Authoritative server of the sender domain
// accepts but never answers, the relay answers the peer's db:result with
// type='error' before the stream's negotiation deadline, and the stream
// lives on (XEP-0220 §2.4), instead of ending it with connection-timeout.
func TestSlowAuthoritative(t *testing.T) {
	s := harness.StartSite(t, `limits: {negotiation_timeout: 5s, connect_timeout: 2s}`, "remote.test")
	stall := harness.StartProxy(t, harness.ClosedAddr(t))
	stall.SetMode(harness.Stall)
	s.DNS.SetSRV(t, "slow.test", stall.Addr)
	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Negotiate("slow.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	typ, cond, err := sc.DialbackKey("slow.test", "a.test", "0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatalf("after %s: %v (want db:result type='error')", time.Since(start), err)
	}
	t.Logf("answer after %s: %v %s", time.Since(start), typ, cond)
	if typ != dialback.TypeError || cond != "remote-connection-failed" {
		t.Errorf("answer %v %s, want error remote-connection-failed", typ, cond)
	}
	sc.ExpectOpen(200 * time.Millisecond)
}

// TestVerificationDuringRestart: a dialback verification still running
// when its stream restarts (db:result before STARTTLS, on a relay that does
// not require TLS) must not race with the restart: the stream's logger is
// replaced on the owner while the verification logs its outcome. Run with
// -race.
func TestVerificationDuringRestart(t *testing.T) {
	s := harness.StartSite(t, `tls: {required: false}
limits: {negotiation_timeout: 3s, connect_timeout: 1s}`, "remote.test")
	// The Authoritative server accepts, holds the connection 500 ms and
	// closes it: the verification fails while the stream, restarted by
	// then, waits for more input.
	stall := harness.StartProxy(t, harness.ClosedAddr(t))
	stall.SetMode(harness.Refuse)
	stall.SetRefuseDelay(500 * time.Millisecond)
	s.DNS.SetSRV(t, "slow.test", stall.Addr)
	sc := harness.Dial(t, s.Relay.FederationAddr)
	if err := sc.Open("slow.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	req := dialback.Element{Kind: dialback.KindResult, From: "slow.test", To: "a.test", Key: "0123456789abcdef0123456789abcdef"}
	if err := sc.Write(string(req.Append(nil))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, func() bool { return stall.Accepted() > 0 }, "the verification to start")
	if err := sc.StartTLS("slow.test", "a.test"); err != nil {
		t.Fatal(err)
	}
	s.Relay.Logs.Wait(t, "dialback: authoritative server not reached")
}

// TestInternalRouteOutage: the internal server of a.test goes away for
// about 2 s (its connections dropped, new ones refused) while the
// federation keeps sending. The relay retries the route with a short
// backoff, holding the stanzas (limits.route_retry), and delivers them all
// once it is back: nothing bounces, although the breaker is configured as
// for remote domains (30 s open).
func TestInternalRouteOutage(t *testing.T) {
	s := startTwoRoutes(t, `limits: {route_retry: 5s}
breaker: {failures: 3, open_for: 30s, max_open_for: 1m}`)
	in := s.FromOutside(t, "remote.test")
	for i := 0; i < 10; i++ {
		in.Send(harness.Message("bob@remote.test", "alice@a.test", fmt.Sprint("before-", i), "hi"))
	}
	s.Internal.WaitID(t, "before-9")

	s.Proxy.SetMode(harness.Refuse)
	s.Proxy.DropAll()
	// A stanza written to the dropped connection before the relay noticed
	// would be lost, counted delivered (TCP took it): only stream
	// management (XEP-0198) can tell; this test is about the outage.
	harness.Eventually(t, func() bool { return s.Relay.Server.Stats().OutboundOpen.Load() == 0 }, "the relay to see the drop")
	const n = 100
	for i := 0; i < n; i++ {
		in.Send(harness.Message("bob@remote.test", "alice@a.test", fmt.Sprint("during-", i), "hi"))
		time.Sleep(20 * time.Millisecond)
	}
	s.Proxy.SetMode(harness.Forward)
	during := func(st harness.Stanza) bool { return strings.HasPrefix(st.ID, "during-") }
	if !pollFor(harness.WaitTimeout, func() bool { return s.Internal.Count(during) == n }) {
		t.Fatalf("%d of %d messages sent during the outage arrived; %d bounced; %s", s.Internal.Count(during), n,
			s.Remote.Count(func(st harness.Stanza) bool { return st.Type == "error" }), s.Relay.Stats())
	}
	if b := s.Remote.Count(func(st harness.Stanza) bool { return st.Type == "error" }); b != 0 {
		t.Errorf("%d bounces for a 2 s outage of the internal server", b)
	}
	if s.Proxy.Accepted() < 3 {
		t.Errorf("the route was tried %d times", s.Proxy.Accepted())
	}
	s.Relay.WaitBalanced(t)
}

// TestBounceCycleBetweenStuckLinks: the internal server of a.test and the
// remote server of remote.test both stop reading. Stanzas from remote.test
// to a.test fill a.test's link and bounce; their bounces go to remote.test's
// link, which is stuck too. Bounces never wait for room (and a bounce that
// cannot be placed is dropped, never answered), so the inbound stream is
// not held: the relay keeps reading it, and every stanza is accounted for.
func TestBounceCycleBetweenStuckLinks(t *testing.T) {
	s := startTwoRoutes(t, `limits: {queue_stanzas: 20, queue_bytes: 1000000, stall_timeout: 50ms, stall_budget: 500ms}`)
	remoteProxy := harness.StartProxy(t, s.Remote.Addr)
	s.DNS.SetSRV(t, "remote.test", remoteProxy.Addr)
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "warm", "hi"))
	s.Internal.WaitID(t, "warm")
	// The link back to remote.test (where bounces go) is up, through its
	// proxy.
	s.FromInside(t, "remote.test").Send(harness.Message("alice@a.test", "bob@remote.test", "warm-back", "hi"))
	s.Remote.WaitID(t, "warm-back")

	s.Proxy.Freeze(true)
	remoteProxy.Freeze(true)
	defer s.Proxy.Freeze(false)
	defer remoteProxy.Freeze(false)
	var batch strings.Builder
	for i := 0; i < 3000; i++ {
		batch.WriteString(bigMessage("bob@remote.test", "alice@a.test", fmt.Sprint("cyc-", i), 8000))
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- in.Write(batch.String()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writing to the relay: %v", err)
		}
	case <-time.After(3 * time.Second):
		// 0.4-0.5 s here under -race; before bounded stalls, 5 s and more
		// (one negotiation_timeout wait per stuck round).
		t.Fatalf("the relay held the stream: 24 MB not taken in 3 s (%s)", s.Relay.Stats())
	}
	t.Logf("24 MB taken in %s; %s", time.Since(start), s.Relay.Stats())
	st := s.Relay.Router.Stats()
	harness.Eventually(t, func() bool { return st.Accepted.Load() >= 3000 }, "the relay to read every stanza")
	s.Proxy.Freeze(false)
	remoteProxy.Freeze(false)
	s.Relay.WaitBalanced(t)
}

// TestStalledRouteManyPairs: 200 remote domains send to a.test over one
// inbound stream while a.test's internal server accepts connections and
// never answers. The links of the 200 pairs share the route's limits: at
// most limits.route_setups connections are being set up at once, and at
// most limits.route_queue_bytes wait for them, all pairs together; the rest
// bounce at once with resource-constraint. (Before, the relay opened one
// connection per pair and held up to limits.queue_bytes for each: 200
// connections and about 1 GB.) When the server answers again, what was
// held is delivered.
func TestStalledRouteManyPairs(t *testing.T) {
	const pairs, size, budget = 200, 8000, 400000
	remotes := make([]string, pairs)
	for i := range remotes {
		remotes[i] = fmt.Sprintf("r%d.test", i)
	}
	internalA := harness.NewFakeServer(t, "internal a.test (behind the proxy)", "a.test")
	proxy := harness.StartProxy(t, internalA.Addr)
	proxy.SetMode(harness.Stall)
	conf := fmt.Sprintf("domains: [{name: a.test, route: %q}]\n"+
		"limits: {max_stanza_bytes: 262144, route_setups: 4, route_queue_bytes: %d, connect_timeout: 5s, negotiation_timeout: 5s, route_retry: 5s, max_streams_per_ip: 1000}", proxy.Addr, budget)
	s := harness.StartSite(t, conf, remotes...)
	internalA.SetAuthoritative(s.Relay.InternalAddr)
	s.Internal = internalA

	in := s.FromOutside(t, remotes[0])
	for _, r := range remotes[1:] {
		if typ, cond, err := in.Dialback(s.Remote.Secret(), r, "a.test"); err != nil || typ != dialback.TypeValid {
			t.Fatalf("pair %s→a.test: %v %s %v", r, typ, cond, err)
		}
	}
	var batch strings.Builder
	for i, r := range remotes {
		batch.WriteString(bigMessage("bob@"+r, "alice@a.test", fmt.Sprintf("m-%d", i), size))
	}
	in.Send(batch.String())

	// What does not fit in the route's budget bounces at once, with
	// resource-constraint; the rest waits for 4 connections at most.
	bounces := func() int { return s.Remote.Count(func(st harness.Stanza) bool { return st.Type == "error" }) }
	t.Logf("sent at %s, route_setups %d", time.Now().Format("15:04:05.000"), s.Relay.Config.Limits.RouteSetups)
	harness.Eventually(t, func() bool { return bounces() >= pairs-budget/size }, "resource-constraint bounces beyond the route's budget")
	t.Logf("bounced %d at %s", bounces(), time.Now().Format("15:04:05.000"))
	time.Sleep(300 * time.Millisecond)
	for _, st := range s.Remote.Stanzas() {
		if _, cond, _ := st.StanzaError(); st.Type == "error" && cond != "resource-constraint" {
			t.Errorf("bounce %s: %s, want resource-constraint", st.ID, cond)
		}
	}
	held := pairs - bounces()
	t.Logf("held %d of %d stanzas (route budget %d bytes); connections to the stalled route: peak %d, accepted %d",
		held, pairs, budget, proxy.Peak(), proxy.Accepted())
	if n := proxy.Peak(); n > 4 {
		t.Errorf("%d connections to the stalled route at once, want at most limits.route_setups (4)", n)
	}
	if held*size > budget {
		t.Errorf("%d stanzas of %d bytes held for the route, beyond its %d-byte budget", held, size, budget)
	}

	// The server answers again: the links retry (limits.route_retry) and
	// deliver what they held.
	proxy.SetMode(harness.Forward)
	proxy.DropAll()
	harness.Eventually(t, func() bool {
		return internalA.Count(func(harness.Stanza) bool { return true })+bounces() >= pairs
	}, "every stanza delivered or bounced")
	delivered := internalA.Count(func(harness.Stanza) bool { return true })
	t.Logf("delivered %d, bounced %d of %d", delivered, bounces(), pairs)
	if delivered != held {
		t.Errorf("delivered %d of the %d held once the route answered", delivered, held)
	}
	s.Relay.WaitBalanced(t)
}

// TestDeadDomainsLeaveNothing: the internal server sends to 100 remote
// domains that do not exist. Each bounce needs a stream from the dead
// domain to the internal server; that stream, having carried only the
// relay's own stanzas, closes after limits.bounce_idle_timeout instead of
// staying for limits.idle_timeout (before, each dead domain left a stream,
// two goroutines and about 145 KiB for 15 minutes).
func TestDeadDomainsLeaveNothing(t *testing.T) {
	const dead = 100
	// The fakes connect from one address: more streams than the default
	// per-address limit.
	s := harness.StartSite(t, "limits: {bounce_idle_timeout: 300ms, idle_timeout: 1m, max_streams_per_ip: 1000}", "remote.test")
	names := make([]string, dead)
	for i := range names {
		names[i] = fmt.Sprintf("dead%d.test", i)
		s.DNS.SetNoService(t, names[i])
	}
	stats := s.Relay.Server.Stats()
	base := stats.OutboundOpen.Load()
	ins := make([]*harness.Script, 0, dead)
	for _, d := range names {
		ins = append(ins, s.FromInside(t, d))
	}
	for i, in := range ins {
		in.Send(harness.Message("alice@a.test", "bob@"+names[i], fmt.Sprintf("d-%d", i), "anyone there?"))
	}
	for i := range names {
		expectError(t, s.Internal, fmt.Sprintf("d-%d", i), "message", "cancel", "remote-server-not-found")
	}
	t.Logf("outbound streams after the bounces: %d", stats.OutboundOpen.Load()-base)
	if !pollFor(5*time.Second, func() bool { return stats.OutboundOpen.Load() <= base }) {
		t.Errorf("%d outbound streams still open 5 s after the bounces (bounce_idle_timeout 300ms)", stats.OutboundOpen.Load()-base)
	}
	s.Relay.WaitBalanced(t)
}
