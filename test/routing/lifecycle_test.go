package routing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/test/harness"
)

// TestInternalServerDown: when the route of an internal domain refuses,
// stanzas from the federation to it bounce with remote-server-timeout,
// back over the federation.
func TestInternalServerDown(t *testing.T) {
	proxy := harness.StartProxy(t, harness.ClosedAddr(t))
	proxy.SetMode(harness.Refuse)
	s := harness.StartSite(t, fmt.Sprintf("domains: [{name: a.test, route: %q}]", proxy.Addr), "remote.test")
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "down-in", "hi"))
	expectError(t, s.Remote, "down-in", "message", "wait", "remote-server-timeout")
	if proxy.Accepted() == 0 {
		t.Errorf("the relay never tried the route")
	}
	s.Relay.WaitBalanced(t)
}

// TestIdleLinkReopens: an outbound link that carried nothing for
// limits.idle_timeout closes; the next stanza opens a new one.
func TestIdleLinkReopens(t *testing.T) {
	s := harness.StartSite(t, "limits: {idle_timeout: 500ms}", "remote.test")
	s.FromInside(t, "remote.test").Send(harness.Message("alice@a.test", "bob@remote.test", "idle-1", "hi"))
	s.Remote.WaitID(t, "idle-1")
	harness.Eventually(t, func() bool { return s.Relay.Server.Stats().OutboundOpen.Load() == 0 },
		"the idle link to close")
	s.Relay.Logs.Wait(t, "outbound stream closed", "to", "remote.test", "reason", "idle")
	s.FromInside(t, "remote.test").Send(harness.Message("alice@a.test", "bob@remote.test", "idle-2", "hi"))
	s.Remote.WaitID(t, "idle-2")
	if n := s.Relay.Server.Stats().OutboundTotal.Load(); n != 2 {
		t.Errorf("%d links, want 2", n)
	}
	s.Relay.WaitBalanced(t)
}

// TestShutdown: Shutdown closes every inbound stream with system-shutdown
// and closes the outbound links cleanly.
func TestShutdown(t *testing.T) {
	s := harness.StartSite(t, "", "remote.test")
	in := s.FromOutside(t, "remote.test")
	out := s.FromInside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "s-in", "hi"))
	out.Send(harness.Message("alice@a.test", "bob@remote.test", "s-out", "hi"))
	s.Internal.WaitID(t, "s-in")
	s.Remote.WaitID(t, "s-out")

	ctx, cancel := context.WithTimeout(context.Background(), harness.WaitTimeout)
	defer cancel()
	start := time.Now()
	if err := s.Relay.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("shutdown took %s", time.Since(start))
	in.ExpectStreamError("system-shutdown")
	out.ExpectStreamError("system-shutdown")
	// The links' peers see a clean end of stream, not an error.
	for _, f := range []*harness.FakeServer{s.Internal, s.Remote} {
		if errs := f.StreamErrors(); len(errs) > 0 {
			t.Errorf("%s: links closed with %v", f.Name, errs)
		}
	}
	s.Relay.WaitBalanced(t)
}

// TestIdleInboundStream: an inbound stream idle for limits.idle_timeout is
// closed gracefully with the closing tag: connection-timeout is for a peer
// that stopped responding, not for mere idleness (RFC 6120 §4.9.3.4,
// protocol digest §1.5 and §1.8).
//
// A regression test: the idle timeout is a read deadline, and every
// timeout used to become connection-timeout; fixed in 2351101.
func TestIdleInboundStream(t *testing.T) {
	s := harness.StartSite(t, "limits: {idle_timeout: 500ms}", "remote.test")
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "before-idle", "hi"))
	s.Internal.WaitID(t, "before-idle")
	el, err := in.Next()
	switch {
	case err == nil:
		t.Errorf("idle stream closed with %s, want </stream:stream>", el.Raw)
	case !errors.Is(err, io.EOF):
		t.Errorf("idle stream: %v, want the closing tag", err)
	}
	s.Relay.WaitBalanced(t)
}

// inboundOwners counts the goroutines serving inbound streams.
func inboundOwners() int {
	buf := make([]byte, 4<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "s2s.(*inConn).own(")
}

// TestIdleStreamParks: an authenticated inbound stream quiet for a few
// seconds gives up its goroutine (its stack was most of what an idle stream
// cost), and is resumed, on a new one, by the next stanza, by Shutdown and by
// its idle timeout.
func TestIdleStreamParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("streams park only on Linux")
	}
	s := harness.StartSite(t, "limits: {idle_timeout: 5s}", "remote.test")
	in := s.FromOutside(t, "remote.test")
	parked := func(what string) {
		t.Helper()
		harness.Eventually(t, func() bool { return inboundOwners() == 0 }, "%s", what)
	}
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "park-1", "hi"))
	s.Internal.WaitID(t, "park-1")
	parked("the quiet stream to park")
	for i := 2; i <= 3; i++ {
		id := fmt.Sprintf("park-%d", i)
		in.Send(harness.Message("bob@remote.test", "alice@a.test", id, "hi"))
		s.Internal.WaitID(t, id)
		parked("the stream to park again")
	}
	// The idle timeout, counted from the last stanza, ends a parked stream
	// with the closing tag, as it ends one that waits.
	start := time.Now()
	if el, err := in.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("a parked stream at its idle timeout: %v %v, want the closing tag", el, err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("closed %s after it parked, past its 5 s idle timeout", d)
	}

	// Shutdown wakes a parked stream and closes it with system-shutdown.
	in = s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "park-4", "hi"))
	s.Internal.WaitID(t, "park-4")
	parked("the new stream to park")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start = time.Now()
	if err := s.Relay.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %s with a parked stream", d)
	}
	in.ExpectStreamError("system-shutdown")
	s.Relay.WaitBalanced(t)
}

// TestIdleLinkParksReader: an outbound link whose peer sends nothing for a
// few seconds gives up its reader's goroutine (its writer already ends when
// it has nothing to write); the next stanza still goes out, and Close ends
// a parked link at once.
func TestIdleLinkParksReader(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("streams park only on Linux")
	}
	readers := func() int {
		buf := make([]byte, 4<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "s2s.(*link).ownRead(")
	}
	s := harness.StartSite(t, "", "remote.test")
	out := s.FromInside(t, "remote.test")
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("lpark-%d", i)
		out.Send(harness.Message("alice@a.test", "bob@remote.test", id, "hi"))
		s.Remote.WaitID(t, id)
		harness.Eventually(t, func() bool { return readers() == 0 }, "the reader of the quiet link to park (round %d)", i)
	}
	start := time.Now()
	s.Relay.Server.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s with a parked link", d)
	}
	if n := s.Relay.Server.Stats().OutboundOpen.Load(); n != 0 {
		t.Errorf("%d links still open after Close", n)
	}
	s.Relay.WaitBalanced(t)
}

// TestSlowStanzaIsNotIdle: a stanza that arrives in pieces over longer
// than limits.idle_timeout, each piece within it, is read whole: the idle
// timeout counts from the last bytes read, not from the deadline the read
// began under (the relay no longer re-arms it before every read).
func TestSlowStanzaIsNotIdle(t *testing.T) {
	s := harness.StartSite(t, "limits: {idle_timeout: 500ms}", "remote.test")
	in := s.FromOutside(t, "remote.test")
	in.Send(harness.Message("bob@remote.test", "alice@a.test", "slow-0", "hi"))
	s.Internal.WaitID(t, "slow-0")
	msg := harness.Message("bob@remote.test", "alice@a.test", "slow-1", strings.Repeat("x", 80))
	const pieces = 8
	step := (len(msg) + pieces - 1) / pieces
	for i := 0; i < len(msg); i += step {
		in.Send(msg[i:min(i+step, len(msg))])
		time.Sleep(200 * time.Millisecond) // 1.6 s in all, against a 500 ms idle timeout
	}
	last := time.Now().Add(-200 * time.Millisecond) // when the last piece went
	s.Internal.WaitID(t, "slow-1")
	// The stream must not have been closed for idleness in the middle of
	// the stanza (the linger would still have routed it): its closing tag
	// comes an idle timeout after the last piece, not already waiting.
	if el, err := in.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("then idle: %v %v, want the closing tag", el, err)
	}
	if d := time.Since(last); d < 400*time.Millisecond {
		t.Errorf("closed %s after the last piece: for idleness while the stanza was still coming", d)
	}
	s.Relay.WaitBalanced(t)
}
