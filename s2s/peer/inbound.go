package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Inbound is a stream a Server accepted. Its owner goroutine reads it,
// calls Handler, and is the only code that closes the socket; verification
// goroutines answer db:result through its write lock and stop the owner
// with stop.
type Inbound struct {
	s    *Server
	raw  net.Conn // the TCP connection
	r    *wire.Reader
	peer string       // remote address, for events
	base *slog.Logger // log without the stream's domains

	wmu     sync.Mutex // guards conn, w, closing and the writes
	conn    net.Conn   // raw, or TLS over it
	w       *wire.Writer
	closing bool // a closing element was written

	mu      sync.Mutex // guards what follows
	db      *dialback.Stream
	pairs   map[string]struct{} // authorized pairs, by appendPairKey
	id      string
	tag     string // for events: "in 127.0.0.1:1234 a.test→b.test"
	log     *slog.Logger
	stopErr error

	bidi   bool           // the peer asked for XEP-0288 bidi (guarded by mu)
	direct bool           // TLS from the first byte (XEP-0368)
	secure bool           // owner only
	sm     bool           // stream management enabled (owner only)
	h      uint32         // stanzas received since, modulo 2^32 (owner only)
	lost   atomic.Bool    // Server.Lose: what arrives is lost
	key    []byte         // owner only: scratch for pair lookups
	verify sync.WaitGroup // verification goroutines
}

func newInbound(s *Server, c net.Conn, direct bool) *Inbound {
	peer := c.RemoteAddr().String()
	log := s.log.With("dir", "in", "peer", peer)
	return &Inbound{s: s, raw: c, conn: c, peer: peer, base: log, log: log, tag: "in " + peer,
		pairs: map[string]struct{}{}, direct: direct}
}

// ID returns the stream id the Server sent in its last header.
func (in *Inbound) ID() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.id
}

// RemoteAddr returns the peer's address.
func (in *Inbound) RemoteAddr() net.Addr { return in.raw.RemoteAddr() }

// logTag returns the stream's logger and event tag.
func (in *Inbound) logTag() (*slog.Logger, string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.log, in.tag
}

func (in *Inbound) note(level slog.Level, msg string, args ...any) {
	log, tag := in.logTag()
	in.s.note(log, level, tag, msg, args...)
}

func (in *Inbound) violation(format string, args ...any) {
	log, tag := in.logTag()
	in.s.violation(log, tag, format, args...)
}

// serve runs the stream to its end.
func (in *Inbound) serve() {
	defer in.raw.Close()
	in.r = wire.NewReader(in.raw, wire.Limits{MaxStanza: maxStanza, MaxStanzaPreAuth: maxStanza})
	in.w = wire.NewWriter(in.raw)
	var err error
	if in.direct {
		err = in.handshake()
	}
	if err == nil {
		err = in.run()
	}
	in.mu.Lock()
	if in.db != nil {
		in.db.Close()
	}
	in.mu.Unlock()
	in.verify.Wait()
	in.mu.Lock()
	if in.stopErr != nil {
		err = in.stopErr
	}
	in.mu.Unlock()
	var se stream.Error
	var pe *StreamError
	switch {
	case errors.As(err, &pe):
		log, tag := in.logTag()
		in.s.peerStreamError(log, tag, pe)
	case errors.As(err, &se):
		in.note(slog.LevelWarn, "closing the stream with a stream error", "condition", se.Err, "err", err)
		if in.markClosing() {
			in.write(func(w *wire.Writer) { w.WriteStreamError(se) })
		}
	case err == nil || errors.Is(err, io.EOF):
		in.note(slog.LevelDebug, "stream closed by the peer")
		in.close()
	default:
		in.note(slog.LevelDebug, "stream ended", "err", err)
	}
}

// run answers headers until the stream ends; STARTTLS restarts it.
func (in *Inbound) run() error {
	for {
		hdr, err := in.r.ReadHeader()
		if hdr == nil && err != nil {
			return in.framing(err)
		}
		id := NewID()
		out := &wire.Header{From: hdr.To, To: hdr.From, ID: id, Lang: "en"}
		if hdr.Version != "" {
			out.Version = "1.0"
		}
		if werr := in.write(func(w *wire.Writer) { w.WriteHeader(out) }); err == nil {
			err = werr
		}
		in.mu.Lock()
		in.id = id
		in.log = in.base.With("stream", hdr.From+"→"+hdr.To)
		in.tag = "in " + in.peer + " " + hdr.From + "→" + hdr.To
		in.mu.Unlock()
		if err != nil {
			return in.framing(err)
		}
		to, terr := dialback.Domain(hdr.To)
		if terr != nil || !in.s.hosts(to) {
			in.violation("stream to %q, a domain this server does not host", hdr.To)
			return withText(stream.HostUnknown, "this server does not host %s", hdr.To)
		}
		if hdr.Version == "" {
			// A pre-1.0 peer cannot negotiate TLS, which this server
			// requires.
			in.violation("stream header without version: TLS cannot be negotiated")
			return withText(stream.PolicyViolation, "TLS is required")
		}
		feats := "<stream:features><dialback xmlns='" + dialback.NSFeature + "'><errors/></dialback>"
		if n := in.s.maxBytes.Load(); n > 0 {
			feats += "<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>" + strconv.FormatInt(n, 10) + "</max-bytes></limits>"
		}
		if in.s.sm.Load() {
			feats += "<sm xmlns='" + NSSM + "'/>"
		}
		if in.s.bidi.Load() {
			feats += "<bidi xmlns='urn:xmpp:features:bidi'/>"
		}
		feats += "</stream:features>"
		if !in.secure {
			feats = "<stream:features><starttls xmlns='" + NSTLS + "'><required/></starttls></stream:features>"
		}
		if err := in.write(func(w *wire.Writer) { w.WriteRaw([]byte(feats)) }); err != nil {
			return err
		}
		in.mu.Lock()
		if in.db != nil {
			in.db.Close()
		}
		in.db = dialback.NewStream(dialback.Config{ID: id, Secret: in.s.secret, Serves: in.s.hosts})
		clear(in.pairs)
		in.mu.Unlock()
		in.note(slog.LevelDebug, "stream open", "tls", in.secure)
		for restart := false; !restart; {
			el, err := in.r.Next()
			if err != nil {
				return in.framing(err)
			}
			if restart, err = in.handle(el); err != nil {
				return err
			}
		}
	}
}

// framing records what the framer refused as the peer's violation.
func (in *Inbound) framing(err error) error {
	var se stream.Error
	if errors.As(err, &se) {
		in.violation("the framer refused its input: %v", err)
	}
	return err
}

// handle acts on one top-level element; restart is true after STARTTLS.
func (in *Inbound) handle(el *wire.Element) (restart bool, err error) {
	if in.lost.Load() && el.Kind != wire.StreamError {
		return false, nil
	}
	switch el.Kind {
	case wire.Message, wire.Presence, wire.IQ:
		in.h++
		return false, in.stanza(el)
	case wire.StreamError:
		e := ElementOf(el)
		return false, &StreamError{Condition: e.StreamErrorCondition(), Raw: e.Raw}
	case wire.DialbackResult, wire.DialbackVerify:
		if !in.secure {
			in.violation("dialback before STARTTLS, which is required")
			return false, withText(stream.PolicyViolation, "STARTTLS first")
		}
		e, err := dialback.Parse(el.Raw)
		if err != nil {
			in.violation("malformed dialback element: %v", err)
			return false, err
		}
		if e.Kind == dialback.KindVerify && e.Type == dialback.TypeRequest && in.s.refuseVerify.Load() {
			in.note(slog.LevelInfo, "db:verify answered invalid (refusing every key)", "pair", pairString(e.Pair()))
			return false, in.write(func(w *wire.Writer) { w.WriteRaw(e.Response(dialback.TypeInvalid).Append(nil)) })
		}
		if e.Kind == dialback.KindResult && e.Type == dialback.TypeRequest && in.s.cutResults.Add(-1) >= 0 {
			in.note(slog.LevelInfo, "db:result answered with a reset connection", "pair", pairString(e.Pair()))
			if tc, ok := in.raw.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			in.raw.Close()
			return false, nil
		}
		if how, _ := in.s.refuseMux.Load().(string); how != "" && e.Kind == dialback.KindResult && e.Type == dialback.TypeRequest {
			in.mu.Lock()
			more := len(in.pairs) > 0
			in.mu.Unlock()
			if more {
				in.note(slog.LevelInfo, "db:result for another pair on the stream refused (multiplexing off)", "pair", pairString(e.Pair()), "how", how)
				switch how {
				case "error":
					return false, in.write(func(w *wire.Writer) { w.WriteRaw(e.ErrorResponse(stanza.NotAllowed).Append(nil)) })
				case "busy":
					return false, in.write(func(w *wire.Writer) { w.WriteRaw(e.ErrorResponse(stanza.RemoteServerNotFound).Append(nil)) })
				case "invalid":
					return false, in.write(func(w *wire.Writer) { w.WriteRaw(e.Response(dialback.TypeInvalid).Append(nil)) })
				}
				return false, nil
			}
		}
		in.mu.Lock()
		d := in.db.Handle(e)
		in.mu.Unlock()
		return false, in.apply(d)
	}
	if string(el.NS) == NSSM && in.secure && in.s.sm.Load() {
		switch string(el.Local) {
		case "enable":
			if in.sm {
				in.violation("<enable/> twice")
				return false, withText(stream.UnsupportedStanzaType, "stream management is already on")
			}
			in.sm, in.h = true, 0
			return false, in.write(func(w *wire.Writer) { w.WriteRaw([]byte("<enabled xmlns='" + NSSM + "'/>")) })
		case "r":
			if !in.sm {
				in.violation("<r/> without stream management")
				return false, nil
			}
			a := "<a xmlns='" + NSSM + "' h='" + strconv.FormatUint(uint64(in.h), 10) + "'/>"
			return false, in.write(func(w *wire.Writer) { w.WriteRaw([]byte(a)) })
		}
	}
	if string(el.NS) == "urn:xmpp:bidi" && string(el.Local) == "bidi" && in.secure && in.s.bidi.Load() {
		in.mu.Lock()
		in.bidi = true
		in.mu.Unlock()
		in.note(slog.LevelDebug, "peer asked for a bidirectional stream")
		return false, nil
	}
	if string(el.NS) == NSTLS && string(el.Local) == "starttls" {
		if in.secure {
			in.violation("STARTTLS twice")
			return false, withText(stream.PolicyViolation, "TLS is already on")
		}
		return true, in.startTLS()
	}
	in.violation("unexpected element %s", el.Raw)
	return false, withText(stream.UnsupportedStanzaType, "unexpected <%s/>", el.Local)
}

// startTLS answers <starttls/> and makes the handshake; the peer then
// restarts the stream.
func (in *Inbound) startTLS() error {
	if in.r.Buffered() != 0 {
		// Bytes sent in the clear after <starttls/> must not be read
		// as if protected (the STARTTLS command injection).
		in.violation("data after <starttls/>")
		return withText(stream.PolicyViolation, "data after <starttls/>")
	}
	if err := in.write(func(w *wire.Writer) { w.WriteRaw([]byte("<proceed xmlns='" + NSTLS + "'/>")) }); err != nil {
		return err
	}
	return in.handshake()
}

// handshake makes the TLS handshake, after <proceed/> or at once on a
// direct TLS connection, and reads and writes over TLS from then on.
func (in *Inbound) handshake() error {
	tc := tls.Server(in.raw, in.s.tls)
	tc.SetDeadline(time.Now().Add(in.s.timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	in.wmu.Lock()
	in.conn = tc
	in.w.Reset(tc)
	in.wmu.Unlock()
	in.r.Reset(tc)
	in.secure = true
	return nil
}

// apply carries out a dialback decision of this stream.
func (in *Inbound) apply(d dialback.Decision) error {
	switch d.Action {
	case dialback.Reply:
		r := d.Reply
		valid := r.Kind == dialback.KindResult && r.Type == dialback.TypeValid
		if valid {
			// Before the answer leaves: the peer may send a stanza for
			// the pair as soon as it reads it.
			in.mu.Lock()
			in.pairs[string(appendPairKey(nil, r.Pair().From, r.Pair().To))] = struct{}{}
			in.mu.Unlock()
		}
		in.note(slog.LevelDebug, "dialback answered", "element", r.Kind.String(), "pair", pairString(r.Pair()), "type", r.Type.String())
		if err := in.write(func(w *wire.Writer) { w.WriteRaw(r.Append(nil)) }); err != nil {
			return err
		}
		if valid {
			in.note(slog.LevelInfo, "peer authenticated by dialback", "pair", pairString(r.Pair()))
		}
		return d.Close
	case dialback.Forward:
		// Ask the Authoritative server of the sender domain, on a
		// connection of its own, whether it made the key.
		in.verify.Add(1)
		ok := in.s.goTracked(func() {
			defer in.verify.Done()
			ctx, cancel := context.WithTimeout(in.s.ctx, in.s.timeout)
			defer cancel()
			answer := in.s.askAuthoritative(ctx, d.Verify)
			in.mu.Lock()
			c := in.db.Conclude(answer)
			in.mu.Unlock()
			if err := in.apply(c); err != nil {
				in.stop(err)
			}
		}, nil, nil)
		if !ok {
			in.verify.Done()
			return ErrServerClosed
		}
	case dialback.Ignore:
		in.note(slog.LevelDebug, "dialback element ignored", "reason", d.Reason)
	}
	return nil
}

// stanza checks that the stanza's domains are a pair authorized on this
// stream (RFC 6120 §8.1.1.2) and hands it on. The common case, a pair
// authorized in normal form, neither copies nor allocates.
func (in *Inbound) stanza(el *wire.Element) error {
	from, to := domainBytes(el.From), domainBytes(el.To)
	in.key = appendPairKey(in.key[:0], from, to)
	in.mu.Lock()
	_, ok := in.pairs[string(in.key)]
	if !ok {
		// Not in normal form (upper case, a trailing dot), or not
		// authorized.
		ok = in.db.MayReceive(string(from), string(to))
	}
	in.mu.Unlock()
	if !ok {
		in.violation("stanza for the unauthorized pair %s→%s: %s", from, to, el.Raw)
		return withText(stream.NotAuthorized, "%s→%s is not authorized on this stream", from, to)
	}
	if h := in.s.Handler; h != nil {
		h(in, el)
		return nil
	}
	in.s.serveStanza(in, el)
	return nil
}

// Bidi reports whether the peer asked for XEP-0288 bidi on the stream.
func (in *Inbound) Bidi() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.bidi
}

// WriteRaw writes p, complete elements, on the stream, whatever was
// negotiated: with bidi, stanzas from a hosted domain to the peer.
func (in *Inbound) WriteRaw(p []byte) error {
	return in.write(func(w *wire.Writer) { w.WriteRaw(p) })
}

func (in *Inbound) write(fn func(*wire.Writer)) error {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	in.conn.SetWriteDeadline(time.Now().Add(in.s.timeout))
	fn(in.w)
	return in.w.Flush()
}

// stop ends the stream from another goroutine: the owner's read returns at
// once and the owner closes with err.
func (in *Inbound) stop(err error) {
	in.mu.Lock()
	if in.stopErr == nil {
		in.stopErr = err
	}
	in.mu.Unlock()
	in.raw.SetReadDeadline(aLongTimeAgo)
}

// close ends the stream gracefully: </stream:stream>, after which the owner
// reads until the peer closes its side.
func (in *Inbound) close() {
	if in.markClosing() {
		in.write(func(w *wire.Writer) { w.WriteClose() })
	}
}

// markClosing reports whether the stream was still open, and marks it
// closing: only one closing element is ever written.
func (in *Inbound) markClosing() bool {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	if in.closing {
		return false
	}
	in.closing = true
	return true
}
