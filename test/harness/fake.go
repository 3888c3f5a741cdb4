package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// FakeServer is an XMPP server for one or more domains that speaks real
// S2S, enough to stand on either side of a relay: a strict peer.Server
// (s2s/peer) that keeps every stanza it receives and answers none, bound
// to a test.
//
//   - It accepts streams on Addr: it answers the header, requires STARTTLS
//     (a self-signed certificate), and plays Receiving server for
//     db:result (checking the key with the Authoritative server of the
//     sender domain over a verify connection of its own) and Authoritative
//     server for db:verify of keys made with its own secret.
//   - It accepts stanzas only for the domain pairs authorized on their
//     stream; anything else closes the stream with the stream error RFC
//     6120 prescribes and is recorded as a violation, which fails the test.
//   - It opens authenticated streams of its own with Dial, as Scripts.
//
// The Authoritative server of a domain the fake does not host is at the
// address SetAuthoritative gives: a relay's internal face when the fake is
// an internal server (the relay speaks for every remote domain there), a
// relay's federation face when it is a server of the public federation.
type FakeServer struct {
	// Addr is where the fake accepts streams.
	Addr string
	// Name labels the fake in logs.
	Name string

	srv    *peer.Server
	served chan struct{} // closed when Serve has returned

	mu            sync.Mutex
	authoritative func(domain string) string
	handler       atomic.Pointer[func(*peer.Inbound, *wire.Element)]
}

// Stanza is a stanza a FakeServer received: its Pair is the authorized
// pair of the stream it came on.
type Stanza = peer.Stanza

// NewFakeServer starts a fake server for domains on a fresh loopback
// address, with a random dialback secret of its own. It stops when the test
// ends, and the test fails if it saw a protocol violation.
func NewFakeServer(t testing.TB, name string, domains ...string) *FakeServer {
	t.Helper()
	return NewFakeServerCert(t, name, nil, domains...)
}

// NewFakeServerCert is NewFakeServer with the certificate the fake presents
// on the streams it accepts and opens; nil means a self-signed one.
func NewFakeServerCert(t testing.TB, name string, cert *tls.Certificate, domains ...string) *FakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", NextIP()+":0")
	if err != nil {
		t.Fatalf("fake %s: listen: %v", name, err)
	}
	f := &FakeServer{Addr: ln.Addr().String(), Name: name, served: make(chan struct{})}
	f.srv = &peer.Server{Domains: domains, Authoritative: f.authoritativeFor, Timeout: ReadTimeout, Strict: true, Cert: cert}
	f.srv.Handler = func(in *peer.Inbound, el *wire.Element) {
		if h := f.handler.Load(); h != nil {
			(*h)(in, el)
			return
		}
		f.srv.Keep(in, el)
	}
	go func() {
		defer close(f.served)
		if err := f.srv.Serve(ln); !errors.Is(err, peer.ErrServerClosed) {
			t.Errorf("fake %s: %v", name, err)
		}
	}()
	t.Cleanup(func() {
		f.Close()
		for _, v := range f.Violations() {
			t.Errorf("fake %s: protocol violation by its peer: %s", f.Name, v)
		}
		if t.Failed() {
			t.Logf("fake %s (%s) events:\n%s", f.Name, f.Addr, strings.Join(f.Events(), "\n"))
		}
	})
	return f
}

// SetHandler makes the fake hand the stanzas it receives from now on to h,
// on their stream's reading goroutine, instead of keeping them; nil
// restores keeping.
func (f *FakeServer) SetHandler(h func(*peer.Inbound, *wire.Element)) {
	if h == nil {
		f.handler.Store(nil)
		return
	}
	f.handler.Store(&h)
}

// Secret is the fake's dialback secret.
func (f *FakeServer) Secret() *dialback.Secret { return f.srv.DialbackSecret() }

// SetAuthoritative sets the address of the Authoritative server of every
// domain the fake does not host.
func (f *FakeServer) SetAuthoritative(addr string) {
	f.SetAuthoritativeFunc(func(string) string { return addr })
}

// SetAuthoritativeFunc sets where the Authoritative server of each domain
// the fake does not host is.
func (f *FakeServer) SetAuthoritativeFunc(fn func(domain string) string) {
	f.mu.Lock()
	f.authoritative = fn
	f.mu.Unlock()
}

func (f *FakeServer) authoritativeFor(domain string) string {
	f.mu.Lock()
	fn := f.authoritative
	f.mu.Unlock()
	if fn == nil {
		return ""
	}
	return fn(domain)
}

// SetMaxBytes makes the fake advertise n as its XEP-0478 max-bytes on the
// streams it accepts from now on.
func (f *FakeServer) SetMaxBytes(n int) { f.srv.SetMaxBytes(n) }

// SetStreamManagement makes the fake offer XEP-0198 stream management on
// the streams it accepts from now on (peer.Server.SetStreamManagement).
func (f *FakeServer) SetStreamManagement(on bool) { f.srv.SetStreamManagement(on) }

// Lose makes the streams the fake has accepted so far lose what arrives
// from now on, as a dead network path would; Cut then closes them
// (peer.Server.Lose, Cut).
func (f *FakeServer) Lose() { f.srv.Lose() }

// Cut closes the connections Lose marked, without a closing element.
func (f *FakeServer) Cut() { f.srv.Cut() }

// SetRefuseVerify makes the fake answer every db:verify with
// type='invalid', as if the keys were forged.
func (f *FakeServer) SetRefuseVerify(on bool) { f.srv.SetRefuseVerify(on) }

// SetCutResults makes the fake reset the connection of the next n streams
// on which a peer sends it a db:result, instead of answering
// (peer.Server.SetCutResults).
func (f *FakeServer) SetCutResults(n int) { f.srv.SetCutResults(n) }

// SetRefuseMultiplex makes the fake refuse a further pair on an
// authenticated stream (peer.Server.SetRefuseMultiplex): "error",
// "invalid", "ignore", or "" to accept it.
func (f *FakeServer) SetRefuseMultiplex(how string) { f.srv.SetRefuseMultiplex(how) }

// Accepted is how many connections the fake has accepted.
func (f *FakeServer) Accepted() int { return f.srv.Accepted() }

// Events returns what happened on the fake's streams, for failure output.
func (f *FakeServer) Events() []string { return f.srv.Events() }

// Violations returns the protocol violations the fake's peers committed.
func (f *FakeServer) Violations() []string { return f.srv.Violations() }

// Stanzas returns every stanza received so far.
func (f *FakeServer) Stanzas() []Stanza { return f.srv.Received() }

// Count returns how many received stanzas satisfy match.
func (f *FakeServer) Count(match func(Stanza) bool) int { return f.srv.Count(match) }

// Wait waits for a received stanza (one received earlier counts) that
// satisfies match, and returns it; the test fails after WaitTimeout.
func (f *FakeServer) Wait(t testing.TB, what string, match func(Stanza) bool) Stanza {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	st, err := f.srv.Wait(ctx, match)
	if err != nil {
		t.Fatalf("fake %s: no %s within %s; received:\n%s", f.Name, what, WaitTimeout, f.dumpStanzas())
	}
	return st
}

// SetBidi makes the server do XEP-0288 (peer.Server.SetBidi): offer it on
// the streams it accepts, ask for it on those it opens.
func (f *FakeServer) SetBidi(on bool) { f.srv.SetBidi(on) }

// InboundFor returns an accepted stream on which the peer authenticated
// from→to, or nil (peer.Server.InboundFor).
func (f *FakeServer) InboundFor(from, to string) *peer.Inbound { return f.srv.InboundFor(from, to) }

// WaitID waits for the stanza with this id.
func (f *FakeServer) WaitID(t testing.TB, id string) Stanza {
	t.Helper()
	return f.Wait(t, "stanza id="+id, func(s Stanza) bool { return s.ID == id })
}

// WaitStreamError waits until one of the fake's inbound streams is closed
// by its peer with a stream error of condition cond.
func (f *FakeServer) WaitStreamError(t testing.TB, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := f.srv.WaitStreamError(ctx, cond); err != nil {
		t.Fatalf("fake %s: no stream error %s within %s; events:\n%s", f.Name, cond, WaitTimeout,
			strings.Join(f.Events(), "\n"))
	}
}

// StreamErrors returns the conditions of the stream errors the fake's
// inbound streams were closed with by their peers.
func (f *FakeServer) StreamErrors() []string { return f.srv.StreamErrors() }

func (f *FakeServer) dumpStanzas() string {
	var b strings.Builder
	for _, s := range f.Stanzas() {
		fmt.Fprintf(&b, "  [%s] %s\n", s.Pair, s.Raw)
	}
	return b.String()
}

// Dial opens a stream from from (a domain the fake hosts) to to at addr,
// secures it with STARTTLS and authenticates it by dialback, failing the
// test unless the answer is valid. The stream is ready for Send.
func (f *FakeServer) Dial(t testing.TB, addr, from, to string) *Script {
	t.Helper()
	s, err := f.TryDial(t, addr, from, to)
	if err != nil {
		t.Fatalf("fake %s: stream %s→%s at %s: %v", f.Name, from, to, addr, err)
	}
	return s
}

// TryDial is Dial returning what went wrong instead of failing the test.
func (f *FakeServer) TryDial(t testing.TB, addr, from, to string) (*Script, error) {
	t.Helper()
	s, err := TryDialScript(t, addr)
	if err != nil {
		return nil, err
	}
	cert := f.srv.Certificate()
	s.Cert = &cert // as a real server does: its certificate goes out as the client's
	if err := s.Negotiate(from, to); err != nil {
		return s, err
	}
	typ, cond, err := s.Dialback(f.Secret(), from, to)
	if err != nil {
		return s, err
	}
	if typ != dialback.TypeValid {
		return s, fmt.Errorf("dialback answered %s %s", typ, cond)
	}
	f.srv.Eventf("out %s→%s at %s: authenticated by dialback", from, to, addr)
	return s, nil
}

// DialBidi is Dial asking for XEP-0288 bidi after TLS, before dialback: the
// relay may then send stanzas for (to → from) on the stream, which Next
// reads. It fails the test if the relay does not offer bidi.
func (f *FakeServer) DialBidi(t testing.TB, addr, from, to string) *Script {
	t.Helper()
	s, err := TryDialScript(t, addr)
	if err != nil {
		t.Fatalf("fake %s: connect to %s: %v", f.Name, addr, err)
	}
	cert := f.srv.Certificate()
	s.Cert = &cert
	if err := s.Negotiate(from, to); err != nil {
		t.Fatalf("fake %s: stream %s→%s at %s: %v", f.Name, from, to, addr, err)
	}
	if !s.Offers("bidi") {
		t.Fatalf("fake %s: stream %s→%s at %s: bidi not offered in %s", f.Name, from, to, addr, s.Features.Raw)
	}
	s.Send("<bidi xmlns='urn:xmpp:bidi'/>")
	typ, cond, err := s.Dialback(f.Secret(), from, to)
	if err != nil || typ != dialback.TypeValid {
		t.Fatalf("fake %s: stream %s→%s at %s: dialback: %v %s %v", f.Name, from, to, addr, typ, cond, err)
	}
	f.srv.Eventf("out %s→%s at %s: bidi, authenticated by dialback", from, to, addr)
	return s
}

// Close stops the fake: no new streams, every open one closed.
func (f *FakeServer) Close() {
	f.srv.Close()
	<-f.served
}
