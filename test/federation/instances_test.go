package federation_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestThreeInstances runs three instances of the relay for a.test, behind
// one SRV record set, with one shared dialback secret: each verifies the
// keys the others made (the remote server checks a.test's keys with
// whichever instance is up, the internal server checks remote.test's keys
// with another instance than the one that sent them). Traffic flows both
// ways through all three; then one instance is stopped as for a planned
// restart (graceful shutdown) and later another is killed outright. The
// senders move to the next SRV target, as servers do. Every message of the
// planned restart arrives and none bounces; after the kill, every relay's
// counts still balance (accepted = delivered + bounced + dropped) and the
// traffic goes on through the last instance.
func TestThreeInstances(t *testing.T) {
	dns := harness.StartDNS(t)
	internal := harness.NewFakeServer(t, "internal a.test", "a.test")
	remote := harness.NewFakeServer(t, "remote remote.test", "remote.test")
	conf := fmt.Sprintf(`domains: [{name: a.test, route: %q}]
dialback: {secret: "one secret shared by every instance 0123456789"}
limits: {max_streams_per_ip: 1000, drain_timeout: 10s}`, internal.Addr)
	var relays []*harness.Relay
	var fed, face []string
	for i := range 3 {
		r := harness.StartRelay(t, conf, harness.WithDNS(dns), harness.WithName(fmt.Sprintf("instance-%d", i)))
		relays = append(relays, r)
		fed, face = append(fed, r.FederationAddr), append(face, r.InternalAddr)
	}
	var (
		mu   sync.Mutex
		down = map[int]bool{}
	)
	alive := func(addrs []string, skip int) string {
		mu.Lock()
		defer mu.Unlock()
		for k := range addrs {
			if i := (skip + 1 + k) % len(addrs); !down[i] {
				return addrs[i]
			}
		}
		return addrs[0]
	}
	var turn int
	// The internal server verifies remote.test's keys at an instance other
	// than the last one asked; the remote server verifies a.test's keys at
	// the first instance up, which is seldom the one that sent them.
	internal.SetAuthoritativeFunc(func(string) string {
		mu.Lock()
		turn++
		k := turn
		mu.Unlock()
		return alive(face, k)
	})
	remote.SetAuthoritativeFunc(func(string) string { return alive(fed, -1) })
	dns.SetSRV(t, "a.test", fed...)
	dns.SetSRV(t, "remote.test", remote.Addr)

	const perStream = 150
	run := func(phase string, event func()) {
		var wg sync.WaitGroup
		senders := make([]*harness.Sender, 6)
		for i := range 3 {
			senders[2*i], senders[2*i+1] = &harness.Sender{}, &harness.Sender{}
			wg.Add(2)
			go func() {
				defer wg.Done()
				senders[2*i].Send(t, remote, fed, i, "remote.test", "a.test", fmt.Sprintf("%s-in%d", phase, i), perStream, 5*time.Millisecond)
			}()
			go func() {
				defer wg.Done()
				senders[2*i+1].Send(t, internal, face, i, "a.test", "remote.test", fmt.Sprintf("%s-out%d", phase, i), perStream, 5*time.Millisecond)
			}()
		}
		time.Sleep(200 * time.Millisecond)
		event()
		wg.Wait()
	}
	delivered := func(fake *harness.FakeServer, prefix string) int {
		return fake.Count(func(st harness.Stanza) bool { return len(st.ID) > len(prefix) && st.ID[:len(prefix)] == prefix })
	}
	bounces := func() int {
		return internal.Count(func(st harness.Stanza) bool { return st.Type == "error" }) +
			remote.Count(func(st harness.Stanza) bool { return st.Type == "error" })
	}

	// A planned restart of instance 1: graceful shutdown.
	run("planned", func() {
		mu.Lock()
		down[1] = true
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := relays[1].Shutdown(ctx); err != nil {
			t.Errorf("instance-1 shutdown: %v", err)
		}
	})
	for i := range 3 {
		for _, c := range []struct {
			fake   *harness.FakeServer
			prefix string
		}{{internal, fmt.Sprintf("planned-in%d-", i)}, {remote, fmt.Sprintf("planned-out%d-", i)}} {
			for j := range perStream {
				id := fmt.Sprintf("%s%d", c.prefix, j)
				c.fake.Wait(t, "message "+id, func(st harness.Stanza) bool { return st.ID == id })
			}
			if n := delivered(c.fake, c.prefix); n != perStream {
				t.Errorf("%s*: %d delivered, want %d (no duplicates)", c.prefix, n, perStream)
			}
		}
	}
	if n := bounces(); n != 0 {
		t.Errorf("%d bounces across the planned restart of one instance", n)
	}
	harness.Balanced(t, relays...)
	for i, r := range relays {
		t.Logf("instance-%d: %s", i, r.Stats())
	}

	// Instance 2 killed outright: its traffic moves to instance 0.
	run("kill", func() {
		mu.Lock()
		down[2] = true
		mu.Unlock()
		relays[2].Server.Close()
	})
	for i := range 3 {
		// After the kill every message a sender wrote to instance 0 gets
		// through; what instance 2 had read is delivered or bounced (its
		// counts balance); what it had not read died with it (without
		// XEP-0198 nothing can tell).
		last := fmt.Sprintf("kill-in%d-%d", i, perStream-1)
		internal.Wait(t, "message "+last, func(st harness.Stanza) bool { return st.ID == last })
		last = fmt.Sprintf("kill-out%d-%d", i, perStream-1)
		remote.Wait(t, "message "+last, func(st harness.Stanza) bool { return st.ID == last })
	}
	harness.Balanced(t, relays...)
	for i, r := range relays {
		t.Logf("instance-%d: %s", i, r.Stats())
	}
}

// TestDrainingLinkRetries: an instance shut down gracefully while its link
// to an internal route is between two setup attempts (the internal server
// refuses connections for a moment) keeps retrying until Shutdown's
// deadline, and delivers what it holds once the server accepts again,
// verified by another instance that shares the dialback secret, instead of
// bouncing it at the first failure after the drain began (the race that
// made TestThreeInstances bounce 7-8 stanzas now and then).
func TestDrainingLinkRetries(t *testing.T) {
	dns := harness.StartDNS(t)
	internal := harness.NewFakeServer(t, "internal a.test", "a.test")
	remote := harness.NewFakeServer(t, "remote remote.test", "remote.test")
	proxy := harness.StartProxy(t, internal.Addr)
	conf := fmt.Sprintf(`domains: [{name: a.test, route: %q}]
dialback: {secret: "one secret shared by every instance 0123456789"}
limits: {route_retry: 10s}`, proxy.Addr)
	draining := harness.StartRelay(t, conf, harness.WithDNS(dns), harness.WithName("draining"))
	other := harness.StartRelay(t, conf, harness.WithDNS(dns), harness.WithName("other"))
	// The internal server verifies the draining instance's keys at the
	// other one: the draining instance no longer accepts connections.
	internal.SetAuthoritative(other.InternalAddr)
	dns.SetSRV(t, "remote.test", remote.Addr)

	proxy.SetMode(harness.Refuse)
	in := remote.Dial(t, draining.FederationAddr, "remote.test", "a.test")
	const n = 5
	for i := range n {
		in.Send(harness.Message("bob@remote.test", "alice@a.test", fmt.Sprint("held-", i), "hi"))
	}
	st := draining.Router.Stats()
	harness.Eventually(t, func() bool { return st.Accepted.Load() == n && proxy.Accepted() >= 1 },
		"the stanzas to be held and the route tried")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- draining.Shutdown(ctx)
	}()
	// The inbound stream ends at once (its peer closes on
	// system-shutdown), so the link is told to drain; the route is refused
	// at least once more after that.
	in.ExpectStreamError("system-shutdown")
	in.Close()
	harness.Eventually(t, func() bool { return draining.Server.Stats().InboundOpen.Load() == 0 }, "the inbound stream to end")
	tried := proxy.Accepted()
	harness.Eventually(t, func() bool { return proxy.Accepted() > tried }, "a retry during the drain")
	proxy.SetMode(harness.Forward)

	for i := range n {
		internal.WaitID(t, fmt.Sprint("held-", i))
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if b := remote.Count(func(st harness.Stanza) bool { return st.Type == "error" }); b != 0 {
		t.Errorf("%d bounces", b)
	}
	harness.Balanced(t, draining, other)
}
