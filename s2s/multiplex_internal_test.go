package s2s

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// TestSharedAcks: on a stream several pairs share, the peer's XEP-0198
// count spans them all; each pair gets the part of an acknowledgement that
// is its own, in the order the stanzas were written. A count that includes
// stanzas being written, not recorded yet, waits for them; one beyond what
// was written is a stream error; a pair that left is skipped.
func TestSharedAcks(t *testing.T) {
	s := testServer(t, config.Limits{QueueStanzas: 100, QueueBytes: 1 << 20},
		[]config.Domain{{Name: "a.test"}, {Name: "e.test"}})
	router := s.Router.(*routing.Router)
	carrier := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	rider := s.newLink(routing.Pair{From: "e.test", To: "b.test"}, func(error) {})
	ms := &muxStream{s: s, carrier: carrier, done: make(chan struct{})}
	carrier.mux, rider.mux = ms, ms
	carrier.sm = &smOut{shared: ms, owner: carrier}
	rider.sm = &smOut{shared: ms, owner: rider}
	batchOf := func(n int) []*batch {
		b := &batch{}
		for range n {
			b.buf = append(b.buf, "<message/>"...)
			b.ends = append(b.ends, len(b.buf))
			b.recs = append(b.recs, routing.Stanza{})
		}
		return []*batch{b}
	}
	write := func(l *link, n int) {
		q := batchOf(n)
		ms.writing(q)
		l.sm.wrote(q, time.Now())
	}
	acked := func() (int64, int64) { return carrier.sm.acked, rider.sm.acked }
	check := func(what string, wantC, wantR int64) {
		t.Helper()
		if c, r := acked(); c != wantC || r != wantR {
			t.Errorf("%s: acknowledged a.test %d, e.test %d; want %d, %d", what, c, r, wantC, wantR)
		}
	}

	write(carrier, 2) // stanzas 1-2
	write(rider, 3)   // 3-5
	write(carrier, 1) // 6
	if err := ms.handleAck(1); err != nil {
		t.Fatal(err)
	}
	check("h=1", 1, 0)
	if err := ms.handleAck(4); err != nil {
		t.Fatal(err)
	}
	check("h=4", 2, 2)
	if err := ms.handleAck(6); err != nil {
		t.Fatal(err)
	}
	check("h=6", 3, 3)

	// The peer answers before the writer records what it wrote.
	q := batchOf(2) // 7-8
	ms.writing(q)
	if err := ms.handleAck(8); err != nil {
		t.Fatalf("an early count: %v", err)
	}
	check("h=8 before the write is recorded", 3, 3)
	rider.sm.wrote(q, time.Now())
	check("h=8 once recorded", 3, 5)

	// A pair that left has handed its stanzas back: its share is skipped.
	write(rider, 2)   // 9-10
	write(carrier, 1) // 11
	rider.sm.takeAll()
	if err := ms.handleAck(11); err != nil {
		t.Fatal(err)
	}
	check("h=11 after e.test left", 4, 5)

	if err := ms.handleAck(12); err == nil {
		t.Errorf("h=12 with nothing written: no error, want handled-count-too-high")
	}
	if n := router.Stats().Acknowledged.Load(); n != 9 {
		t.Errorf("the router counted %d acknowledged, want 9", n)
	}
}

// TestRiderLeaves: a rider that is stopped (its pair's policy withdrawn,
// the operator) leaves the shared stream between two writes; the stream
// goes on carrying the other pairs.
func TestRiderLeaves(t *testing.T) {
	s := testServer(t, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second, WriteTimeout: time.Second, QueueStanzas: 10, QueueBytes: 1 << 20},
		[]config.Domain{{Name: "a.test"}, {Name: "e.test"}})
	ours, theirs := net.Pipe()
	defer theirs.Close()
	defer ours.Close()
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := theirs.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	carrier := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	rider := s.newLink(routing.Pair{From: "e.test", To: "b.test"}, func(error) {})
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	ms := &muxStream{s: s, carrier: carrier, o: o, done: make(chan struct{})}
	carrier.mux, carrier.up = ms, true
	rider.mux, rider.up = ms, true
	ms.riders = []*link{rider}
	done := make(chan error, 1)
	carrier.prepareWriting(o)
	carrier.onInbound = true // one writer that does not park: this test has no owner to start another
	go func() {
		err, _ := carrier.writeLoop(o)
		done <- err
	}()
	rode := make(chan error, 1)
	go func() { rode <- rider.carried(ms) }()
	send := func(l *link, id string) {
		t.Helper()
		st := routing.Stanza{Raw: []byte("<message id='" + id + "'/>"), FromDomain: l.pair.From, ToDomain: l.pair.To}
		if err := l.Enqueue(&st); err != nil {
			t.Fatalf("Enqueue %s: %v", id, err)
		}
	}
	expect := func(id string) {
		t.Helper()
		select {
		case b := <-got:
			if b != "<message id='"+id+"'/>" {
				t.Fatalf("the peer read %q, want %s", b, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never written", id)
		}
	}
	send(rider, "e1")
	expect("e1")
	send(carrier, "a1")
	expect("a1")

	stop := errors.New("stopped")
	rider.stop(stop)
	select {
	case err := <-rode:
		if !errors.Is(err, stop) {
			t.Errorf("the ride ended with %v, want the stop", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stopped rider did not leave")
	}
	ms.mu.Lock()
	left := len(ms.riders)
	ms.mu.Unlock()
	if left != 0 {
		t.Errorf("%d riders on the stream after the rider left, want 0", left)
	}
	send(carrier, "a2")
	expect("a2")
	select {
	case err := <-done:
		t.Fatalf("the stream ended with the rider: %v", err)
	default:
	}
	carrier.stop(errors.New("end"))
	<-done
}
