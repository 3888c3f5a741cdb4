package peer

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

// serving starts a Server for domain on a loopback listener, whose
// Authoritative server for other domains is at *auth once the test sets it.
func serving(t *testing.T, domain string, auth *string) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Domains: []string{domain}, Timeout: 10 * time.Second, Strict: true,
		Authoritative: func(string) string { return *auth }}
	if err := s.init(); err != nil { // the tests use its secret
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, l.Addr().String()
}

// expectStreamError reads c until a stream error and checks its condition;
// the elements before it are returned.
func expectStreamError(t *testing.T, c *client, cond string) []string {
	t.Helper()
	c.raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	var before []string
	for {
		el, err := c.next()
		var se *StreamError
		if errors.As(err, &se) {
			if se.Condition != cond {
				t.Errorf("stream error %s, want %s (after %q)", se.Condition, cond, before)
			}
			return before
		}
		if err != nil {
			t.Fatalf("no stream error %s: %v (after %q)", cond, err, before)
		}
		before = append(before, string(el.Raw))
	}
}

// TestRefusals: what a server must refuse on its streams (RFC 6120,
// XEP-0220) closes the stream with the right stream error, and a Strict
// server records the peer's violation.
func TestRefusals(t *testing.T) {
	var xaddr, yaddr string
	x, xa := serving(t, "x.test", &yaddr)
	y, ya := serving(t, "y.test", &xaddr)
	xaddr, yaddr = xa, ya
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tests := []struct {
		name, violation string
		run             func(t *testing.T)
	}{
		{"stream to another domain", `stream to "z.test"`, func(t *testing.T) {
			_, err := x.negotiate(ctx, yaddr, "x.test", "z.test", false)
			var se *StreamError
			if !errors.As(err, &se) || se.Condition != "host-unknown" {
				t.Errorf("stream to z.test: %v, want host-unknown", err)
			}
		}},
		{"dialback before STARTTLS", "dialback before STARTTLS", func(t *testing.T) {
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
		}},
		{"stanza before dialback", "unauthorized pair x.test→y.test", func(t *testing.T) {
			c, err := x.negotiate(ctx, yaddr, "x.test", "y.test", false)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close(x)
			c.w.WriteRaw([]byte(Message("ann@x.test", "ben@y.test", "s1", "hi").Raw))
			c.w.Flush()
			expectStreamError(t, c, "not-authorized")
		}},
		{"STARTTLS twice", "STARTTLS twice", func(t *testing.T) {
			c, err := x.negotiate(ctx, yaddr, "x.test", "y.test", false)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close(x)
			c.w.WriteRaw([]byte("<starttls xmlns='" + NSTLS + "'/>"))
			c.w.Flush()
			expectStreamError(t, c, "policy-violation")
		}},
		{"not XML", "the framer refused", func(t *testing.T) {
			c, err := x.negotiate(ctx, yaddr, "x.test", "y.test", false)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close(x)
			c.w.WriteRaw([]byte("<<message/>"))
			c.w.Flush()
			expectStreamError(t, c, "not-well-formed")
		}},
		{"forged key", "", func(t *testing.T) {
			c, err := x.negotiate(ctx, yaddr, "x.test", "y.test", false)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close(x)
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
		}},
		{"genuine key", "", func(t *testing.T) {
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
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(y.Violations())
			tc.run(t)
			var got []string
			deadline := time.Now().Add(5 * time.Second)
			for {
				got = y.Violations()[before:]
				if tc.violation == "" || len(got) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			switch {
			case tc.violation == "" && len(got) > 0:
				t.Errorf("violations %q, want none", got)
			case tc.violation != "" && (len(got) != 1 || !strings.Contains(got[0], tc.violation)):
				t.Errorf("violations %q, want one about %q", got, tc.violation)
			}
		})
	}
	if v := x.Violations(); len(v) > 0 {
		t.Errorf("x.test recorded violations %q", v)
	}
}
