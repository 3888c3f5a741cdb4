package s2s

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// TestLinkKeepalive: a link that has nothing to write sends a single space
// every keepaliveEvery (RFC 6120 §4.6.1), and a failing keepalive ends it.
func TestLinkKeepalive(t *testing.T) {
	s := testServer(t, config.Limits{IdleTimeout: 3 * time.Second, NegotiationTimeout: time.Second, WriteTimeout: time.Second, QueueStanzas: 10, QueueBytes: 1 << 20},
		[]config.Domain{{Name: "a.test", Route: "127.0.0.1:1"}})
	ours, theirs := net.Pipe()
	defer theirs.Close()
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	done := writeUntilEnd(l, o)

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
			t.Errorf("the writer ended with %v, want a delivery error from the keepalive", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not end after the peer went away")
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
	s := testServer(t, config.Limits{IdleTimeout: 100 * time.Millisecond, NegotiationTimeout: time.Second, WriteTimeout: time.Second, QueueStanzas: 10, QueueBytes: 1 << 20},
		[]config.Domain{{Name: "a.test", Route: "127.0.0.1:1"}})
	ours, theirs := net.Pipe()
	defer theirs.Close()
	defer ours.Close()
	pair := routing.Pair{From: "a.test", To: "b.test"}
	l := s.newLink(pair, func(error) {})
	s.links[pair] = l
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	done := writeUntilEnd(l, o)
	select {
	case err := <-done:
		if !errors.Is(err, errIdle) {
			t.Fatalf("the writer ended with %v, want idle", err)
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

// writeUntilEnd runs the link's writers on o, as own does, until one
// ends the stream, and returns why.
func writeUntilEnd(l *link, o *outStream) <-chan error {
	done := make(chan error, 1)
	l.startWriting(o)
	go func() {
		for {
			l.mu.Lock()
			ended, err := l.wended, l.werr
			l.mu.Unlock()
			if ended {
				l.stopWriting()
				done <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return done
}

// TestIdleLinkParksWriter: a link that is up runs a writer only while it
// has work (issue 11: an idle link keeps one goroutine, its reader). Once
// it has had nothing to write for idleGrace its writer ends; a stanza
// starts a new one, which writes it; drain ends the stream.
func TestIdleLinkParksWriter(t *testing.T) {
	defer func(g time.Duration) { idleGrace = g }(idleGrace)
	idleGrace = 50 * time.Millisecond
	s := testServer(t, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second, WriteTimeout: time.Second, QueueStanzas: 10, QueueBytes: 1 << 20},
		[]config.Domain{{Name: "a.test", Route: "127.0.0.1:1"}})
	ours, theirs := net.Pipe()
	defer theirs.Close()
	defer ours.Close()
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	l.up = true
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	// writers counts the goroutines running a link's writer (the count
	// of all goroutines would also see other tests' come and go).
	writers := func() int {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "s2s.(*link).writer(")
	}
	done := writeUntilEnd(l, o) // one goroutine of the test's, one writer
	for end := time.Now().Add(time.Second); writers() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d writer goroutines once the link is up, want 1", writers())
		}
	}
	parked := func() bool {
		for range 200 {
			if l.parked.Load() {
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return false
	}
	buf := make([]byte, 64)
	for i := range 3 {
		if !parked() {
			t.Fatalf("round %d: the writer of an idle link did not park", i)
		}
		time.Sleep(20 * time.Millisecond)
		if n := writers(); n != 0 {
			t.Errorf("round %d: %d writer goroutines with a parked writer, want none", i, n)
		}
		if err := l.Enqueue(&routing.Stanza{Raw: []byte("<message/>")}); err != nil {
			t.Fatal(err)
		}
		theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := theirs.Read(buf); err != nil || string(buf[:n]) != "<message/>" {
			t.Fatalf("round %d: read %q, %v", i, buf[:n], err)
		}
	}
	l.drain()
	go io.Copy(io.Discard, theirs)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("drained: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not end the stream")
	}
}

// testServer is a Server with limits and a routing table of domains, its
// background work stopped when the test ends: for tests that drive links
// by hand.
func testServer(t testing.TB, limits config.Limits, domains []config.Domain) *Server {
	t.Helper()
	s := &Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Limits: limits}
	s.Router = routing.NewRouter(routing.Options{Table: routing.NewTable(domains)})
	s.init()
	t.Cleanup(s.cancel)
	return s
}

// TestLinkCopiesLentIDs: a link keeps its own copy of each stanza's id
// (lent by the stream that read it, whose buffer then takes the next
// stanza), and the stanzas it hands back to bounce or reroute keep theirs
// after the batch is reused.
func TestLinkCopiesLentIDs(t *testing.T) {
	s := testServer(t, config.Limits{QueueStanzas: 100, QueueBytes: 1 << 20}, []config.Domain{{Name: "a.test"}})
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	for i := range 40 { // enough for the ids to grow their array
		buf := []byte(strings.Repeat("x", i%7) + "id-" + string(rune('a'+i%26)))
		st := routing.Stanza{Kind: 1, From: "u@a.test", To: "v@b.test", ID: lentString(buf),
			FromDomain: "a.test", ToDomain: "b.test", Raw: []byte("<message/>")}
		if err := l.Enqueue(&st); err != nil {
			t.Fatal(err)
		}
		copy(buf, strings.Repeat("#", len(buf))) // the next stanza
	}
	b := l.pending[0]
	for i, r := range b.recs {
		if want := strings.Repeat("x", i%7) + "id-" + string(rune('a'+i%26)); r.ID != want {
			t.Fatalf("record %d has id %q, want %q", i, r.ID, want)
		}
	}
	sts := b.stanzas()
	last := sts[len(sts)-1].ID // in the ids array b keeps (the first ones are in arrays it outgrew)
	l.pending = nil
	b.release()
	b2 := firstBatches.Get().(*batch) // most likely b again (a link's first batch)
	b2.ids = append(b2.ids, strings.Repeat("#", cap(b2.ids))...)
	if want := strings.Repeat("x", 39%7) + "id-" + string(rune('a'+39%26)); last != want {
		t.Errorf("a stanza handed back has id %q after its batch was reused, want %q", last, want)
	}
	b2.release()
}

// countConn counts the writes (calls) and reads that reach the connection
// under it.
type countConn struct {
	net.Conn
	calls, reads int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.calls++
	return c.Conn.Write(p)
}

func (c *countConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

// TestLinkWriteGathers: a writer that finds several batches queued writes
// them to the socket in one call per holdBytes (holdConn), not one per
// batch (per TLS record, under TLS); each batch counts as written only once
// the call that carries its end returned, and a failed call leaves none of
// its batches counted.
func TestLinkWriteGathers(t *testing.T) {
	s := testServer(t, config.Limits{QueueStanzas: 10_000, QueueBytes: 4 << 20, WriteTimeout: 5 * time.Second}, []config.Domain{{Name: "a.test"}})
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	l.up = true
	raw := []byte("<message from='u@a.test' to='v@b.test'><body>" + strings.Repeat("x", 900) + "</body></message>")
	const n = 200 // about 190 KiB: three batches and part of a fourth
	enqueue := func(own bool) []byte {
		var all []byte
		for range n {
			st := routing.Stanza{Kind: 1, From: "u@a.test", To: "v@b.test", FromDomain: "a.test", ToDomain: "b.test", Raw: raw, Own: own}
			if err := l.Enqueue(&st); err != nil {
				t.Fatal(err)
			}
			all = append(all, raw...)
		}
		return all
	}
	want := enqueue(false)
	q := l.take(nil)
	if len(q) < 3 {
		t.Fatalf("%d batches queued, want at least 3", len(q))
	}

	ours, theirs := net.Pipe()
	cc := &countConn{Conn: ours}
	hc := newHoldConn(cc).(*holdConn)
	o := &outStream{s: s, raw: hc, conn: hc, w: wire.NewWriter(hc), hold: hc}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(theirs)
		got <- b
	}()
	if err := l.write(o, q); err != nil {
		t.Fatal(err)
	}
	ours.Close()
	if b := <-got; string(b) != string(want) {
		t.Fatalf("the peer read %d bytes, want the %d written, in order", len(b), len(want))
	}
	if wantCalls := (len(want) + holdBytes - 1) / holdBytes; cc.calls > wantCalls {
		t.Errorf("%d batches took %d writes to the socket, want at most %d", len(q), cc.calls, wantCalls)
	}
	if w := l.written.Load(); w != n {
		t.Errorf("%d stanzas counted written, want %d", w, n)
	}
	if hc.holding || hc.buf != nil {
		t.Error("the writer still holds the socket after its write")
	}

	// A peer gone: the write fails, and nothing of it counts as written.
	// (The relay's own stanzas, so that the failure drops them rather than
	// route bounces, which this bare server cannot.)
	enqueue(true)
	if err := l.write(o, l.take(nil)); err == nil {
		t.Fatal("a write to a closed connection succeeded")
	}
	if w := l.written.Load(); w != n {
		t.Errorf("%d stanzas counted written after a failed write, want still %d", w, n)
	}
	if dropped := s.Router.(*routing.Router).Stats().BouncesDropped.Load(); dropped != n {
		t.Errorf("%d stanzas of the failed write settled as failed, want %d", dropped, n)
	}
}

// TestHoldConnAllocs: a write cycle of a holdConn (hold, writes, flush,
// release) allocates nothing once its pool has a buffer.
func TestHoldConnAllocs(t *testing.T) {
	ours, theirs := net.Pipe()
	defer ours.Close()
	go io.Copy(io.Discard, theirs)
	hc := newHoldConn(ours).(*holdConn)
	p := make([]byte, 16<<10)
	n := testing.AllocsPerRun(100, func() {
		hc.hold()
		hc.Write(p)
		hc.Write(p)
		if err := hc.flush(); err != nil {
			t.Fatal(err)
		}
		hc.release()
	})
	if n != 0 {
		t.Errorf("a holdConn write cycle allocates %v times, want none", n)
	}
}

// TestLinkWriterWaitsForWake: after a pass that wrote, the writer takes
// more only when woken. A stream hands stanzas over with Defer and wakes
// the link once it has handed over all it read (issue 11): a writer that
// took them as they came wrote them in many small writes, each a system
// call and a wake-up of the peer. Here the first write blocks until the
// peer reads, a deferred stanza comes meanwhile, and it waits for Wake.
func TestLinkWriterWaitsForWake(t *testing.T) {
	s := testServer(t, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second, WriteTimeout: 5 * time.Second,
		QueueStanzas: 100, QueueBytes: 1 << 20}, []config.Domain{{Name: "a.test"}})
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	l.up = true
	ours, theirs := net.Pipe()
	defer theirs.Close()
	defer ours.Close()
	o := &outStream{s: s, raw: ours, conn: ours, w: wire.NewWriter(ours)}
	done := writeUntilEnd(l, o)
	enqueue := func(body string) []byte {
		raw := []byte("<message from='u@a.test' to='v@b.test'><body>" + body + "</body></message>")
		st := routing.Stanza{Kind: 1, From: "u@a.test", To: "v@b.test", FromDomain: "a.test", ToDomain: "b.test", Raw: raw, Defer: true}
		if err := l.Enqueue(&st); err != nil {
			t.Fatal(err)
		}
		return raw
	}
	read := func(want []byte) {
		t.Helper()
		theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(theirs, got); err != nil || string(got) != string(want) {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	// A first stanza, after which the writer waits for work (with no
	// wake-up left over from its start).
	zero := enqueue("zero")
	l.Wake()
	read(zero)
	time.Sleep(20 * time.Millisecond)

	first := enqueue("one")
	l.Wake()
	for l.writingSince() == 0 { // blocked writing the first to the pipe
		time.Sleep(time.Millisecond)
	}
	second := enqueue("two") // deferred: its stream will wake the link
	read(first)
	theirs.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	b := make([]byte, 200)
	if n, err := theirs.Read(b); err == nil {
		t.Fatalf("the writer wrote %q before the link was woken", b[:n])
	}
	l.Wake()
	read(second)
	l.drain()
	go io.Copy(io.Discard, theirs)
	<-done
}

// BenchmarkLinkEnqueue measures what a stream pays per stanza to queue it
// on a link that is up and has room (the writer's part left out: the
// batches are taken and released every 500 stanzas, as a writer would).
//
//	go test ./s2s -run '^$' -bench LinkEnqueue
func BenchmarkLinkEnqueue(b *testing.B) {
	s := testServer(b, config.Limits{IdleTimeout: time.Minute, NegotiationTimeout: time.Second, WriteTimeout: 5 * time.Second,
		QueueStanzas: 1000, QueueBytes: 4 << 20}, []config.Domain{{Name: "a.test"}})
	l := s.newLink(routing.Pair{From: "a.test", To: "b.test"}, func(error) {})
	l.up = true
	raw := []byte("<message from='juliet@a.test/balcony' to='romeo@b.test' type='chat' id='0f8e3c2a-5c1d-4f3e-9a2b-7e0c1d2f3a4b'>" +
		"<body>" + strings.Repeat("But soft, what light ", 10) + "</body></message>")
	st := routing.Stanza{Kind: 1, From: "juliet@a.test/balcony", To: "romeo@b.test", FromDomain: "a.test", ToDomain: "b.test",
		ID: "0f8e3c2a-5c1d-4f3e-9a2b-7e0c1d2f3a4b", Defer: true}
	var spare []*batch
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st.Raw = raw
		if err := l.Enqueue(&st); err != nil {
			b.Fatal(err)
		}
		if i%500 == 499 {
			q := l.take(spare)
			for _, bt := range q {
				bt.release()
			}
			spare = q[:0]
		}
	}
}

// TestHoldConnReleaseWritesLateBytes: what TLS writes into a hold after
// its holder's last flush (the stream's reader answering the peer: a
// KeyUpdate, an alert) goes out when the hold ends, not dropped, which
// broke the TLS stream under the peer; a failed stream's hold drops it;
// and a holder that must not wait is told that bytes remain.
func TestHoldConnReleaseWritesLateBytes(t *testing.T) {
	ours, theirs := net.Pipe()
	defer ours.Close()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(theirs)
		got <- b
	}()
	hc := newHoldConn(ours).(*holdConn)

	hc.hold()
	hc.Write([]byte("stanzas;"))
	if err := hc.flush(); err != nil {
		t.Fatal(err)
	}
	hc.Write([]byte("late;")) // after the last flush
	hc.release()

	if !hc.tryHold() {
		t.Fatal("tryHold refused after release")
	}
	hc.Write([]byte("more;"))
	if hc.releaseIfEmpty() {
		t.Fatal("releaseIfEmpty ended a hold with bytes gathered")
	}
	if err := hc.flush(); err != nil {
		t.Fatal(err)
	}
	if !hc.releaseIfEmpty() {
		t.Fatal("releaseIfEmpty kept a hold with nothing gathered")
	}

	hc.hold()
	hc.Write([]byte("broken;"))
	hc.discard()
	hc.Write([]byte("after;")) // not held: straight to the socket
	ours.Close()
	if b := string(<-got); b != "stanzas;late;more;after;" {
		t.Errorf("the peer read %q, want %q", b, "stanzas;late;more;after;")
	}
}
