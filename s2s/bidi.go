package s2s

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// XEP-0288: bidirectional server-to-server streams. One TCP connection
// carries both directions of a domain pair.
//
// Receiving (a peer opened the stream): once TLS is up the relay offers
// <bidi xmlns='urn:xmpp:features:bidi'/> (and the same element in
// urn:xmpp:bidi, which ejabberd 24.10 to 24.12 look for, ejabberd #4300),
// and the peer asks with <bidi xmlns='urn:xmpp:bidi'/> (or the feature's
// namespace, as those ejabberd versions sent it). For every pair (R → L)
// authenticated on the stream afterwards, by dialback or SASL EXTERNAL, the
// reverse pair (L → R) is offered in the server's link table as a
// bidiRoute: when the router next needs a link for (L → R), Server.Link
// makes one whose transport is the inbound connection (startBidiLink). It
// is an ordinary link (queue, bounds, Settle, metrics, admin API), started
// up, whose writer writes through a bidiConn: each write takes the inbound
// stream's write lock, so the owner's own writes (dialback answers, the
// closing tag) and the link's never interleave. When the inbound stream
// ends (endBidi, before its closing tag) the routes go, the links write
// nothing more, leave the table and hand their queues back to the router,
// which reroutes them over new ordinary links (or bounces them).
//
// Initiating (the relay opened the stream for (L → R)): when the peer
// offers bidi and its identity is verified (below), the relay asks for it
// before authenticating, and the link's reader then takes the peer's
// stanzas for (R → L) on the stream (reverse) through the same checks and
// routing as an inbound stream's. Without bidi such stanzas close the
// stream with not-authorized.
//
// Whose identity. Dialback proves the initiating server to the receiving
// one, never the other way round: all the initiator knows of the receiving
// server is that DNS pointed at it. So on the federation face the relay
// asks for bidi only when the receiving server proved by its certificate,
// DANE or a pinned key (checkPeer) that it is R, and when the policy would
// accept a stream from R so authenticated. A peer known by DNS alone
// (federation.secure_auth off, or an insecure rule) gets no bidi: its
// stanzas must come on a stream it opens and that the relay verifies by
// dialback. On the internal face the receiving server is the internal
// domain's configured route, which is how inbound streams of the internal
// face are verified too (dialback against the route): bidi is asked for.
// As receiving server, the relay sends (L → R) over an inbound stream only
// if the policy accepts R authenticated as it was on that stream (a
// certificate, or dialback), as it would for an outbound link.

// errBidiEnded ends the links riding an inbound stream that ended.
var errBidiEnded = errors.New("the bidirectional stream it rode ended")

// bidiIn is the bidi state of an inbound stream whose peer asked for it.
type bidiIn struct {
	c       *inConn
	conn    net.Conn // c.conn once TLS is up: the TLS connection
	peerMax int      // the peer's max-bytes (XEP-0478, in its request), 0 if none

	// Guarded by s.lmu.
	pairs  []routing.Pair // the reverse pairs offered in s.bidiRoutes
	links  []*link        // links riding the stream
	closed bool

	off bool // guarded by c.wmu: the stream is ending; links write no more
}

// bidiRoute is a pair the relay may send over an inbound bidi stream.
type bidiRoute struct {
	in   *bidiIn
	auth policy.Auth // how the peer authenticated as the pair's target
}

// bidiEnabled reports whether the server does XEP-0288.
func (s *Server) bidiEnabled() bool { return s.Bidi }

// appendBidiFeature offers bidi in the features of a TLS-secured inbound
// stream not authenticated by SASL yet (the request must come before).
func (c *inConn) appendBidiFeature(b []byte) []byte {
	if !c.s.bidiEnabled() || !c.tls {
		return b
	}
	return append(b, "<bidi xmlns='"+NSBidiFeat+"'/><bidi xmlns='"+NSBidi+"'/>"...)
}

// bidiRequest takes a peer's <bidi/> request (XEP-0288 §2.2; there is no
// answer). Owner only.
func (c *inConn) bidiRequest(el *wire.Element) error {
	if !c.s.bidiEnabled() || !c.tls {
		// Not offered (bidi off, or before TLS): the stream stays one-way.
		c.events.log(c.logger(), slog.LevelDebug, "bidi request ignored: not offered on this stream")
		return nil
	}
	max := parseBidi(el.Raw)
	s := c.s
	s.lmu.Lock()
	bi := s.bidiIn[c]
	fresh := bi == nil
	if fresh {
		bi = &bidiIn{c: c, conn: c.conn, peerMax: max}
		s.bidiIn[c] = bi
	}
	s.lmu.Unlock()
	if fresh {
		s.stats.BidiInbound.Add(1)
		c.logger().Debug("peer asked for a bidirectional stream", "namespace", string(el.NS), "max_bytes", max)
	}
	c.offerBidi()
	return nil
}

// offerBidi offers in the link table the reverse of each pair authorized
// on a bidi stream that is not offered yet, as far as the policy accepts
// the peer, authenticated as it was here, for stanzas the relay sends. It
// runs once our answer for a pair has been written (the dialback result,
// or our header after SASL), on the owner or a verification goroutine.
func (c *inConn) offerBidi() {
	s := c.s
	s.lmu.RLock()
	bi := s.bidiIn[c]
	s.lmu.RUnlock()
	if bi == nil {
		return
	}
	type authorized struct {
		p    dialback.Pair
		auth policy.Auth
	}
	var ps []authorized
	c.mu.Lock()
	for p, st := range c.pairs {
		ps = append(ps, authorized{p, st.auth})
	}
	c.mu.Unlock()
	pol := s.Router.Policy()
	for _, a := range ps {
		rev := routing.Pair{From: a.p.To, To: a.p.From}
		s.lmu.RLock()
		known := bi.closed || s.bidiRoutes[rev] != nil
		s.lmu.RUnlock()
		if known {
			continue
		}
		st := policy.StreamState{Face: c.face, Dir: c.dirOut(), Remote: c.remoteOf(a.p), TLS: true, Auth: a.auth}
		if d := pol.Stream(st); !d.Allowed {
			c.events.log(c.logger(), slog.LevelInfo, "bidi: the relay will not send over this stream", "pair", rev.From+"→"+rev.To, "rule", d.Rule)
			continue
		}
		s.lmu.Lock()
		if !bi.closed && s.bidiRoutes[rev] == nil {
			s.bidiRoutes[rev] = &bidiRoute{in: bi, auth: a.auth}
			bi.pairs = append(bi.pairs, rev)
			c.logger().Info("bidirectional stream: the relay sends over it", "pair", rev.From+"→"+rev.To)
		}
		s.lmu.Unlock()
	}
}

// dirOut is the direction of the stanzas the relay sends over an inbound
// stream (bidi).
func (c *inConn) dirOut() policy.Direction {
	if c.dirIn() == policy.In {
		return policy.Out
	}
	return policy.In
}

// endBidi retires what rides the stream, before its closing tag: its pairs
// leave the link table, its links write nothing more, and what they held
// goes back to the router to be rerouted. Called by the owner as the stream
// ends.
func (c *inConn) endBidi() {
	s := c.s
	s.lmu.Lock()
	bi := s.bidiIn[c]
	if bi == nil {
		s.lmu.Unlock()
		return
	}
	delete(s.bidiIn, c)
	bi.closed = true
	for _, p := range bi.pairs {
		if r := s.bidiRoutes[p]; r != nil && r.in == bi {
			delete(s.bidiRoutes, p)
		}
	}
	links := bi.links
	bi.links = nil
	s.lmu.Unlock()
	s.stats.BidiInbound.Add(-1)
	c.wmu.Lock()
	bi.off = true
	c.wmu.Unlock()
	for _, l := range links {
		l.retireBidi()
	}
}

// startBidiLink makes the link of pair over the inbound stream of r and
// starts its writer. s.lmu must be held.
func (s *Server) startBidiLink(pair routing.Pair, r *bidiRoute) *link {
	c := r.in.c
	face := s.faceOf(pair)
	l := &link{s: s, pair: pair, face: face, report: func(error) {}, wake: make(chan struct{}, 1), started: time.Now()}
	l.log = newStreamLog(&streamLog{next: s.Log.Handler(), src: l}, bidiLog{c.raw})
	bc := &bidiConn{Conn: c.raw, in: r.in, timeout: s.Limits.WriteTimeout}
	o := &outStream{s: s, local: pair.From, remote: pair.To, raw: bc, conn: r.in.conn, dr: c.dr,
		w: wire.NewWriter(bc), tls: true, trust: peerTrust{auth: r.auth, how: "its own bidirectional stream"}}
	l.up, l.out, l.peerMax, l.auth, l.onInbound = true, o, r.in.peerMax, r.auth, true
	r.in.links = append(r.in.links, l)
	s.links[pair] = l
	s.stats.BidiLinks.Add(1)
	s.wg.Add(1)
	go l.runBidi(r.in)
	return l
}

// runBidi owns a link riding an inbound stream: it writes until the link
// goes idle, is stopped, or the stream ends.
func (l *link) runBidi(bi *bidiIn) {
	defer l.s.wg.Done()
	defer l.s.stats.BidiLinks.Add(-1)
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				l.log.Error("panic in a bidi link; closing it", "panic", p)
				err = routing.Timeout(fmt.Errorf("internal error"))
			}
		}()
		l.log.Debug("link up over the peer's bidirectional stream")
		l.prepareWriting(l.out)
		err, _ = l.writeLoop(l.out)
	}()
	if transportFailed(err) {
		// The stream took nothing within limits.write_timeout, or its
		// connection broke: it is closed, and what rode it rerouted, so
		// that the pair's next link is not this stream again.
		l.log.Info("write to the bidirectional stream failed; closing it", "err", err)
		bi.c.shutdown(withText(stream.ConnectionTimeout, "writing to the stream failed"))
		bi.c.endBidi()
	}
	l.finish(err)
	l.s.lmu.Lock()
	for i, x := range bi.links {
		if x == l {
			bi.links = append(bi.links[:i], bi.links[i+1:]...)
			break
		}
	}
	l.s.lmu.Unlock()
}

// transportFailed reports whether a bidi link ended because writing to the
// connection failed, rather than being stopped, going idle or losing its
// stream.
func transportFailed(err error) bool {
	var se stream.Error
	switch {
	case err == nil, errors.Is(err, errIdle), errors.Is(err, errBidiEnded), errors.Is(err, ErrServerClosed),
		isOperatorClose(err), errors.As(err, &se):
		return false
	}
	return true
}

// retireBidi ends a link whose stream ended: out of the table, refusing
// stanzas (their router finds a new link), its queue handed back to be
// rerouted, and its writer stopped. A batch the writer had already taken
// fails to write (bidiConn) and is bounced.
func (l *link) retireBidi() {
	l.s.removeLink(l)
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	for _, b := range l.take(nil) {
		l.s.Router.Settle(routing.Retired, l.pair, b.stanzas(), nil)
		b.release()
	}
	l.stop(errBidiEnded)
}

// bidiConn is what a link riding an inbound stream writes to: the inbound
// connection, under its write lock, with the deadline the link set.
type bidiConn struct {
	net.Conn // the inbound TCP connection: its addresses
	in       *bidiIn
	timeout  time.Duration // limits.write_timeout, when no deadline was set
	deadline atomic.Int64  // Unix ns
}

var errBidiRead = errors.New("a bidi link does not read")

func (b *bidiConn) Write(p []byte) (int, error) {
	c := b.in.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if b.in.off {
		return 0, errBidiEnded
	}
	dl := time.Now().Add(b.timeout)
	if d := b.deadline.Load(); d != 0 {
		dl = time.Unix(0, d)
	}
	c.raw.SetWriteDeadline(dl)
	return c.conn.Write(p)
}

func (b *bidiConn) Read([]byte) (int, error) { return 0, errBidiRead }

// Close does nothing: the inbound stream's owner closes the connection.
func (b *bidiConn) Close() error { return nil }

func (b *bidiConn) SetDeadline(t time.Time) error { return b.SetWriteDeadline(t) }

func (b *bidiConn) SetReadDeadline(time.Time) error { return nil }

func (b *bidiConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		b.deadline.Store(0)
	} else {
		b.deadline.Store(t.UnixNano())
	}
	return nil
}

// ridesInbound reports whether o is an inbound stream a link rides.
func (o *outStream) ridesInbound() bool {
	_, ok := o.raw.(*bidiConn)
	return ok
}

// BidiOutbound counts the outbound links up on which the relay asked for
// bidi (the peer's stanzas come back on them), from the link table.
func (s *Server) BidiOutbound() int64 {
	s.init() // scraped perhaps before the first Serve
	s.lmu.RLock()
	defer s.lmu.RUnlock()
	var n int64
	for _, l := range s.links {
		l.mu.Lock()
		o := l.out
		l.mu.Unlock()
		if o != nil && o.rev != nil {
			n++
		}
	}
	return n
}

// requestBidi asks the receiving server for bidi when it offers it and its
// identity allows (see the top of this file); the request goes out with
// the authentication that follows.
func (o *outStream) requestBidi() {
	s := o.s
	if !s.bidiEnabled() || !o.tls || o.feats == nil || !o.feats.Bidi {
		return
	}
	pair := routing.Pair{From: o.local, To: o.remote}
	face := s.faceOf(pair)
	st := policy.StreamState{Face: face, Dir: policy.Out, Remote: o.local, TLS: true, Auth: policy.AuthDialback}
	if face == policy.Federation {
		if o.trust.auth != policy.AuthExternal {
			s.Log.Debug("bidi offered but not asked for: the receiving server's identity rests on DNS only",
				"from", o.local, "to", o.remote, "why", o.trust.how)
			return
		}
		st = policy.StreamState{Face: face, Dir: policy.In, Remote: o.remote, TLS: true, Auth: policy.AuthExternal}
	}
	if d := s.Router.Policy().Stream(st); !d.Allowed {
		s.Log.Debug("bidi offered but not asked for: the policy refuses the reverse direction",
			"from", o.local, "to", o.remote, "rule", d.Rule)
		return
	}
	o.w.WriteRaw(appendBidiRequest(nil, s.advertisedMaxBytes(), int(s.Limits.IdleTimeout/time.Second)))
	s.Log.Debug("asked the peer for a bidirectional stream", "face", face.String(), "dir", "out", "from", o.local, "to", o.remote)
	auth := policy.AuthDialback
	if face == policy.Federation {
		auth = o.trust.auth
	}
	o.rev = &reverse{from: o.remote, to: o.local, face: face, auth: auth}
}

// appendBidiRequest appends <bidi xmlns='urn:xmpp:bidi'/> with the limits
// of what the relay accepts on the stream (XEP-0478), as Prosody 13 sends
// them: no features come the other way on a bidi stream.
func appendBidiRequest(b []byte, maxBytes, idleSeconds int) []byte {
	b = append(b, "<bidi xmlns='"+NSBidi+"'><limits xmlns='"+NSLimits+"'><max-bytes>"...)
	b = strconv.AppendInt(b, int64(maxBytes), 10)
	b = append(b, "</max-bytes><idle-seconds>"...)
	b = strconv.AppendInt(b, int64(idleSeconds), 10)
	return append(b, "</idle-seconds></limits></bidi>"...)
}

// parseBidi reads a peer's bidi request and returns the max-bytes of its
// stream limits (XEP-0478) if it carries them, else 0. The request has no
// other content; anything else in it, or a count that is not one, is
// ignored, like an unknown feature.
func parseBidi(raw []byte) int {
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = true
	depth, max := 0, 0
	var inLimits bool
	for {
		tok, err := d.Token()
		if err != nil {
			return max
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 2 && t.Name.Space == NSLimits && t.Name.Local == "limits":
				inLimits = true
			case depth == 3 && inLimits && t.Name.Local == "max-bytes":
				var v string
				if d.DecodeElement(&v, &t) != nil {
					return max
				}
				depth--
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
					max = n
				}
			}
		case xml.EndElement:
			if depth == 2 {
				inLimits = false
			}
			depth--
		}
	}
}

// reverse reads the peer's stanzas on an outbound stream with bidi: the
// pair (from → to) is the reverse of the link's. They get the checks of an
// inbound stream's stanzas (addressing against the one pair, size, pings)
// and go to the router as those do, which applies the policy, the rate
// limits and the accounting. Its methods run on the link's reader
// goroutine, apart from active.
type reverse struct {
	on       bool // bidi was asked for: otherwise every stanza is refused
	l        *link
	o        *outStream
	from, to string // the peer's domain R and ours L
	face     policy.Face
	auth     policy.Auth // how the peer proved it is R
	shard    uint32

	lastFrom  string // the previous stanza's addresses, checked (reader only)
	lastTo    string
	st        routing.Stanza
	body      elemBody
	via       routing.Via  // what the router keeps of (from → to) between its stanzas
	asleep    routing.Link // given stanzas with Defer, to wake before the next read
	oversized int
	events    eventLog // events the peer can repeat, logged once a minute with a count
	stall     stallBudget

	n    atomic.Int64 // stanzas read (admin API)
	last atomic.Int64 // when the last one came (Unix ns)
}

// reverseOf readies the reader of the peer's stanzas on o; without bidi it
// only refuses them. It runs on the link's reader goroutine before its first
// read.
func (l *link) reverseOf(o *outStream) *reverse {
	r := o.rev
	if r == nil {
		return &reverse{l: l, o: o}
	}
	r.on, r.l, r.o = true, l, o
	r.shard = uint32(l.s.stats.OutboundTotal.Load()) ^ 0x8000_0000
	o.r.SetAuthenticated(true) // the peer's stanzas may be as large as an inbound stream's
	o.dr.before = r.wake
	return r
}

// wake wakes the link the last stanzas went to without waking it.
func (r *reverse) wake() {
	if r.asleep != nil {
		r.asleep.Wake()
		r.asleep = nil
	}
}

// active reports whether the peer sent a stanza within d: the stream is in
// use even if the relay has nothing to write on it.
func (r *reverse) active(d time.Duration) bool {
	if r == nil {
		return false
	}
	last := r.last.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < d
}

// stanza checks a stanza the peer sent on our outbound stream and routes
// it; without bidi it is refused with the stream.
func (r *reverse) stanza(el *wire.Element) error {
	if !r.on {
		return r.refuse(withText(stream.NotAuthorized, "stanzas on this stream need XEP-0288 bidi, which was not negotiated"))
	}
	s := r.l.s
	r.n.Add(1)
	r.last.Store(time.Now().UnixNano())
	if len(el.To) == 0 || len(el.From) == 0 {
		return r.refuse(withText(stream.ImproperAddressing, "a stanza without 'to' or 'from'"))
	}
	// As on an inbound stream (inConn.addressing): the id is lent, and the
	// addresses of the previous stanza, already checked, are reused.
	id := lentString(el.ID)
	fromJID, toJID, from, to := r.lastFrom, r.lastTo, r.from, r.to
	if string(el.From) != fromJID || string(el.To) != toJID { // never equal while lastFrom is empty
		a, se, ok := splitAddresses(el)
		if !ok {
			return r.refuse(se)
		}
		fromJID, toJID, from, to = a.fromJID, a.toJID, a.from, a.to
		switch {
		case from != r.from:
			return r.refuse(withText(stream.InvalidFrom, "%s is not authenticated on this stream", from))
		case to != r.to:
			return r.refuse(withText(stream.HostUnknown, "%s may not send to %s on this stream", from, to))
		}
		r.lastFrom, r.lastTo = fromJID, toJID
	}
	if el.Oversize > 0 {
		r.oversized++
		if r.oversized > maxOversized {
			return r.refuse(withText(stream.PolicyViolation, "more than %d stanzas over %d bytes", maxOversized, s.Limits.MaxStanzaBytes))
		}
		r.events.log(r.l.log, slog.LevelInfo, "stanza over limits.max_stanza_bytes skipped and bounced", "size", el.Oversize)
	}
	if isPingTo(el, to) {
		// A ping to our domain tests this hop: answered, as on an inbound
		// stream; the answer goes back on this very stream.
		s.Router.Route(pingAnswer(el, from, to, r.face, r.o.tls, r.shard))
		return nil
	}
	r.body.el = el
	r.st = routing.Stanza{
		Kind: policy.ParseKind(el.Local), Type: stanzaType(el.Type),
		From: fromJID, To: toJID, ID: id,
		FromDomain: from, ToDomain: to,
		Raw: el.Raw, Body: &r.body,
		Face: r.face, TLS: r.o.tls, Auth: r.auth, Received: r.o.dr.at,
		Shard: r.shard, Via: &r.via, Defer: true, MaxWait: r.stall.maxWait(s.Limits.StallTimeout, s.Limits.StallBudget),
		Oversize: int(el.Oversize),
	}
	s.Router.Route(&r.st)
	if r.asleep != nil && r.asleep != r.via.Link {
		r.asleep.Wake()
	}
	r.asleep = r.via.Link
	waited := r.st.Waited
	r.st, r.body.el = routing.Stanza{}, nil
	if waited > 0 {
		r.stall.charge(waited, s.Limits.StallTimeout)
	}
	return nil
}

// refuse counts a stream closed for a stanza bidi does not allow.
func (r *reverse) refuse(err stream.Error) error {
	r.l.s.stats.ReverseRefused.Add(1)
	r.l.log.Info("peer's stanza refused on our bidirectional stream; closing it", "err", err)
	return err
}
