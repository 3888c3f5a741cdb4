package s2s

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// inlineLink is a link that is up on a loopback TCP connection under a
// holdConn, as a dialled stream is (without TLS), and the peer's end.
func inlineLink(t *testing.T, limits config.Limits) (*link, *outStream, *holdConn, net.Conn) {
	t.Helper()
	s := testServer(t, limits, []config.Domain{{Name: "a.test"}})
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	l.up = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ours, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	hc := newHoldConn(ours).(*holdConn)
	return l, &outStream{s: s, raw: hc, conn: hc, w: wire.NewWriter(hc), hold: hc}, hc, theirs
}

// waitWriterIdle waits until the link's writer waits between bursts or
// has parked: it no longer holds wlock.
func waitWriterIdle(t *testing.T, l *link) {
	t.Helper()
	waitUntil(t, l.wlock.TryLock, func() string { return "the writer never stopped writing" })
	l.wlock.Unlock()
}

// waitUntil polls cond until it holds, failing with what() after 5 s.
func waitUntil(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
	}
}

// enqueueDeferred queues n of the relay's own stanzas of about size bytes
// with Defer, as a stream hands over what it read, and returns their bytes.
func enqueueDeferred(t *testing.T, l *link, n, size int) []byte {
	t.Helper()
	raw := []byte("<message from='u@a.test' to='v@b.test'><body>" + strings.Repeat("x", size) + "</body></message>")
	var all []byte
	for range n {
		st := routing.Stanza{Kind: 1, From: "u@a.test", To: "v@b.test", FromDomain: "a.test", ToDomain: "b.test", Raw: raw, Defer: true, Own: true}
		if err := l.Enqueue(&st); err != nil {
			t.Fatal(err)
		}
		all = append(all, raw...)
	}
	return all
}

// TestLinkWritesInline: the stream that wakes a link writes what waits
// itself when the socket takes it at once, so the stanzas count as written
// when Wake returns, with no writer's turn in between. When the socket is
// full, what it did not take goes to the writer, which writes it first once
// the peer reads again; meanwhile Wake neither waits nor writes out of
// order. Every byte arrives once, in order, and every stanza is counted
// written once.
func TestLinkWritesInline(t *testing.T) {
	l, o, hc, theirs := inlineLink(t, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second,
		WriteTimeout: 10 * time.Second, QueueStanzas: 10_000, QueueBytes: 64 << 20})
	done := writeUntilEnd(l, o)
	// A first stanza not deferred, which the writer writes; then the
	// writer waits for more.
	zero := []byte("<message from='u@a.test' to='v@b.test'><body>zero</body></message>")
	st := routing.Stanza{Kind: 1, From: "u@a.test", To: "v@b.test", FromDomain: "a.test", ToDomain: "b.test", Raw: zero, Own: true}
	if err := l.Enqueue(&st); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(zero))
	theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(theirs, got); err != nil || !bytes.Equal(got, zero) {
		t.Fatalf("the peer read %q, %v; want %q", got, err, zero)
	}
	waitWriterIdle(t, l)
	// The deadline the writer set for its write has passed, as it has
	// after limits.write_timeout of inline writes: they never wait, and it
	// does not apply to them.
	hc.SetWriteDeadline(time.Now().Add(-time.Second))

	want := enqueueDeferred(t, l, 3, 100)
	l.Wake()
	if w := l.written.Load(); w != 4 {
		t.Fatalf("%d of 3 stanzas written when Wake returned, want all: the waking stream writes them itself", w-1)
	}
	got = make([]byte, len(want))
	theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(theirs, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the peer read %q, %v; want %q", got, err, want)
	}
	if hc.holding || hc.buf != nil {
		t.Error("the socket is still held after an inline write that took everything")
	}

	// The peer stops reading. Wake after Wake, until the socket leaves
	// some for the writer, which then waits on the socket; a Wake after
	// that returns at once.
	var sent []byte
	n := int64(4)
	for l.written.Load() == n {
		if len(sent) > 64<<20 {
			t.Fatal("64 MiB written inline and the socket never filled")
		}
		sent = append(sent, enqueueDeferred(t, l, 5, 10_000)...)
		n += 5
		l.Wake()
	}
	woke := make(chan struct{})
	go func() {
		sent = append(sent, enqueueDeferred(t, l, 5, 10_000)...)
		n += 5
		l.Wake()
		close(woke)
	}()
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("Wake waited on a peer that does not read")
	}
	got = make([]byte, len(sent))
	theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(theirs, got); err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("the peer read %d bytes (%v), equal to the %d sent in order: %v", len(got), err, len(sent), bytes.Equal(got, sent))
	}
	waitUntil(t, func() bool { return l.written.Load() == n },
		func() string { return fmt.Sprintf("%d stanzas counted written, want %d", l.written.Load(), n) })
	l.drain()
	go io.Copy(io.Discard, theirs)
	if err := <-done; err != nil {
		t.Fatalf("the link ended with %v", err)
	}
	if d := l.s.Router.(*routing.Router).Stats().BouncesDropped.Load(); d != 0 {
		t.Errorf("%d stanzas failed, want none", d)
	}
}

// TestLinkInlineCarryOnStop: what an inline write left for a writer that
// does not run any more (the link stops first) is settled as failed when
// the writing stops, never left uncounted, and the socket is no longer
// held for the stream's last words.
func TestLinkInlineCarryOnStop(t *testing.T) {
	defer func(g time.Duration) { idleGrace = g }(idleGrace)
	idleGrace = 10 * time.Millisecond
	l, o, hc, _ := inlineLink(t, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second,
		WriteTimeout: 10 * time.Second, QueueStanzas: 10_000, QueueBytes: 64 << 20})
	l.startWriting(o)
	waitUntil(t, l.parked.Load, func() string { return "the writer never parked" })
	// Inline writes, the writer never woken, until the socket is full.
	n := int64(0)
	for {
		enqueueDeferred(t, l, 5, 10_000) // under deferLimit: no signal
		n += 5
		if !l.writeInline() {
			break
		}
		if n > 10_000 {
			t.Fatal("100 MB written inline and the socket never filled")
		}
	}
	l.wlock.Lock()
	carried := 0
	for _, b := range l.carry {
		carried += len(b.recs)
	}
	l.wlock.Unlock()
	if carried == 0 {
		t.Fatal("the inline write that did not finish left nothing for the writer")
	}
	l.stopWriting()
	written, failed := l.written.Load(), l.s.Router.(*routing.Router).Stats().BouncesDropped.Load()
	if written+failed != n || failed != int64(carried) {
		t.Errorf("%d stanzas queued: %d written, %d failed; want the %d carried failed and the rest written", n, written, failed, carried)
	}
	if hc.holding || hc.buf != nil {
		t.Error("the socket is still held after the writing stopped")
	}
}

// TestWakeBehindLeavesWriting: a stream that has caught up with its peer
// writes the links' batches itself (no writer starts); one that is behind
// starts the link's writer and reads on (inConn.wakeLinks).
func TestWakeBehindLeavesWriting(t *testing.T) {
	defer func(g time.Duration) { idleGrace = g }(idleGrace)
	idleGrace = 200 * time.Millisecond // the writer started below must not park again before it is seen running
	l, o, _, theirs := inlineLink(t, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second,
		WriteTimeout: 10 * time.Second, QueueStanzas: 10_000, QueueBytes: 64 << 20})
	go io.Copy(io.Discard, theirs)
	l.startWriting(o)
	parked := func() {
		t.Helper()
		waitUntil(t, l.parked.Load, func() string { return "the writer never parked" })
	}
	parked()
	c := &inConn{}

	enqueueDeferred(t, l, 3, 100)
	c.asleep = append(c.asleep, l)
	c.wakeAll(false)
	if w := l.written.Load(); w != 3 || !l.parked.Load() {
		t.Fatalf("caught up: %d of 3 written when the wake-up returned, writer parked %v; want all written inline, no writer", w, l.parked.Load())
	}

	enqueueDeferred(t, l, 3, 100)
	c.asleep = append(c.asleep, l)
	c.wakeAll(true)
	if l.parked.Load() {
		t.Fatal("behind: the link's writer was not started")
	}
	waitUntil(t, func() bool { return l.written.Load() == 6 },
		func() string {
			return fmt.Sprintf("behind: %d of 6 written, want the writer to write them", l.written.Load())
		})
	parked()
	l.stopWriting()
}
