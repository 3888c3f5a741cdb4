package demo_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/demo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair starts two endpoints that stand for each other's relay: x.test's
// streams go to y.test's endpoint, which checks x.test's keys with x.test's
// endpoint, and the other way round. Every dialback role of an endpoint is
// played: Initiating (Send), Receiving (its listener) and Authoritative
// (the db:verify of its own keys).
func pair(t *testing.T) (x, y *demo.Endpoint) {
	t.Helper()
	lx, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ly, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x = &demo.Endpoint{Domain: "x.test", Relay: ly.Addr().String(), Timeout: 5 * time.Second}
	y = &demo.Endpoint{Domain: "y.test", Relay: lx.Addr().String(), Timeout: 5 * time.Second}
	done := make(chan error, 2)
	go func() { done <- x.Serve(lx) }()
	go func() { done <- y.Serve(ly) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, e := range []*demo.Endpoint{x, y} {
			if err := e.Shutdown(ctx); err != nil {
				t.Errorf("%s: Shutdown: %v", e.Domain, err)
			}
		}
		for range 2 {
			if err := <-done; !errors.Is(err, demo.ErrClosed) {
				t.Errorf("Serve returned %v, want ErrClosed", err)
			}
		}
	})
	return x, y
}

func TestEndpointsFederate(t *testing.T) {
	x, y := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	msg := demo.Message("ann@x.test/desk", "ben@y.test", "m1", "hello <ben> & co")
	if err := x.Send(ctx, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := y.Wait(ctx, func(st demo.Stanza) bool { return st.ID == "m1" })
	if err != nil {
		t.Fatalf("y.test did not receive the message: %v", err)
	}
	if got.Raw != msg.Raw || got.Body() != "hello <ben> & co" {
		t.Errorf("received %s (body %q), want %s", got.Raw, got.Body(), msg.Raw)
	}

	// Pings are answered by the server, other requests refused.
	if err := x.Send(ctx, demo.Ping("ann@x.test/desk", "ben@y.test/phone", "p1")); err != nil {
		t.Fatal(err)
	}
	ans, err := x.Wait(ctx, func(st demo.Stanza) bool { return st.ID == "p1" })
	if err != nil {
		t.Fatalf("no answer to the ping: %v", err)
	}
	if ans.Type != "result" || ans.From != "ben@y.test/phone" || ans.To != "ann@x.test/desk" {
		t.Errorf("ping answered with %s", ans.Raw)
	}
	other := demo.Stanza{Kind: "iq", From: "ann@x.test", To: "y.test", ID: "v1", Type: "get",
		Raw: "<iq from='ann@x.test' to='y.test' id='v1' type='get'><query xmlns='jabber:iq:version'/></iq>"}
	if err := x.Send(ctx, other); err != nil {
		t.Fatal(err)
	}
	ans, err = x.Wait(ctx, func(st demo.Stanza) bool { return st.ID == "v1" })
	if err != nil {
		t.Fatalf("no answer to the version request: %v", err)
	}
	if typ, cond, _ := ans.Error(); ans.Type != "error" || typ != "cancel" || cond != "service-unavailable" {
		t.Errorf("version request answered with %s", ans.Raw)
	}

	// One stream per pair of domains, kept open.
	if err := x.Connect(ctx, "y.test"); err != nil {
		t.Fatal(err)
	}
	if n := len(y.Received()); n != 3 {
		t.Errorf("y.test received %d stanzas, want 3", n)
	}
}

func TestEndpointSendErrors(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	e := &demo.Endpoint{Domain: "x.test", Relay: addr, Timeout: time.Second}
	defer e.Close()
	ctx := context.Background()
	tests := []struct {
		name string
		st   demo.Stanza
		want string
	}{
		{"foreign sender", demo.Message("eve@evil.test", "ben@y.test", "1", "hi"), `cannot send from "eve@evil.test"`},
		{"bad recipient", demo.Message("ann@x.test", "", "2", "hi"), `cannot send to ""`},
		{"relay down", demo.Message("ann@x.test", "ben@y.test", "3", "hi"), "connect to the relay"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Send(ctx, tc.st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Send: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEndpointClosed(t *testing.T) {
	e := &demo.Endpoint{Domain: "x.test", Relay: "127.0.0.1:9"}
	e.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serve(l); !errors.Is(err, demo.ErrClosed) {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("Serve after Close left the listener open")
	}
	if err := e.Connect(context.Background(), "y.test"); !errors.Is(err, demo.ErrClosed) {
		t.Errorf("Connect after Close: %v, want ErrClosed", err)
	}
}
