package peer_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// federate starts the servers on loopback, each the Authoritative server of
// the others' domains (those in Domains, and any subdomain of them, which
// they host through Hosts), and returns their addresses. They are shut down
// when the test ends, and their Serve must then return ErrServerClosed.
// Every dialback role is played: Initiating (Dial, Send), Receiving (the
// listener) and Authoritative (db:verify of its own keys).
func federate(t testing.TB, servers ...*peer.Server) []string {
	t.Helper()
	addrs := make([]string, len(servers))
	owner := map[string]string{}
	var ls []net.Listener
	for i, s := range servers {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs[i] = l.Addr().String()
		for _, d := range s.Domains {
			owner[strings.ToLower(d)] = addrs[i]
		}
	}
	authoritative := func(domain string) string {
		for d := domain; d != ""; {
			if addr, ok := owner[d]; ok {
				return addr
			}
			_, d, _ = strings.Cut(d, ".")
		}
		return ""
	}
	done := make(chan error, len(servers))
	for i, s := range servers {
		if s.Timeout == 0 {
			s.Timeout = 10 * time.Second
		}
		s.Authoritative = authoritative
		go func() { done <- s.Serve(ls[i]) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() {
				if err := s.Shutdown(ctx); err != nil {
					t.Errorf("%v: Shutdown: %v", s.Domains, err)
				}
			})
		}
		wg.Wait()
		for range servers {
			if err := <-done; !errors.Is(err, peer.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return addrs
}

// subdomains hosts every subdomain of domain.
func subdomains(domain string) func(string) bool {
	return func(d string) bool { return strings.HasSuffix(d, "."+domain) }
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noViolations fails the test if a strict server recorded any.
func noViolations(t *testing.T, servers ...*peer.Server) {
	t.Helper()
	for _, s := range servers {
		for _, v := range s.Violations() {
			t.Errorf("%v: violation: %s", s.Domains, v)
		}
	}
}

// TestServersFederate: two Servers without Handler exchange stanzas over
// streams they open on demand (Send), keep what they receive, and answer
// iq requests.
func TestServersFederate(t *testing.T) {
	x := &peer.Server{Domains: []string{"x.test"}, Strict: true}
	y := &peer.Server{Domains: []string{"Y.test"}, Strict: true}
	federate(t, x, y)
	ctx := testContext(t)

	msg := peer.Message("ann@x.test/desk", "ben@y.test", "m1", "hello <ben> & co")
	if err := x.Send(ctx, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := y.Wait(ctx, func(st peer.Stanza) bool { return st.ID == "m1" })
	if err != nil {
		t.Fatalf("y.test did not receive the message: %v", err)
	}
	if got.Raw != msg.Raw || got.Body() != "hello <ben> & co" || got.Pair != "x.test→y.test" || got.Kind != wire.Message {
		t.Errorf("received %s (body %q, pair %q, kind %s), want %s", got.Raw, got.Body(), got.Pair, got.Kind, msg.Raw)
	}

	// Pings are answered by the server, other requests refused.
	if err := x.Send(ctx, peer.Ping("ann@x.test/desk", "ben@y.test/phone", "p1")); err != nil {
		t.Fatal(err)
	}
	ans, err := x.Wait(ctx, func(st peer.Stanza) bool { return st.ID == "p1" })
	if err != nil {
		t.Fatalf("no answer to the ping: %v", err)
	}
	if ans.Type != "result" || ans.From != "ben@y.test/phone" || ans.To != "ann@x.test/desk" {
		t.Errorf("ping answered with %s", ans.Raw)
	}
	if err := x.Send(ctx, peer.IQ("ann@x.test", "y.test", "v1", "get")); err != nil {
		t.Fatal(err)
	}
	ans, err = x.Wait(ctx, func(st peer.Stanza) bool { return st.ID == "v1" })
	if err != nil {
		t.Fatalf("no answer to the disco#info request: %v", err)
	}
	if typ, cond, _ := ans.StanzaError(); ans.Type != "error" || typ != "cancel" || cond != "service-unavailable" {
		t.Errorf("disco#info request answered with %s", ans.Raw)
	}

	// One stream per pair of domains, kept open.
	o1, err := x.Connect(ctx, "x.test", "y.test")
	if err != nil {
		t.Fatal(err)
	}
	o2, err := x.Connect(ctx, "X.test", "y.test.")
	if err != nil || o1 != o2 {
		t.Errorf("Connect again: %p %v, want the same stream %p", o2, err, o1)
	}
	if n := len(y.Received()); n != 3 {
		t.Errorf("y.test received %d stanzas, want 3", n)
	}
	if n := y.Count(func(st peer.Stanza) bool { return st.Kind == wire.IQ }); n != 2 {
		t.Errorf("y.test received %d iq, want 2", n)
	}
	noViolations(t, x, y)
}

// TestHandler: with a Handler, stanzas reach it on the stream's reading
// goroutine, and the Server neither keeps nor answers them.
func TestHandler(t *testing.T) {
	type seen struct{ id, from, stream string }
	got := make(chan seen, 10)
	x := &peer.Server{Domains: []string{"x.test"}, Strict: true}
	y := &peer.Server{Domains: []string{"y.test"}, Strict: true, Handler: func(in *peer.Inbound, el *wire.Element) {
		got <- seen{string(el.ID), string(el.From), in.ID()}
	}}
	addrs := federate(t, x, y)
	ctx := testContext(t)
	o, err := x.Dial(ctx, addrs[1], "x.test", "y.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Write([]byte(peer.Message("ann@x.test", "ben@y.test", "w1", "hi").Raw +
		peer.Ping("ann@x.test", "y.test", "w2").Raw)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"w1", "w2"} {
		select {
		case s := <-got:
			if s.id != id || s.from != "ann@x.test" || s.stream != o.ID() {
				t.Errorf("Handler saw %+v, want id %s from ann@x.test on stream %s", s, id, o.ID())
			}
		case <-ctx.Done():
			t.Fatalf("Handler did not see %s", id)
		}
	}
	if err := o.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := len(y.Received()) + len(x.Received()); n != 0 {
		t.Errorf("%d stanzas kept with a Handler; the ping must not be answered either", n)
	}
	if errs := x.StreamErrors(); len(errs) != 0 {
		t.Errorf("stream errors %v after a clean close", errs)
	}
	noViolations(t, x, y)
}

// TestAuthorize: one stream carries several authorized pairs (XEP-0220
// multiplexing), here for a domain the Server hosts through Hosts.
func TestAuthorize(t *testing.T) {
	x := &peer.Server{Domains: []string{"x.test"}, Hosts: subdomains("x.test"), Strict: true}
	y := &peer.Server{Domains: []string{"y.test"}, Strict: true}
	addrs := federate(t, x, y)
	ctx := testContext(t)
	o, err := x.Dial(ctx, addrs[1], "x.test", "y.test")
	if err != nil {
		t.Fatal(err)
	}
	second := peer.Message("ann@u1.x.test", "ben@y.test", "a1", "from the second pair")
	if err := o.Send(ctx, second); err == nil {
		t.Errorf("Send for a pair not yet authorized: no error")
	}
	if err := o.Authorize(ctx, "u1.x.test", "y.test"); err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if err := o.Authorize(ctx, "u1.x.test", "y.test"); err != nil {
		t.Errorf("Authorize again: %v", err)
	}
	if err := o.Send(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, peer.Message("ann@x.test", "ben@y.test", "a2", "from the first")); err != nil {
		t.Fatal(err)
	}
	for id, pair := range map[string]string{"a1": "u1.x.test→y.test", "a2": "x.test→y.test"} {
		st, err := y.Wait(ctx, func(st peer.Stanza) bool { return st.ID == id })
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if st.Pair != pair {
			t.Errorf("%s came for pair %s, want %s", id, st.Pair, pair)
		}
	}
	if err := o.Authorize(ctx, "other.test", "y.test"); err == nil {
		t.Errorf("Authorize for a domain x does not host: no error")
	}
	noViolations(t, x, y)
}

// TestStrict: a stanza for a pair not authorized on its stream closes the
// stream with not-authorized, and a Strict server records the violation.
func TestStrict(t *testing.T) {
	for _, strict := range []bool{true, false} {
		t.Run(map[bool]string{true: "strict", false: "lenient"}[strict], func(t *testing.T) {
			x := &peer.Server{Domains: []string{"x.test", "x2.test"}}
			y := &peer.Server{Domains: []string{"y.test"}, Strict: strict}
			addrs := federate(t, x, y)
			ctx := testContext(t)
			o, err := x.Dial(ctx, addrs[1], "x.test", "y.test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := o.Write([]byte(peer.Message("eve@x2.test", "ben@y.test", "u1", "hi").Raw)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-o.Done():
			case <-ctx.Done():
				t.Fatal("the stream stayed open")
			}
			var se *peer.StreamError
			if !errors.As(o.Err(), &se) || se.Condition != "not-authorized" {
				t.Errorf("stream ended with %v, want not-authorized", o.Err())
			}
			if err := x.WaitStreamError(ctx, "not-authorized"); err != nil {
				t.Errorf("x recorded no stream error: %v (%v)", err, x.StreamErrors())
			}
			v := y.Violations()
			switch {
			case strict && (len(v) != 1 || !strings.Contains(v[0], "unauthorized pair x2.test→y.test")):
				t.Errorf("violations %q, want the stanza for x2.test→y.test", v)
			case !strict && len(v) != 0:
				t.Errorf("violations %q recorded without Strict", v)
			}
			if n := len(y.Received()); n != 0 {
				t.Errorf("y kept %d stanzas", n)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	s := &peer.Server{Domains: []string{"x.test"}, Authoritative: func(string) string { return addr }, Timeout: time.Second}
	defer s.Close()
	ctx := context.Background()
	tests := []struct {
		name string
		st   peer.Stanza
		want string
	}{
		{"foreign sender", peer.Message("eve@evil.test", "ben@y.test", "1", "hi"), `cannot send from "eve@evil.test"`},
		{"bad recipient", peer.Message("ann@x.test", "", "2", "hi"), `cannot send to ""`},
		{"peer down", peer.Message("ann@x.test", "ben@y.test", "3", "hi"), "connect to " + addr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Send(ctx, tc.st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Send: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s := &peer.Server{Domains: []string{"x.test"}, Authoritative: func(string) string { return "127.0.0.1:9" }}
	s.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, peer.ErrServerClosed) {
		t.Errorf("Serve after Close: %v, want ErrServerClosed", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("Serve after Close left the listener open")
	}
	if _, err := s.Connect(context.Background(), "x.test", "y.test"); !errors.Is(err, peer.ErrServerClosed) {
		t.Errorf("Connect after Close: %v, want ErrServerClosed", err)
	}
}

// TestDirectTLS: a stream that starts with TLS (XEP-0368) instead of
// STARTTLS authenticates and carries stanzas the same way.
func TestDirectTLS(t *testing.T) {
	x := &peer.Server{Domains: []string{"x.test"}, Strict: true}
	y := &peer.Server{Domains: []string{"y.test"}, Strict: true}
	federate(t, x, y)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- y.ServeDirectTLS(l) }()
	ctx := testContext(t)
	o, err := x.DialDirectTLS(ctx, l.Addr().String(), "x.test", "y.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, peer.Message("ann@x.test", "ben@y.test", "d1", "direct")); err != nil {
		t.Fatal(err)
	}
	if _, err := y.Wait(ctx, func(st peer.Stanza) bool { return st.ID == "d1" }); err != nil {
		t.Fatal(err)
	}
	o.Close()
	y.Close()
	if err := <-served; !errors.Is(err, peer.ErrServerClosed) {
		t.Errorf("ServeDirectTLS returned %v, want ErrServerClosed", err)
	}
	noViolations(t, x, y)
}
