package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// Errors of an Outbound.
var (
	errClosing = errors.New("stream closing")
	errEnded   = errors.New("stream ended before the answer")
)

// client is the initiating side of a stream being negotiated: connected,
// its header sent and answered, secured with STARTTLS.
type client struct {
	from, to, addr string
	raw            net.Conn
	conn           net.Conn // TLS over raw once negotiated
	r              *wire.Reader
	w              *wire.Writer
	id             string // the peer's stream id: dialback keys are made with it
	bidi           bool   // XEP-0288 asked for (the peer's stanzas come on this stream)
}

// negotiate connects to addr, opens a stream from→to and negotiates
// STARTTLS, or starts with TLS if direct (XEP-0368); the stream is then
// ready for dialback. ctx bounds the whole negotiation. The connection is
// tracked; the caller closes and untracks it.
func (s *Server) negotiate(ctx context.Context, addr, from, to string, direct bool) (*client, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stream %s→%s: connect to %s: %w", from, to, addr, err)
	}
	if !s.track(raw) {
		raw.Close()
		return nil, ErrServerClosed
	}
	// Cancellation becomes a deadline in the past, so that a blocked read
	// returns.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	c := &client{from: from, to: to, addr: addr, raw: raw, conn: raw,
		r: wire.NewReader(raw, wire.Limits{MaxStanza: maxStanza, MaxStanzaPreAuth: maxStanza}), w: wire.NewWriter(raw)}
	fail := func(err error) (*client, error) {
		c.close(s)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("stream %s→%s at %s: %w", from, to, addr, err)
	}
	// Its own certificate goes out as the client certificate, as real
	// servers do, for a relay to verify (XEP-0178, pins, DANE).
	cfg := &tls.Config{ServerName: to, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
		Certificates: s.tls.Certificates}
	if direct {
		cfg.NextProtos = []string{alpn}
	} else if err := c.startTLS(); err != nil {
		return fail(err)
	}
	// A relay presents certificates it makes on demand, self-signed:
	// dialback authenticates it, as for a Prosody configured with
	// s2s_secure_auth = false.
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("TLS handshake: %w", err))
	}
	c.conn = tc
	c.r.Reset(tc)
	c.w.Reset(tc)
	feats, err := c.open()
	if err != nil {
		return fail(err)
	}
	if s.bidi.Load() && (feats["urn:xmpp:features:bidi bidi"] || feats["urn:xmpp:bidi bidi"]) {
		// Goes out with the db:result that follows.
		c.w.WriteRaw([]byte("<bidi xmlns='urn:xmpp:bidi'/>"))
		c.bidi = true
	}
	return c, nil
}

// startTLS opens the stream in the clear and asks for TLS: the handshake
// comes next.
func (c *client) startTLS() error {
	feats, err := c.open()
	if err != nil {
		return err
	}
	if !feats[NSTLS+" starttls"] {
		return errors.New("STARTTLS not offered")
	}
	c.w.WriteRaw([]byte("<starttls xmlns='" + NSTLS + "'/>"))
	if err := c.w.Flush(); err != nil {
		return err
	}
	el, err := c.next()
	if err != nil {
		return err
	}
	if string(el.NS) != NSTLS || string(el.Local) != "proceed" {
		return fmt.Errorf("STARTTLS answered with <%s/>", el.Local)
	}
	if c.r.Buffered() != 0 {
		return errors.New("data after <proceed/>")
	}
	return nil
}

func (c *client) close(s *Server) {
	c.raw.Close()
	s.untrack(c.raw)
}

// open sends the stream header and reads the peer's header and features,
// returned as "namespace local" names.
func (c *client) open() (map[string]bool, error) {
	c.w.WriteHeader(&wire.Header{From: c.from, To: c.to, Version: "1.0", Lang: "en"})
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	hdr, err := c.r.ReadHeader()
	if err != nil {
		return nil, fmt.Errorf("stream header: %w", err)
	}
	c.id = hdr.ID
	el, err := c.next()
	if err != nil {
		return nil, err
	}
	if el.Kind != wire.Features {
		return nil, fmt.Errorf("expected stream features, got <%s/>", el.Local)
	}
	return featureNames(el.Raw), nil
}

// next reads the next element; a stream error becomes a *StreamError.
func (c *client) next() (*wire.Element, error) {
	el, err := c.r.Next()
	if err != nil {
		return nil, err
	}
	if el.Kind == wire.StreamError {
		e := ElementOf(el)
		return nil, &StreamError{Condition: e.StreamErrorCondition(), Raw: e.Raw}
	}
	return el, nil
}

// exchange writes a dialback request and reads until db decides on its
// answer (Settle for db:result, Deliver for db:verify).
func (c *client) exchange(db *dialback.Stream, req dialback.Element) (dialback.Decision, error) {
	c.w.WriteRaw(req.Append(nil))
	if err := c.w.Flush(); err != nil {
		return dialback.Decision{}, err
	}
	for {
		el, err := c.next()
		if err != nil {
			return dialback.Decision{}, err
		}
		if el.Kind != wire.DialbackResult && el.Kind != wire.DialbackVerify {
			return dialback.Decision{}, fmt.Errorf("unexpected <%s/> during dialback", el.Local)
		}
		e, err := dialback.Parse(el.Raw)
		if err != nil {
			return dialback.Decision{}, err
		}
		if d := db.Handle(e); d.Action == dialback.Settle || d.Action == dialback.Deliver {
			return d, nil
		}
	}
}

// askAuthoritative checks a key with the Authoritative server of v.To, as
// Receiving server, on a connection of its own (XEP-0220 §2.2.2). Failures
// become the remote-connection-failed answer Conclude expects.
func (s *Server) askAuthoritative(ctx context.Context, v dialback.Element) dialback.Element {
	addr := ""
	if s.Authoritative != nil {
		addr = s.Authoritative(v.To)
	}
	log := s.log.With("dir", "verify", "pair", pairString(v.Pair()))
	tag := "verify " + pairString(v.Pair())
	if addr == "" {
		s.note(log, slog.LevelWarn, tag, "no Authoritative server for the sender domain")
		return v.ErrorResponse(dialback.RemoteConnectionFailed)
	}
	answer, err := s.verify(ctx, addr, v)
	if err != nil {
		s.note(log, slog.LevelWarn, tag, "cannot verify the key", "at", addr, "err", err)
		return v.ErrorResponse(dialback.RemoteConnectionFailed)
	}
	s.note(log, slog.LevelDebug, tag, "key verified", "at", addr, "type", answer.Type.String())
	return answer
}

func (s *Server) verify(ctx context.Context, addr string, v dialback.Element) (dialback.Element, error) {
	c, err := s.negotiate(ctx, addr, v.From, v.To, false)
	if err != nil {
		return dialback.Element{}, err
	}
	defer c.close(s)
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	db := dialback.NewStream(dialback.Config{ID: c.id, Outbound: true, Secret: s.secret, Serves: s.hosts})
	req, err := db.SendVerify(v)
	if err != nil {
		return dialback.Element{}, err
	}
	d, err := c.exchange(db, req)
	if err != nil {
		return dialback.Element{}, err
	}
	c.w.WriteClose()
	c.w.Flush()
	return d.Answer, nil
}

// Outbound is an authenticated stream the Server opened (Dial). Its owner
// goroutine reads what the other side sends on it: dialback answers for
// Authorize, a stream error or the end of the stream (recorded), and
// stanzas, which a peer may only send there with XEP-0288 bidi (handed to
// Handler with a nil *Inbound, or kept; a violation if Strict). It is the
// only code that closes the socket.
type Outbound struct {
	s   *Server
	log *slog.Logger
	tag string
	c   *client

	wmu      sync.Mutex // guards the writes and what follows
	closing  bool       // </stream:stream> sent
	deadline time.Time  // the write deadline in force

	mu      sync.Mutex // guards db and waiters
	db      *dialback.Stream
	waiters map[dialback.Pair]chan dialback.Decision

	done chan struct{} // closed when the owner ends
	err  error         // why the stream ended, set before done is closed
}

// Dial connects to addr, opens a stream from the hosted domain from to the
// domain to, secures it with STARTTLS (the peer's certificate is not
// verified) and authenticates it by dialback: a db:result with a key made
// with the Server's secret, answered type='valid'. It returns the stream,
// authorized for (from, to), with its owner reading. ctx bounds the
// opening, which Timeout bounds too.
func (s *Server) Dial(ctx context.Context, addr, from, to string) (*Outbound, error) {
	return s.dial(ctx, addr, from, to, false)
}

// DialDirectTLS is Dial to a server that expects TLS from the first byte
// instead of STARTTLS (XEP-0368, ALPN xmpp-server).
func (s *Server) DialDirectTLS(ctx context.Context, addr, from, to string) (*Outbound, error) {
	return s.dial(ctx, addr, from, to, true)
}

func (s *Server) dial(ctx context.Context, addr, from, to string, direct bool) (*Outbound, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, ErrServerClosed
	}
	p, err := normalPair(from, to)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	c, err := s.negotiate(ctx, addr, p.From, p.To, direct)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(aLongTimeAgo) })
	db := dialback.NewStream(dialback.Config{ID: c.id, Outbound: true, Secret: s.secret, Serves: s.hosts})
	req, err := db.SendResult(p.From, p.To)
	var d dialback.Decision
	if err == nil {
		d, err = c.exchange(db, req)
	}
	if !stop() || err != nil {
		c.close(s)
		if err == nil || ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("stream %s at %s: dialback: %w", pairString(p), addr, err)
	}
	if d.Outcome != dialback.Authorized {
		c.close(s)
		return nil, fmt.Errorf("stream %s at %s: dialback answered %s %s", pairString(p), addr, d.Answer.Type, d.Answer.Condition)
	}
	o := &Outbound{s: s, c: c, db: db, waiters: map[dialback.Pair]chan dialback.Decision{}, done: make(chan struct{}),
		log: s.log.With("dir", "out", "addr", addr, "stream", pairString(p)), tag: "out " + addr + " " + pairString(p)}
	s.note(o.log, slog.LevelInfo, o.tag, "stream authenticated by dialback", "took", time.Since(start).Round(time.Microsecond))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.raw.Close()
		delete(s.conns, c.raw)
		return nil, ErrServerClosed
	}
	s.outbound[o] = struct{}{}
	s.wg.Add(1)
	go o.own()
	return o, nil
}

// own reads the other side of the stream until it ends, then closes the
// connection.
func (o *Outbound) own() {
	s := o.s
	defer s.wg.Done()
	err := o.read()
	o.mu.Lock()
	for p, ch := range o.waiters {
		ch <- dialback.Decision{Action: dialback.Settle, Pair: p, Outcome: dialback.Failed, Reason: errEnded}
	}
	clear(o.waiters)
	o.db.Close()
	o.mu.Unlock()
	var pe *StreamError
	var se stream.Error
	switch {
	case errors.As(err, &pe):
		s.peerStreamError(o.log, o.tag, pe)
	case errors.As(err, &se):
		s.note(o.log, slog.LevelWarn, o.tag, "closing the stream with a stream error", "condition", se.Err, "err", err)
		o.wmu.Lock()
		if !o.closing {
			o.closing = true
			o.c.conn.SetWriteDeadline(time.Now().Add(s.timeout))
			o.c.w.WriteStreamError(se)
			o.c.w.Flush()
		}
		o.wmu.Unlock()
	case errors.Is(err, io.EOF):
		s.note(o.log, slog.LevelDebug, o.tag, "stream closed by the peer")
		o.closeStream()
	case o.isClosing():
		s.note(o.log, slog.LevelDebug, o.tag, "stream closed", "err", err)
	default:
		s.note(o.log, slog.LevelWarn, o.tag, "stream ended", "err", err)
	}
	o.c.close(s)
	s.mu.Lock()
	delete(s.outbound, o)
	s.mu.Unlock()
	o.err = err
	close(o.done)
}

// read handles what the other side sends until the stream ends.
func (o *Outbound) read() error {
	s := o.s
	for {
		el, err := o.c.next()
		if err != nil {
			var se stream.Error
			if errors.As(err, &se) {
				s.violation(o.log, o.tag, "the framer refused its input: %v", err)
			}
			return err
		}
		switch el.Kind {
		case wire.DialbackResult, wire.DialbackVerify:
			e, err := dialback.Parse(el.Raw)
			if err != nil {
				s.violation(o.log, o.tag, "malformed dialback element: %v", err)
				return err
			}
			o.mu.Lock()
			d := o.db.Handle(e)
			if ch := o.waiters[d.Pair]; d.Action == dialback.Settle && ch != nil {
				delete(o.waiters, d.Pair)
				ch <- d
			}
			o.mu.Unlock()
			if d.Action == dialback.Ignore {
				s.note(o.log, slog.LevelDebug, o.tag, "dialback element ignored", "reason", d.Reason)
			}
		case wire.Message, wire.Presence, wire.IQ:
			// Without bidi (XEP-0288) the receiving server sends its
			// stanzas on streams of its own; with it, only for the
			// reverse of the stream's pair.
			if !o.c.bidi {
				s.violation(o.log, o.tag, "stanza on the receiving side of a stream: %s", el.Raw)
			} else if from, to := domainBytes(el.From), domainBytes(el.To); string(from) != o.c.to || string(to) != o.c.from {
				s.violation(o.log, o.tag, "stanza for %s→%s on the bidirectional stream %s→%s", from, to, o.c.from, o.c.to)
			}
			if s.Handler != nil {
				s.Handler(nil, el)
			} else {
				s.serveStanza(nil, el)
			}
		default:
			s.violation(o.log, o.tag, "unexpected element %s", el.Raw)
			return withText(stream.UnsupportedStanzaType, "unexpected <%s/>", el.Local)
		}
	}
}

// Bidi reports whether the Server asked for XEP-0288 bidi on the stream.
func (o *Outbound) Bidi() bool { return o.c.bidi }

// ID returns the stream id the other side sent; the keys of the stream are
// made with it.
func (o *Outbound) ID() string { return o.c.id }

// Done is closed when the stream has ended; Err then says why.
func (o *Outbound) Done() <-chan struct{} { return o.done }

// Err returns why the stream ended (io.EOF for a clean close by the other
// side, a *StreamError if it sent one), or nil while it is open.
func (o *Outbound) Err() error {
	select {
	case <-o.done:
		return o.err
	default:
		return nil
	}
}

// Authorize authenticates one more domain pair on the stream by dialback
// (XEP-0220 piggybacking, several pairs on one stream): a db:result from the hosted domain from
// to the domain to, answered type='valid'. A pair already authorized is
// not asked for again.
func (o *Outbound) Authorize(ctx context.Context, from, to string) error {
	p, err := normalPair(from, to)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.s.timeout)
	defer cancel()
	o.mu.Lock()
	if o.Err() != nil {
		o.mu.Unlock()
		return fmt.Errorf("%s: stream ended: %w", o.tag, o.err)
	}
	req, err := o.db.SendResult(p.From, p.To)
	if errors.Is(err, dialback.ErrAuthorized) {
		o.mu.Unlock()
		return nil
	}
	if err != nil {
		o.mu.Unlock()
		return fmt.Errorf("%s: dialback %s: %w", o.tag, pairString(p), err)
	}
	ch := make(chan dialback.Decision, 1)
	o.waiters[p] = ch
	o.mu.Unlock()
	if _, err := o.write(req.Append(nil), time.Time{}); err != nil {
		return fmt.Errorf("%s: dialback %s: %w", o.tag, pairString(p), err)
	}
	select {
	case d := <-ch:
		if d.Reason != nil {
			return fmt.Errorf("%s: dialback %s: %w", o.tag, pairString(p), d.Reason)
		}
		if d.Outcome != dialback.Authorized {
			return fmt.Errorf("%s: dialback %s answered %s %s", o.tag, pairString(p), d.Answer.Type, d.Answer.Condition)
		}
		o.s.note(o.log, slog.LevelInfo, o.tag, "pair authenticated by dialback", "pair", pairString(p))
		return nil
	case <-ctx.Done():
		o.mu.Lock()
		delete(o.waiters, p)
		o.mu.Unlock()
		return fmt.Errorf("%s: dialback %s: %w", o.tag, pairString(p), ctx.Err())
	}
}

// Write writes p, raw stanza bytes, on the stream as they are: the fast
// way to generate load. Use it from one goroutine at a time. Each write
// has a deadline of at most Timeout.
func (o *Outbound) Write(p []byte) (int, error) { return o.write(p, time.Time{}) }

// Send writes st, whose from and to domains must be a pair authorized on
// the stream. Its deadline is ctx's, or Timeout if that is sooner.
func (o *Outbound) Send(ctx context.Context, st Stanza) error {
	from, to := DomainOf(st.From), DomainOf(st.To)
	o.mu.Lock()
	ok := o.db.MaySend(from, to)
	o.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: %s→%s is not authorized on this stream", o.tag, st.From, st.To)
	}
	dl, _ := ctx.Deadline()
	if _, err := o.write([]byte(st.Raw), dl); err != nil {
		return fmt.Errorf("%s: %w", o.tag, err)
	}
	return nil
}

// write writes p with a deadline: dl if it is set and sooner than Timeout.
// Without dl the deadline in force is kept while at least half of Timeout
// is left, which spares resetting it on every write of a busy stream.
func (o *Outbound) write(p []byte, dl time.Time) (int, error) {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closing {
		return 0, errClosing
	}
	now := time.Now()
	switch {
	case !dl.IsZero() && dl.Before(now.Add(o.s.timeout)):
		o.deadline = time.Time{} // a short one: not to be kept
		o.c.conn.SetWriteDeadline(dl)
	case o.deadline.Sub(now) < o.s.timeout/2:
		o.deadline = now.Add(o.s.timeout)
		o.c.conn.SetWriteDeadline(o.deadline)
	}
	return o.c.conn.Write(p)
}

// Close closes the stream: </stream:stream>, then it waits, for at most
// Timeout, until the other side has closed its own and the connection is
// closed. It must not be called from Handler.
func (o *Outbound) Close() error {
	o.closeStream()
	<-o.done
	return nil
}

// closeStream sends </stream:stream>; the owner then reads until the other
// side closes its own, for at most Timeout.
func (o *Outbound) closeStream() {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closing {
		return
	}
	o.closing = true
	o.c.conn.SetWriteDeadline(time.Now().Add(o.s.timeout))
	o.c.w.WriteClose()
	o.c.w.Flush()
	o.c.raw.SetReadDeadline(time.Now().Add(o.s.timeout))
}

func (o *Outbound) isClosing() bool {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	return o.closing
}

// ended reports whether the stream is closing or over.
func (o *Outbound) ended() bool {
	select {
	case <-o.done:
		return true
	default:
		return o.isClosing()
	}
}
