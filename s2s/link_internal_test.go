package s2s

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// TestLinkKeepalive: a link that has nothing to write sends a single space
// every keepaliveEvery (RFC 6120 §4.6.1), and a failing keepalive ends it.
func TestLinkKeepalive(t *testing.T) {
	s := &Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: config.Limits{IdleTimeout: 3 * time.Second, NegotiationTimeout: time.Second, WriteTimeout: time.Second, QueueStanzas: 10, QueueBytes: 1 << 20}}
	s.Router = routing.NewRouter(routing.Options{Table: routing.NewTable([]config.Domain{{Name: "a.test", Route: "127.0.0.1:1"}})})
	s.init()
	defer s.cancel()
	ours, theirs := net.Pipe()
	defer theirs.Close()
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	done := make(chan error, 1)
	go func() { done <- l.writeLoop(o, make(chan error)) }()

	if every := keepaliveEvery(s.Limits.IdleTimeout); every != time.Second {
		t.Fatalf("keepaliveEvery(3s) = %v, want 1s", every)
	}
	buf := make([]byte, 8)
	theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := theirs.Read(buf)
	if err != nil || string(buf[:n]) != " " {
		t.Fatalf("read %q, %v; want a single space", buf[:n], err)
	}
	// The peer goes away: the next keepalive fails and ends the link.
	theirs.Close()
	select {
	case err := <-done:
		var de *routing.DeliveryError
		if !errors.As(err, &de) {
			t.Errorf("writeLoop ended with %v, want a delivery error from the keepalive", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writeLoop did not end after the peer went away")
	}
	ours.Close()
}

// TestIdleLinkLeavesTableFirst: a link that closes for idleness is out of
// the server's table before it refuses stanzas, so that a stanza routed in
// that window finds a new link instead of the retiring one (which would
// refuse it, and after three tries it would bounce although nothing
// failed). The pipe's peer never reads, so the closing tag could take long
// to flush.
func TestIdleLinkLeavesTableFirst(t *testing.T) {
	s := &Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: config.Limits{IdleTimeout: 100 * time.Millisecond, NegotiationTimeout: time.Second, WriteTimeout: time.Second,
			QueueStanzas: 10, QueueBytes: 1 << 20}}
	s.Router = routing.NewRouter(routing.Options{Table: routing.NewTable([]config.Domain{{Name: "a.test", Route: "127.0.0.1:1"}})})
	s.init()
	defer s.cancel()
	ours, theirs := net.Pipe()
	defer theirs.Close()
	defer ours.Close()
	pair := routing.Pair{From: "a.test", To: "b.test"}
	l := s.newLink(pair, func(error) {})
	s.links[pair] = l
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	done := make(chan error, 1)
	go func() { done <- l.writeLoop(o, make(chan error)) }()
	select {
	case err := <-done:
		if !errors.Is(err, errIdle) {
			t.Fatalf("writeLoop: %v, want idle", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the link did not go idle")
	}
	s.lmu.RLock()
	still := s.links[pair] == l
	s.lmu.RUnlock()
	if still {
		t.Errorf("the idle link is still in the table once it refuses stanzas")
	}
	if err := l.Enqueue(&routing.Stanza{Raw: []byte("<message/>")}); !errors.Is(err, routing.ErrClosed) {
		t.Errorf("Enqueue on the retired link: %v, want ErrClosed", err)
	}
}
