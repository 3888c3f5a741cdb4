package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// client is the initiating side of a stream to the relay's internal face,
// from the endpoint's domain to a remote one, secured with STARTTLS.
type client struct {
	from, to string
	raw      net.Conn
	conn     net.Conn // TLS over raw once negotiated
	r        *wire.Reader
	w        *wire.Writer
	id       string // the relay's stream id: dialback keys are made with it
}

// dial connects to the relay, opens a stream from→to and negotiates
// STARTTLS; the stream is then ready for dialback. ctx bounds the whole
// negotiation. The caller owns the connection and must close raw.
func (e *Endpoint) dial(ctx context.Context, from, to string) (*client, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", e.Relay)
	if err != nil {
		return nil, fmt.Errorf("connect to the relay at %s: %w", e.Relay, err)
	}
	// Cancellation becomes a deadline in the past, so that a blocked read
	// returns.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	c := &client{from: from, to: to, raw: raw, conn: raw,
		r: wire.NewReader(raw, wire.Limits{MaxStanzaPreAuth: wire.DefaultMaxStanza}), w: wire.NewWriter(raw)}
	fail := func(err error) (*client, error) {
		raw.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("stream %s→%s at %s: %w", from, to, e.Relay, err)
	}
	feats, err := c.open()
	if err != nil {
		return fail(err)
	}
	if !feats[NSTLS+" starttls"] {
		return fail(errors.New("the relay does not offer STARTTLS"))
	}
	c.w.WriteRaw([]byte("<starttls xmlns='" + NSTLS + "'/>"))
	if err := c.w.Flush(); err != nil {
		return fail(err)
	}
	el, err := c.next()
	if err != nil {
		return fail(err)
	}
	if string(el.NS) != NSTLS || string(el.Local) != "proceed" {
		return fail(fmt.Errorf("STARTTLS answered with <%s/>", el.Local))
	}
	if c.r.Buffered() != 0 {
		return fail(errors.New("data after <proceed/>"))
	}
	// The relay's internal face presents certificates it makes on demand
	// for the remote domains, self-signed: dialback authenticates it, as
	// for a Prosody configured with s2s_secure_auth = false.
	tc := tls.Client(raw, &tls.Config{ServerName: to, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("TLS handshake: %w", err))
	}
	c.conn = tc
	c.r.Reset(tc)
	c.w.Reset(tc)
	if feats, err = c.open(); err != nil {
		return fail(err)
	}
	if !feats[dialback.NSFeature+" dialback"] {
		return fail(errors.New("the relay does not offer dialback"))
	}
	return c, nil
}

// open sends the stream header and reads the relay's header and features,
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

// next reads the next element; a stream error becomes a *peerError.
func (c *client) next() (*wire.Element, error) {
	el, err := c.r.Next()
	if err != nil {
		return nil, err
	}
	if el.Kind == wire.StreamError {
		return nil, &peerError{Condition: streamErrorCondition(el.Raw)}
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

// askRelay checks a key the relay sent as Receiving server with the relay's
// internal face, its Authoritative server (XEP-0220 §2.2.2), on a
// connection of its own.
func (e *Endpoint) askRelay(ctx context.Context, v dialback.Element) (dialback.Element, error) {
	c, err := e.dial(ctx, v.From, v.To)
	if err != nil {
		return dialback.Element{}, err
	}
	if !e.track(c.raw) {
		c.raw.Close()
		return dialback.Element{}, ErrClosed
	}
	defer e.untrack(c.raw)
	defer c.raw.Close()
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	db := dialback.NewStream(dialback.Config{ID: c.id, Outbound: true, Secret: e.secret, Serves: e.hosts})
	req, err := db.SendVerify(v)
	if err != nil {
		return dialback.Element{}, err
	}
	d, err := c.exchange(db, req)
	if err != nil {
		return dialback.Element{}, fmt.Errorf("db:verify %s at %s: %w", pairString(v.Pair()), e.Relay, err)
	}
	c.w.WriteClose()
	c.w.Flush()
	return d.Answer, nil
}

// outStream is an authenticated stream from the endpoint's domain to one
// remote domain at the relay. Its owner goroutine (own) reads what the
// relay sends on it and is the only code that closes the socket; Send
// writes through the write lock.
type outStream struct {
	e   *Endpoint
	log *slog.Logger
	*client

	wmu     sync.Mutex // guards client.w and writes on conn
	closing bool       // </stream:stream> sent (under wmu)
	done    chan struct{}
}

// open opens and authenticates the stream to remote.
func (e *Endpoint) open(ctx context.Context, remote string) (*outStream, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if e.isClosed() {
		return nil, ErrClosed
	}
	start := time.Now()
	c, err := e.dial(ctx, e.domain, remote)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(aLongTimeAgo) })
	db := dialback.NewStream(dialback.Config{ID: c.id, Outbound: true, Secret: e.secret, Serves: e.hosts})
	req, err := db.SendResult(e.domain, remote)
	var d dialback.Decision
	if err == nil {
		d, err = c.exchange(db, req)
	}
	if !stop() || err != nil {
		c.raw.Close()
		if err == nil || ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("stream %s→%s at %s: dialback: %w", e.domain, remote, e.Relay, err)
	}
	if d.Outcome != dialback.Authorized {
		c.raw.Close()
		return nil, fmt.Errorf("stream %s→%s at %s: dialback answered %s %s", e.domain, remote, e.Relay,
			d.Answer.Type, d.Answer.Condition)
	}
	log := e.log.With("dir", "out", "pair", e.domain+"→"+remote)
	log.Info("stream authenticated by dialback", "relay", e.Relay, "took", time.Since(start).Round(time.Microsecond))
	return &outStream{e: e, log: log, client: c, done: make(chan struct{})}, nil
}

// own reads the relay's side of the stream until it ends, then closes the
// connection.
func (s *outStream) own() {
	defer close(s.done)
	defer s.raw.Close()
	for {
		el, err := s.next()
		var peer *peerError
		switch {
		case errors.As(err, &peer):
			s.log.Info("stream closed by the relay", "condition", peer.Condition)
			return
		case err != nil:
			if isEOF(err) {
				s.log.Debug("stream closed by the relay")
				s.close()
			} else if !s.isClosing() {
				s.log.Warn("stream ended", "err", err)
			}
			return
		}
		// Nothing is expected here without bidi (XEP-0288): the relay
		// sends its stanzas on streams of its own.
		s.log.Debug("ignored an element from the relay", "element", string(el.Local))
	}
}

// send writes st.
func (s *outStream) send(ctx context.Context, st Stanza) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return fmt.Errorf("stream %s→%s: closed", s.from, s.to)
	}
	dl := time.Now().Add(s.e.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	s.conn.SetWriteDeadline(dl)
	s.w.WriteRaw([]byte(st.Raw))
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("stream %s→%s: %w", s.from, s.to, err)
	}
	return nil
}

// close sends </stream:stream>; the owner then reads until the relay
// closes its side, for at most the endpoint's Timeout.
func (s *outStream) close() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	s.conn.SetWriteDeadline(time.Now().Add(s.e.timeout))
	s.w.WriteClose()
	s.w.Flush()
	s.raw.SetReadDeadline(time.Now().Add(s.e.timeout))
}

func (s *outStream) isClosing() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.closing
}

// ended reports whether the owner has finished with the stream.
func (s *outStream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return s.isClosing()
	}
}

// featureNames returns the children of <stream:features/> as "namespace
// local" names.
func featureNames(raw []byte) map[string]bool {
	names := map[string]bool{}
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return names
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				names[t.Name.Space+" "+t.Name.Local] = true
			}
		case xml.EndElement:
			depth--
		}
	}
}
