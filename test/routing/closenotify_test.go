package routing_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// recordTypes watches the TLS records a connection receives and keeps the
// content type of each (TLS 1.2 sends alerts, close_notify included, in
// records of type 21: the type is readable although the content is not).
type recordTypes struct {
	net.Conn
	mu    sync.Mutex
	buf   []byte
	types []byte
}

func (r *recordTypes) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.buf = append(r.buf, p[:n]...)
	for len(r.buf) >= 5 {
		size := 5 + (int(r.buf[3])<<8 | int(r.buf[4]))
		if len(r.buf) < size {
			break
		}
		r.types = append(r.types, r.buf[0])
		r.buf = r.buf[size:]
	}
	r.mu.Unlock()
	return n, err
}

// readUntil reads from c until want has been seen.
func readUntil(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(harness.ReadTimeout))
	var got []byte
	b := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := c.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			t.Fatalf("reading until %q: %v (got %q)", want, err, got)
		}
	}
}

// TestCloseNotify: when a TLS stream ends, the relay says so with a TLS
// close_notify alert after its closing tag (RFC 8446 §6.1), so that a
// peer, or a monitoring check such as check_xmppng, sees the end of the
// stream and not a connection cut short (it reported
// UNEXPECTED_EOF_WHILE_READING against the relay).
func TestCloseNotify(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	raw, err := net.Dial("tcp", s.Relay.FederationAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	header := "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='remote.test' to='a.test' version='1.0'>"
	io.WriteString(raw, header)
	readUntil(t, raw, "</stream:features>")
	io.WriteString(raw, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	readUntil(t, raw, "<proceed")
	rec := &recordTypes{Conn: raw}
	tc := tls.Client(rec, &tls.Config{InsecureSkipVerify: true, ServerName: "a.test", MaxVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tc, header)
	readUntil(t, tc, "</stream:features>")
	io.WriteString(tc, "</stream:stream>")
	tc.SetReadDeadline(time.Now().Add(harness.ReadTimeout))
	rest, err := io.ReadAll(tc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading to the end: %v", err)
	}
	if !bytes.Contains(rest, []byte("</stream:stream>")) {
		t.Errorf("the relay did not close its stream: %q", rest)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.types); n == 0 || rec.types[n-1] != 21 {
		t.Errorf("the last TLS record before the end has type %v, want 21 (an alert: close_notify)", rec.types)
	}
}
