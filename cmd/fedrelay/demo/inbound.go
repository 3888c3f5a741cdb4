package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// NSTLS qualifies STARTTLS (RFC 6120 §5).
const NSTLS = "urn:ietf:params:xml:ns:xmpp-tls"

// inStream is one stream the relay opened to the endpoint. Its owner
// goroutine (serve) reads, and is the only code that closes the socket;
// verification goroutines answer db:result through the write lock and
// stop the owner with stop.
type inStream struct {
	e    *Endpoint
	raw  net.Conn // the TCP connection
	conn net.Conn // raw, or TLS over it
	r    *wire.Reader
	base *slog.Logger // log without the peer's domain
	log  *slog.Logger

	wmu sync.Mutex // guards w and the writes on conn
	w   *wire.Writer

	mu      sync.Mutex // guards db, stopErr, closing
	db      *dialback.Stream
	stopErr error
	closing bool

	secure bool
	verify sync.WaitGroup // verification goroutines
}

// serve runs the stream to its end.
func (s *inStream) serve() {
	defer s.raw.Close()
	s.r = wire.NewReader(s.raw, wire.Limits{MaxStanzaPreAuth: wire.DefaultMaxStanza})
	s.w = wire.NewWriter(s.raw)
	err := s.run()
	s.mu.Lock()
	if s.db != nil {
		s.db.Close()
	}
	if s.stopErr != nil {
		err = s.stopErr
	}
	s.mu.Unlock()
	s.verify.Wait()
	var se stream.Error
	var peer *peerError
	switch {
	case errors.As(err, &peer):
		s.log.Info("stream closed by the relay", "condition", peer.Condition)
	case errors.As(err, &se):
		s.log.Warn("closing the stream with a stream error", "condition", se.Err, "err", err)
		if s.markClosing() {
			s.write(func(w *wire.Writer) { w.WriteStreamError(se) })
		}
	case isEOF(err):
		s.log.Debug("stream closed")
		s.close()
	default:
		s.log.Debug("stream ended", "err", err)
	}
}

// run answers headers until the stream ends; STARTTLS restarts it.
func (s *inStream) run() error {
	for {
		hdr, err := s.r.ReadHeader()
		if hdr == nil && err != nil {
			return err
		}
		id := newID()
		out := &wire.Header{From: hdr.To, To: hdr.From, ID: id, Lang: "en"}
		if hdr.Version != "" {
			out.Version = "1.0"
		}
		s.write(func(w *wire.Writer) { w.WriteHeader(out) })
		if err != nil {
			return err
		}
		to, terr := dialback.Domain(hdr.To)
		if terr != nil || !s.e.hosts(to) {
			return withText(stream.HostUnknown, "this server hosts %s only", s.e.domain)
		}
		if hdr.Version == "" {
			// A pre-1.0 peer cannot negotiate TLS, which this server
			// requires.
			return withText(stream.PolicyViolation, "TLS is required")
		}
		s.log = s.base.With("stream", hdr.From+"→"+hdr.To)
		feats := "<stream:features><dialback xmlns='" + dialback.NSFeature + "'><errors/></dialback></stream:features>"
		if !s.secure {
			feats = "<stream:features><starttls xmlns='" + NSTLS + "'><required/></starttls></stream:features>"
		}
		if err := s.write(func(w *wire.Writer) { w.WriteRaw([]byte(feats)) }); err != nil {
			return err
		}
		s.mu.Lock()
		if s.db != nil {
			s.db.Close()
		}
		s.db = dialback.NewStream(dialback.Config{ID: id, Secret: s.e.secret, Serves: s.e.hosts})
		s.mu.Unlock()
		s.log.Debug("stream open", "tls", s.secure)
		for restart := false; !restart; {
			el, err := s.r.Next()
			if err != nil {
				return err
			}
			if restart, err = s.handle(el); err != nil {
				return err
			}
		}
	}
}

// handle acts on one top-level element; restart is true after STARTTLS.
func (s *inStream) handle(el *wire.Element) (restart bool, err error) {
	switch el.Kind {
	case wire.StreamError:
		return false, &peerError{Condition: streamErrorCondition(el.Raw)}
	case wire.Message, wire.Presence, wire.IQ:
		return false, s.stanza(el)
	case wire.DialbackResult, wire.DialbackVerify:
		if !s.secure {
			return false, withText(stream.PolicyViolation, "STARTTLS first")
		}
		e, err := dialback.Parse(el.Raw)
		if err != nil {
			return false, err
		}
		s.mu.Lock()
		d := s.db.Handle(e)
		s.mu.Unlock()
		return false, s.apply(d)
	}
	if string(el.NS) == NSTLS && string(el.Local) == "starttls" && !s.secure {
		return true, s.startTLS()
	}
	return false, withText(stream.UnsupportedStanzaType, "unexpected <%s/>", el.Local)
}

// startTLS answers <starttls/> and makes the handshake; the peer then
// restarts the stream.
func (s *inStream) startTLS() error {
	if s.r.Buffered() != 0 {
		// Bytes sent in the clear after <starttls/> must not be read
		// as if protected (the STARTTLS command injection).
		return withText(stream.PolicyViolation, "data after <starttls/>")
	}
	if err := s.write(func(w *wire.Writer) { w.WriteRaw([]byte("<proceed xmlns='" + NSTLS + "'/>")) }); err != nil {
		return err
	}
	tc := tls.Server(s.raw, &tls.Config{Certificates: []tls.Certificate{s.e.cert}, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(s.e.timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	s.wmu.Lock()
	s.conn = tc
	s.w.Reset(tc)
	s.wmu.Unlock()
	s.r.Reset(tc)
	s.secure = true
	return nil
}

// apply carries out a dialback decision of this stream.
func (s *inStream) apply(d dialback.Decision) error {
	switch d.Action {
	case dialback.Reply:
		s.log.Debug("dialback answered", "element", d.Reply.Kind.String(), "pair", pairString(d.Reply.Pair()), "type", d.Reply.Type.String())
		if err := s.write(func(w *wire.Writer) { w.WriteRaw(d.Reply.Append(nil)) }); err != nil {
			return err
		}
		if d.Reply.Kind == dialback.KindResult && d.Reply.Type == dialback.TypeValid {
			s.log.Info("relay authenticated by dialback", "pair", pairString(d.Reply.Pair()))
		}
		return d.Close
	case dialback.Forward:
		// The relay is the Authoritative server of every remote domain
		// here: ask it, on a connection of its own, whether it made the
		// key.
		s.verify.Add(1)
		log := s.log
		ok := s.e.goTracked(func() {
			defer s.verify.Done()
			ctx, cancel := context.WithTimeout(s.e.ctx, s.e.timeout)
			defer cancel()
			answer, err := s.e.askRelay(ctx, d.Verify)
			if err != nil {
				log.Warn("cannot verify the relay's key", "pair", pairString(d.Verify.Pair()), "err", err)
				answer = d.Verify.ErrorResponse(dialback.RemoteConnectionFailed)
			}
			s.mu.Lock()
			c := s.db.Conclude(answer)
			s.mu.Unlock()
			if err := s.apply(c); err != nil {
				s.stop(err)
			}
		}, nil, nil)
		if !ok {
			s.verify.Done()
			return ErrClosed
		}
	case dialback.Ignore:
		s.log.Debug("dialback element ignored", "reason", d.Reason)
	}
	return nil
}

// stanza checks that the stanza's domains are a pair authorized on this
// stream (RFC 6120 §8.1.1.2) and delivers it.
func (s *inStream) stanza(el *wire.Element) error {
	st := stanzaOf(el)
	from, to := domainOf(st.From), domainOf(st.To)
	s.mu.Lock()
	ok := s.db.MayReceive(from, to)
	s.mu.Unlock()
	if !ok {
		return withText(stream.NotAuthorized, "%s→%s is not authorized on this stream", from, to)
	}
	s.log.Debug("stanza received", "kind", st.Kind, "type", st.Type, "from", st.From, "to", st.To, "id", st.ID)
	s.e.deliver(st)
	return nil
}

func (s *inStream) write(fn func(*wire.Writer)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(s.e.timeout))
	fn(s.w)
	return s.w.Flush()
}

// stop ends the stream from another goroutine: the owner's read returns
// at once and the owner closes with err.
func (s *inStream) stop(err error) {
	s.mu.Lock()
	if s.stopErr == nil {
		s.stopErr = err
	}
	s.mu.Unlock()
	s.raw.SetReadDeadline(aLongTimeAgo)
}

// close ends the stream gracefully: </stream:stream>, after which the
// owner reads until the peer closes its side.
func (s *inStream) close() {
	if s.markClosing() {
		s.write(func(w *wire.Writer) { w.WriteClose() })
	}
}

// markClosing reports whether the stream was still open, and marks it
// closing: only one closing element is ever written.
func (s *inStream) markClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.closing = true
	return true
}

// peerError is a stream error the relay closed a stream with.
type peerError struct{ Condition string }

func (e *peerError) Error() string { return "stream error from the peer: " + e.Condition }

// streamErrorCondition returns the defined condition of a <stream:error/>.
func streamErrorCondition(raw []byte) string {
	st := Stanza{Raw: string(raw)}
	for _, in := range st.innerNames(wire.NSStreamError) {
		if in != "text" {
			return in
		}
	}
	return "undefined-condition"
}

func withText(se stream.Error, format string, args ...any) stream.Error {
	se.Text = append(se.Text[:0:0], struct {
		Lang  string
		Value string
	}{Value: fmt.Sprintf(format, args...)})
	return se
}

func pairString(p dialback.Pair) string { return p.From + "→" + p.To }

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
