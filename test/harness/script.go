package harness

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/peer"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// ReadTimeout bounds each read of a Script.
const ReadTimeout = 10 * time.Second

// Script is one S2S stream driven step by step by a test, as the
// initiating side: it writes whatever bytes it is told (well-formed or
// not) and reads the peer's answers with the relay's own framer. Negative
// tests use it to break the protocol on purpose and read the exact stream
// error that follows; FakeServer.Dial uses it for well-behaved streams.
//
// A Script is used by one goroutine at a time.
type Script struct {
	t    testing.TB
	raw  net.Conn
	conn net.Conn // raw, or TLS over it
	r    *wire.Reader

	// Header is the peer's last stream header and Features its last
	// <stream:features/> (zero for a stream without version).
	Header   *wire.Header
	Features Element
	// TLS reports whether the stream is encrypted.
	TLS bool
	// Cert, when set, is presented as the client certificate by StartTLS.
	Cert *tls.Certificate
}

// Dial connects to addr. The connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Script {
	t.Helper()
	s, err := TryDialScript(t, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return s
}

// TryDialScript is Dial returning the error instead of failing the test.
func TryDialScript(t testing.TB, addr string) (*Script, error) {
	c, err := net.DialTimeout("tcp", addr, ReadTimeout)
	if err != nil {
		return nil, err
	}
	s := &Script{t: t, raw: c, conn: c}
	s.r = wire.NewReader(c, wire.Limits{MaxStanza: 1 << 20, MaxStanzaPreAuth: 1 << 20})
	t.Cleanup(func() { c.Close() })
	return s, nil
}

// Write writes raw bytes.
func (s *Script) Write(xml string) error {
	s.conn.SetWriteDeadline(time.Now().Add(ReadTimeout))
	_, err := io.WriteString(s.conn, xml)
	return err
}

// SendBytes writes p and fails the test if that fails; unlike Send it
// makes no copy.
func (s *Script) SendBytes(p []byte) {
	s.t.Helper()
	s.conn.SetWriteDeadline(time.Now().Add(ReadTimeout))
	if _, err := s.conn.Write(p); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// Send writes raw bytes and fails the test if that fails.
func (s *Script) Send(xml string) {
	s.t.Helper()
	if err := s.Write(xml); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// Open sends a stream header from from to to (version 1.0, with the
// dialback namespace) and reads the answer: the peer's header and, for a
// version 1.0 answer, its features.
func (s *Script) Open(from, to string) error {
	return s.open(from, to, "1.0")
}

// OpenLegacy sends a header without version (a pre-1.0 peer) and reads the
// peer's header only: such a stream has no features.
func (s *Script) OpenLegacy(from, to string) error {
	return s.open(from, to, "")
}

func (s *Script) open(from, to, version string) error {
	var h []byte
	h = wire.AppendHeader(h, &wire.Header{From: from, To: to, Version: version, Lang: "en"})
	if err := s.Write(string(h)); err != nil {
		return err
	}
	return s.ReadHeader()
}

// ReadHeader reads the peer's stream header and, if it has a version, its
// features. A stream error sent instead of features is returned as a
// *StreamError.
func (s *Script) ReadHeader() error {
	s.deadline()
	hdr, err := s.r.ReadHeader()
	if err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	s.Header = hdr
	s.Features = Element{}
	if hdr.Version == "" {
		return nil
	}
	el, err := s.Next()
	if err != nil {
		return fmt.Errorf("read features: %w", err)
	}
	if el.Kind == wire.StreamError {
		return &StreamError{Condition: el.StreamErrorCondition(), Raw: el.Raw}
	}
	if el.Kind != wire.Features {
		return fmt.Errorf("expected features, got %s", el.Raw)
	}
	s.Features = el
	return nil
}

// ID is the stream id of the peer's last header.
func (s *Script) ID() string {
	if s.Header == nil {
		return ""
	}
	return s.Header.ID
}

// Offers reports whether the last features contain an element with this
// local name ("starttls", "dialback", "mechanisms").
func (s *Script) Offers(name string) bool {
	return strings.Contains(s.Features.Raw, "<"+name+" ")
}

// StartTLS sends <starttls/>, expects <proceed/>, and does the TLS
// handshake (any certificate accepted: the relay's are self-signed here)
// and the restart with a new header from from to to.
func (s *Script) StartTLS(from, to string) error { return s.StartTLSWith(from, to, s.Cert) }

// StartTLSWith is StartTLS presenting cert as the client certificate.
func (s *Script) StartTLSWith(from, to string, cert *tls.Certificate) error {
	cfg := &tls.Config{ServerName: to, InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return s.StartTLSConfig(from, to, cfg)
}

// StartTLSConfig is StartTLS with the client's TLS configuration given as
// is: an empty ServerName sends no SNI, as Prosody does.
func (s *Script) StartTLSConfig(from, to string, cfg *tls.Config) error {
	if err := s.Write("<starttls xmlns='" + peer.NSTLS + "'/>"); err != nil {
		return err
	}
	el, err := s.Next()
	if err != nil {
		return err
	}
	if el.Name != "proceed" {
		return fmt.Errorf("STARTTLS: got %s", el.Raw)
	}
	tc := tls.Client(s.raw, cfg)
	tc.SetDeadline(time.Now().Add(ReadTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	s.conn, s.TLS = tc, true
	s.r.Reset(tc)
	return s.Open(from, to)
}

// ConnectionState is the TLS state of the stream (zero before STARTTLS).
func (s *Script) ConnectionState() tls.ConnectionState {
	if tc, ok := s.conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// Negotiate opens the stream and secures it with STARTTLS when offered.
func (s *Script) Negotiate(from, to string) error {
	if err := s.Open(from, to); err != nil {
		return err
	}
	if s.Offers("starttls") {
		return s.StartTLS(from, to)
	}
	return nil
}

// Dialback sends a db:result for (from, to) with a key made with secret
// for the current stream id, and waits for its answer (XEP-0220 §2.1).
// It returns the answer's type and, for type='error', its condition.
func (s *Script) Dialback(secret *dialback.Secret, from, to string) (dialback.Type, string, error) {
	key := secret.Key(to, from, s.ID())
	return s.DialbackKey(from, to, string(key))
}

// DialbackKey is Dialback with a key given as is (a wrong one, say).
func (s *Script) DialbackKey(from, to, key string) (dialback.Type, string, error) {
	req := dialback.Element{Kind: dialback.KindResult, From: from, To: to, Key: dialback.Key(key)}
	if err := s.Write(string(req.Append(nil))); err != nil {
		return 0, "", err
	}
	for {
		el, err := s.Next()
		if err != nil {
			return 0, "", err
		}
		switch el.Kind {
		case wire.StreamError:
			return 0, "", &StreamError{Condition: el.StreamErrorCondition(), Raw: el.Raw}
		case wire.DialbackResult:
			e, err := dialback.Parse([]byte(el.Raw))
			if err != nil {
				return 0, "", err
			}
			if e.Type != dialback.TypeRequest && e.From == to && e.To == from {
				return e.Type, string(e.Condition), nil
			}
		}
	}
}

// Next reads the next element that is not whitespace. The end of the
// stream is io.EOF.
func (s *Script) Next() (Element, error) {
	for {
		s.deadline()
		el, err := s.r.Next()
		if err != nil {
			return Element{}, err
		}
		if el.Kind != wire.Space {
			return peer.ElementOf(el), nil
		}
	}
}

// StreamError reads until a stream error arrives and returns its
// condition. The elements read before it are returned too (a db:result
// answer, say). It fails if the stream ends, or the connection breaks,
// without one.
func (s *Script) StreamError() (cond string, before []Element, err error) {
	if s.Header == nil {
		// Nothing read yet: the peer's header comes first, then (for
		// version 1.0) features or the error itself.
		if err := s.ReadHeader(); err != nil {
			var se *StreamError
			if errors.As(err, &se) {
				return se.Condition, nil, nil
			}
			return "", nil, err
		}
		if s.Features.Raw != "" {
			before = append(before, s.Features)
		}
	}
	for {
		el, err := s.Next()
		if err != nil {
			return "", before, fmt.Errorf("no stream error (elements before: %v): %w", before, err)
		}
		if el.Kind == wire.StreamError {
			return el.StreamErrorCondition(), before, nil
		}
		before = append(before, el)
	}
}

// ExpectStreamError reads until a stream error and fails the test unless
// its condition is cond. It also checks that the stream is then closed.
func (s *Script) ExpectStreamError(cond string) []Element {
	s.t.Helper()
	got, before, err := s.StreamError()
	if err != nil {
		s.t.Fatalf("expected stream error %s: %v", cond, err)
	}
	if got != cond {
		s.t.Fatalf("stream error %s, want %s (elements before: %v)", got, cond, before)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		s.t.Errorf("after the stream error: %v, want the end of the stream", err)
	}
	return before
}

// ExpectOpen fails the test unless the stream is still open and quiet:
// nothing arrives for d. It is a check that something did not happen, so
// it has to wait.
func (s *Script) ExpectOpen(d time.Duration) {
	s.t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(d))
	el, err := s.r.Next()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	if err != nil {
		s.t.Fatalf("stream ended: %v", err)
	}
	s.t.Fatalf("unexpected element %s", el.Raw)
}

// Close sends the closing tag and closes the connection.
func (s *Script) Close() {
	s.Write("</stream:stream>")
	s.conn.Close()
}

func (s *Script) deadline() {
	s.conn.SetReadDeadline(time.Now().Add(ReadTimeout))
}

// StreamError is a stream error read where something else was expected.
type StreamError = peer.StreamError
