package harness

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// FakeServer is an XMPP server for one or more domains that speaks real
// S2S, enough to stand on either side of a relay:
//
//   - It accepts streams on Addr: it answers the header, offers STARTTLS
//     (a self-signed certificate) and dialback, and plays Receiving server
//     for db:result (checking the key with the Authoritative server of the
//     sender domain over a verify connection of its own) and Authoritative
//     server for db:verify of keys made with its own secret.
//   - It accepts stanzas only for the domain pairs authorized on their
//     stream; anything else closes the stream with the stream error RFC
//     6120 prescribes and is recorded as a violation, which fails the test.
//   - It opens authenticated streams of its own with Dial.
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

	t       testing.TB
	secret  *dialback.Secret
	domains map[string]bool
	cert    tls.Certificate
	ln      net.Listener

	mu            sync.Mutex
	authoritative func(domain string) string
	refuseVerify  bool
	stanzas       []Stanza
	events        []string
	violations    []string
	streamErrors  []string
	changed       chan struct{}
	conns         map[net.Conn]struct{}
	closed        bool
	wg            sync.WaitGroup
}

// Stanza is a stanza a FakeServer received.
type Stanza struct {
	Element
	// Pair is the authorized pair of the stream it came on, "from→to".
	Pair string
	At   time.Time
}

// NewFakeServer starts a fake server for domains on a fresh loopback
// address, with a random dialback secret of its own. It stops when the test
// ends, and the test fails if it saw a protocol violation.
func NewFakeServer(t testing.TB, name string, domains ...string) *FakeServer {
	t.Helper()
	var b [16]byte
	rand.Read(b[:])
	secret, err := dialback.NewSecret([]byte(hex.EncodeToString(b[:])))
	if err != nil {
		t.Fatalf("fake %s: %v", name, err)
	}
	ln, err := net.Listen("tcp", NextIP()+":0")
	if err != nil {
		t.Fatalf("fake %s: listen: %v", name, err)
	}
	f := &FakeServer{
		Addr: ln.Addr().String(), Name: name, t: t, secret: secret, domains: map[string]bool{},
		cert: SelfSigned(t, domains...), ln: ln, changed: make(chan struct{}), conns: map[net.Conn]struct{}{},
	}
	for _, d := range domains {
		f.domains[d] = true
	}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			t.Logf("fake %s (%s) events:\n%s", f.Name, f.Addr, strings.Join(f.Events(), "\n"))
		}
		for _, v := range f.Violations() {
			t.Errorf("fake %s: protocol violation by its peer: %s", f.Name, v)
		}
	})
	return f
}

// Secret is the fake's dialback secret.
func (f *FakeServer) Secret() *dialback.Secret { return f.secret }

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

// SetRefuseVerify makes the fake answer every db:verify with
// type='invalid', as if the keys were forged.
func (f *FakeServer) SetRefuseVerify(on bool) {
	f.mu.Lock()
	f.refuseVerify = on
	f.mu.Unlock()
}

func (f *FakeServer) hosts(d string) bool { return f.domains[d] }

func (f *FakeServer) logf(format string, args ...any) {
	f.record(func() {
		f.events = append(f.events, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	})
}

// record changes the fake's records under its lock and wakes waiters.
func (f *FakeServer) record(change func()) {
	f.mu.Lock()
	change()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Events returns what happened on the fake's streams, for failure output.
func (f *FakeServer) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// Violations returns the protocol violations the fake's peers committed.
func (f *FakeServer) Violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.violations...)
}

// Stanzas returns every stanza received so far.
func (f *FakeServer) Stanzas() []Stanza {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Stanza(nil), f.stanzas...)
}

// Count returns how many received stanzas satisfy match.
func (f *FakeServer) Count(match func(Stanza) bool) int {
	n := 0
	for _, s := range f.Stanzas() {
		if match(s) {
			n++
		}
	}
	return n
}

// Wait waits for a received stanza (one received earlier counts) that
// satisfies match, and returns it; the test fails after WaitTimeout.
func (f *FakeServer) Wait(t testing.TB, what string, match func(Stanza) bool) Stanza {
	t.Helper()
	deadline := time.After(WaitTimeout)
	for {
		f.mu.Lock()
		for _, s := range f.stanzas {
			if match(s) {
				f.mu.Unlock()
				return s
			}
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("fake %s: no %s within %s; received:\n%s", f.Name, what, WaitTimeout, f.dumpStanzas())
			return Stanza{}
		}
	}
}

// WaitID waits for the stanza with this id.
func (f *FakeServer) WaitID(t testing.TB, id string) Stanza {
	t.Helper()
	return f.Wait(t, "stanza id="+id, func(s Stanza) bool { return s.ID == id })
}

// WaitStreamError waits until one of the fake's inbound streams is closed
// by its peer with a stream error of condition cond.
func (f *FakeServer) WaitStreamError(t testing.TB, cond string) {
	t.Helper()
	deadline := time.After(WaitTimeout)
	for {
		f.mu.Lock()
		for _, c := range f.streamErrors {
			if c == cond {
				f.mu.Unlock()
				return
			}
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("fake %s: no stream error %s within %s; events:\n%s", f.Name, cond, WaitTimeout,
				strings.Join(f.Events(), "\n"))
			return
		}
	}
}

// StreamErrors returns the conditions of the stream errors the fake's
// inbound streams were closed with by their peers.
func (f *FakeServer) StreamErrors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.streamErrors...)
}

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
	s := Dial(t, addr)
	if err := s.Negotiate(from, to); err != nil {
		return s, err
	}
	typ, cond, err := s.Dialback(f.secret, from, to)
	if err != nil {
		return s, err
	}
	if typ != dialback.TypeValid {
		return s, fmt.Errorf("dialback answered %s %s", typ, cond)
	}
	f.logf("out %s→%s at %s: authenticated by dialback", from, to, addr)
	return s, nil
}

// Close stops the fake: no new streams, every open one closed.
func (f *FakeServer) Close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

func (f *FakeServer) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !add {
		delete(f.conns, c)
		return true
	}
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

// goTracked starts fn on a goroutine Close waits for, unless the fake is
// closing.
func (f *FakeServer) goTracked(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

func (f *FakeServer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c, true) {
			c.Close()
			return
		}
		if !f.goTracked(func() {
			defer f.track(c, false)
			defer c.Close()
			in := &fakeIn{f: f, raw: c, conn: c, peer: c.RemoteAddr().String()}
			in.serve()
		}) {
			f.track(c, false)
			c.Close()
		}
	}
}

// fakeIn is one stream accepted by a FakeServer.
type fakeIn struct {
	f    *FakeServer
	peer string
	raw  net.Conn
	conn net.Conn
	r    *wire.Reader

	wmu sync.Mutex
	w   *wire.Writer

	mu sync.Mutex // guards db
	db *dialback.Stream

	tls      bool
	from, to string
	wg       sync.WaitGroup // verification goroutines
}

func (in *fakeIn) serve() {
	in.r = wire.NewReader(in.raw, wire.Limits{MaxStanza: 1 << 20, MaxStanzaPreAuth: 1 << 20})
	in.w = wire.NewWriter(in.raw)
	err := in.run()
	in.wg.Wait()
	var se stream.Error
	var pe *StreamError
	switch {
	case errors.As(err, &pe):
		in.f.logf("in %s %s→%s: closed by its peer with %s", in.peer, in.from, in.to, pe.Condition)
		in.f.record(func() { in.f.streamErrors = append(in.f.streamErrors, pe.Condition) })
	case errors.As(err, &se):
		in.f.logf("in %s %s→%s: closing with %s: %v", in.peer, in.from, in.to, se.Err, err)
		in.wmu.Lock()
		in.w.WriteStreamError(se)
		in.w.Flush()
		in.wmu.Unlock()
	case err == nil || errors.Is(err, io.EOF):
		in.f.logf("in %s %s→%s: closed by its peer", in.peer, in.from, in.to)
		in.wmu.Lock()
		in.w.WriteClose()
		in.w.Flush()
		in.wmu.Unlock()
	default:
		in.f.logf("in %s %s→%s: ended: %v", in.peer, in.from, in.to, err)
	}
}

// closeWith ends the stream from a goroutine other than its owner: the
// stream error if err is one, then the connection, which ends the owner's
// read.
func (in *fakeIn) closeWith(err error) {
	var se stream.Error
	if errors.As(err, &se) {
		in.f.logf("in %s %s→%s: closing with %s", in.peer, in.from, in.to, se.Err)
		in.wmu.Lock()
		in.w.WriteStreamError(se)
		in.w.Flush()
		in.wmu.Unlock()
	}
	in.raw.Close()
}

func (in *fakeIn) write(p []byte) error {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	in.w.WriteRaw(p)
	return in.w.Flush()
}

func (in *fakeIn) violation(format string, args ...any) {
	msg := fmt.Sprintf("in %s %s→%s: ", in.peer, in.from, in.to) + fmt.Sprintf(format, args...)
	in.f.record(func() { in.f.violations = append(in.f.violations, msg) })
}

func (in *fakeIn) run() error {
	for {
		hdr, err := in.r.ReadHeader()
		if err != nil {
			return err
		}
		in.to, in.from = strings.ToLower(hdr.To), strings.ToLower(hdr.From)
		id := randomID()
		h := &wire.Header{From: in.to, To: in.from, ID: id, Lang: "en"}
		if hdr.Version != "" {
			h.Version = "1.0"
		}
		in.wmu.Lock()
		in.w.WriteHeader(h)
		in.wmu.Unlock()
		if !in.f.hosts(in.to) {
			in.violation("stream to %q, a domain the fake does not host", hdr.To)
			return stream.HostUnknown
		}
		feats := "<stream:features>"
		if !in.tls {
			feats += "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
		}
		feats += "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
		if hdr.Version == "" {
			feats = ""
		}
		if err := in.write([]byte(feats)); err != nil {
			return err
		}
		in.mu.Lock()
		in.db = dialback.NewStream(dialback.Config{ID: id, Secret: in.f.secret, Serves: in.f.hosts})
		in.mu.Unlock()
		in.f.logf("in %s %s→%s: stream open (tls %v)", in.peer, in.from, in.to, in.tls)

		for restart := false; !restart; {
			el, err := in.r.Next()
			if err != nil {
				return err
			}
			if restart, err = in.handle(el); err != nil {
				return err
			}
		}
	}
}

func (in *fakeIn) handle(el *wire.Element) (restart bool, err error) {
	switch el.Kind {
	case wire.Space:
		return false, nil
	case wire.StreamError:
		e := copyElement(el)
		return false, &StreamError{Condition: e.StreamErrorCondition(), Raw: e.Raw}
	case wire.DialbackResult, wire.DialbackVerify:
		e, err := dialback.Parse(el.Raw)
		if err != nil {
			return false, err
		}
		in.mu.Lock()
		if e.Kind == dialback.KindVerify && e.Type == dialback.TypeRequest && in.f.refuseVerifyOn() {
			in.mu.Unlock()
			in.f.logf("in %s: db:verify %s→%s answered invalid (refusing)", in.peer, e.From, e.To)
			return false, in.write(e.Response(dialback.TypeInvalid).Append(nil))
		}
		dec := in.db.Handle(e)
		in.mu.Unlock()
		return false, in.apply(dec)
	case wire.Message, wire.Presence, wire.IQ:
		return false, in.stanza(el)
	}
	if string(el.NS) == "urn:ietf:params:xml:ns:xmpp-tls" && string(el.Local) == "starttls" {
		if in.tls {
			in.violation("STARTTLS twice")
			return false, stream.PolicyViolation
		}
		if err := in.write([]byte("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
			return false, err
		}
		tc := tls.Server(in.raw, &tls.Config{Certificates: []tls.Certificate{in.f.cert}})
		tc.SetDeadline(time.Now().Add(ReadTimeout))
		if err := tc.Handshake(); err != nil {
			return false, fmt.Errorf("TLS handshake: %w", err)
		}
		tc.SetDeadline(time.Time{})
		in.wmu.Lock()
		in.conn = tc
		in.w.Reset(tc)
		in.wmu.Unlock()
		in.r.Reset(tc)
		in.tls = true
		return true, nil
	}
	in.violation("unexpected element %s", el.Raw)
	return false, stream.UnsupportedStanzaType
}

func (f *FakeServer) refuseVerifyOn() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refuseVerify
}

// apply carries out a dialback decision.
func (in *fakeIn) apply(dec dialback.Decision) error {
	switch dec.Action {
	case dialback.Reply:
		r := dec.Reply
		in.f.logf("in %s: dialback %s %s→%s answered %s", in.peer, r.Kind, r.To, r.From, r.Type)
		if err := in.write(r.Append(nil)); err != nil {
			return err
		}
		return dec.Close
	case dialback.Forward:
		in.wg.Add(1)
		if !in.f.goTracked(func() {
			defer in.wg.Done()
			answer := in.f.askAuthoritative(dec.Verify)
			in.mu.Lock()
			d := in.db.Conclude(answer)
			in.mu.Unlock()
			if err := in.apply(d); err != nil {
				in.closeWith(err)
			}
		}) {
			in.wg.Done()
		}
	case dialback.Ignore:
		in.f.logf("in %s: dialback element ignored: %v", in.peer, dec.Reason)
	}
	return nil
}

// askAuthoritative checks a key with the Authoritative server of v.To over
// a verify connection (XEP-0220 §2.2.2).
func (f *FakeServer) askAuthoritative(v dialback.Element) dialback.Element {
	f.mu.Lock()
	auth := f.authoritative
	f.mu.Unlock()
	if auth == nil {
		f.logf("verify %s: no Authoritative server configured", v.To)
		return v.ErrorResponse(dialback.RemoteConnectionFailed)
	}
	addr := auth(v.To)
	answer, err := f.verify(addr, v)
	if err != nil {
		f.logf("verify %s at %s: %v", v.To, addr, err)
		return v.ErrorResponse(dialback.RemoteConnectionFailed)
	}
	f.logf("verify %s at %s: %s", v.To, addr, answer.Type)
	return answer
}

func (f *FakeServer) verify(addr string, v dialback.Element) (dialback.Element, error) {
	c, err := net.DialTimeout("tcp", addr, ReadTimeout)
	if err != nil {
		return dialback.Element{}, err
	}
	if !f.track(c, true) {
		c.Close()
		return dialback.Element{}, errors.New("fake closed")
	}
	defer f.track(c, false)
	defer c.Close()
	s := &Script{t: f.t, raw: c, conn: c}
	s.r = wire.NewReader(c, wire.Limits{})
	if err := s.Negotiate(v.From, v.To); err != nil {
		return dialback.Element{}, err
	}
	db := dialback.NewStream(dialback.Config{ID: s.ID(), Outbound: true, Secret: f.secret, Serves: f.hosts})
	req, err := db.SendVerify(v)
	if err != nil {
		return dialback.Element{}, err
	}
	if err := s.Write(string(req.Append(nil))); err != nil {
		return dialback.Element{}, err
	}
	for {
		el, err := s.Next()
		if err != nil {
			return dialback.Element{}, err
		}
		if el.Kind == wire.StreamError {
			return dialback.Element{}, &StreamError{Condition: el.StreamErrorCondition(), Raw: el.Raw}
		}
		if el.Kind != wire.DialbackVerify {
			continue
		}
		e, err := dialback.Parse([]byte(el.Raw))
		if err != nil {
			return dialback.Element{}, err
		}
		if d := db.Handle(e); d.Action == dialback.Deliver {
			s.Close()
			return d.Answer, nil
		}
	}
}

// stanza checks a stanza's addresses against the pairs authorized on the
// stream (RFC 6120 §8.1.1.2, §8.1.2.2) and keeps it.
func (in *fakeIn) stanza(el *wire.Element) error {
	e := copyElement(el)
	from, to := Domain(e.From), Domain(e.To)
	in.mu.Lock()
	ok := in.db.MayReceive(from, to)
	in.mu.Unlock()
	if !ok {
		in.violation("stanza for the unauthorized pair %s→%s: %s", from, to, e.Raw)
		return stream.NotAuthorized
	}
	if !in.tls {
		in.violation("stanza on a stream without TLS: %s", e.Raw)
	}
	in.f.record(func() {
		in.f.stanzas = append(in.f.stanzas, Stanza{Element: e, Pair: from + "→" + to, At: time.Now()})
	})
	return nil
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
