package demo

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// listen opens a listener on 127.0.0.1.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// serving starts an endpoint for domain on l whose Authoritative server for
// other domains (its Relay) is auth.
func serving(t *testing.T, domain string, l net.Listener, auth string) *Endpoint {
	t.Helper()
	e := &Endpoint{Domain: domain, Relay: auth, Timeout: 5 * time.Second}
	if err := e.init(); err != nil { // the tests use its secret and domain
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.Serve(l); close(done) }()
	t.Cleanup(func() { e.Close(); <-done })
	return e
}

// expectStreamError reads c until a stream error and checks its
// condition; the elements before it are returned.
func expectStreamError(t *testing.T, c *client, cond string) []string {
	t.Helper()
	c.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	var before []string
	for {
		el, err := c.next()
		var pe *peerError
		if errors.As(err, &pe) {
			if pe.Condition != cond {
				t.Errorf("stream error %s, want %s (after %q)", pe.Condition, cond, before)
			}
			return before
		}
		if err != nil {
			t.Fatalf("no stream error %s: %v (after %q)", cond, err, before)
		}
		before = append(before, string(el.Raw))
	}
}

// TestEndpointRefuses: what a server must refuse on its streams (RFC 6120,
// XEP-0220) closes the stream with the right stream error.
func TestEndpointRefuses(t *testing.T) {
	// x.test's endpoint is the Authoritative server y.test asks; its
	// secret made x's keys.
	lx, ly := listen(t), listen(t)
	xaddr, yaddr := lx.Addr().String(), ly.Addr().String()
	x := serving(t, "x.test", lx, yaddr)
	y := serving(t, "y.test", ly, xaddr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("stream to another domain", func(t *testing.T) {
		_, err := x.dial(ctx, "x.test", "z.test")
		var pe *peerError
		if !errors.As(err, &pe) || pe.Condition != "host-unknown" {
			t.Errorf("dial to z.test: %v, want host-unknown", err)
		}
	})

	t.Run("dialback before STARTTLS", func(t *testing.T) {
		raw, err := net.Dial("tcp", yaddr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		c := &client{from: "x.test", to: "y.test", raw: raw, conn: raw, r: wire.NewReader(raw, wire.Limits{}), w: wire.NewWriter(raw)}
		feats, err := c.open()
		if err != nil {
			t.Fatal(err)
		}
		if !feats[NSTLS+" starttls"] || feats[dialback.NSFeature+" dialback"] {
			t.Errorf("features before TLS %v, want STARTTLS only", feats)
		}
		c.w.WriteRaw([]byte("<db:result from='x.test' to='y.test'>" + strings.Repeat("0", 64) + "</db:result>"))
		c.w.Flush()
		expectStreamError(t, c, "policy-violation")
	})

	t.Run("stanza before dialback", func(t *testing.T) {
		c, err := x.dial(ctx, "x.test", "y.test")
		if err != nil {
			t.Fatal(err)
		}
		defer c.raw.Close()
		c.w.WriteRaw([]byte(Message("ann@x.test", "ben@y.test", "s1", "hi").Raw))
		c.w.Flush()
		expectStreamError(t, c, "not-authorized")
	})

	t.Run("forged key", func(t *testing.T) {
		c, err := x.dial(ctx, "x.test", "y.test")
		if err != nil {
			t.Fatal(err)
		}
		defer c.raw.Close()
		forged, _ := dialback.NewSecret([]byte("not x.test's secret"))
		db := dialback.NewStream(dialback.Config{ID: c.id, Outbound: true, Secret: forged, Serves: x.hosts})
		req, err := db.SendResult("x.test", "y.test")
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.exchange(db, req)
		if err != nil {
			t.Fatal(err)
		}
		if d.Outcome != dialback.Rejected {
			t.Errorf("forged key answered %s %s, want invalid", d.Answer.Type, d.Answer.Condition)
		}
		expectStreamError(t, c, "not-authorized")
	})

	t.Run("genuine key", func(t *testing.T) {
		if err := x.Send(ctx, Message("ann@x.test", "ben@y.test", "g1", "hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := y.Wait(ctx, func(st Stanza) bool { return st.ID == "g1" }); err != nil {
			t.Fatal(err)
		}
		// Only the genuine stanza was delivered.
		for _, st := range y.Received() {
			if st.ID != "g1" {
				t.Errorf("y.test received %s", st.Raw)
			}
		}
	})
}
