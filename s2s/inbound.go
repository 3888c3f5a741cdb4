package s2s

import (
	"bytes"
	"container/list"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/time/rate"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/certs"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// inConn is one inbound connection: a stream a peer opened to one of the
// relay's faces. Its owner goroutine (serve) reads and dispatches, and is the
// only code that closes the socket. Dialback verifications run in goroutines
// the owner waits for; they reach the stream only through the mutexes below.
type inConn struct {
	s      *Server
	face   policy.Face
	direct bool
	raw    net.Conn                    // the TCP connection
	ip     netip.Addr                  // the peer's address (raw's remote address)
	conn   net.Conn                    // raw, or the TLS connection over it
	logp   atomic.Pointer[slog.Logger] // base, with the stream's addresses once known
	base   *slog.Logger
	events eventLog // events the peer can repeat, logged once a minute with a count
	dr     *deadlineReader
	r      *wire.Reader

	wmu        sync.Mutex // guards w and headerSent
	w          *wire.Writer
	headerSent bool

	mu       sync.Mutex // guards db, pairs, closeErr
	db       *dialback.Stream
	pairs    map[dialback.Pair]*pairState // authorized (from, to), with how
	pairsGen atomic.Uint64                // changed with pairs or their auth (written under mu)
	fromAuth map[string]policy.Auth       // authorized sender domains
	daneOK   map[string]bool              // domains DANE authenticated on this stream
	hdr      dialback.Pair                // the header's from and to, for other goroutines
	closeErr error

	tlsOn atomic.Bool // tls, for other goroutines; set after peer, leafSPKI and peerChain

	started time.Time    // accepted (set before the owner starts)
	certOK  atomic.Bool  // the peer's certificate chain verified (peer != nil)
	nIn     atomic.Int64 // stanzas read, for the admin API

	pre     *list.Element // in s.preauth until authenticated (guarded by s.mu)
	evicted bool          // closed to make room (guarded by s.mu)

	// Set by startTLS, then read by verifications too, only once tlsOn
	// is set (a verification may start before STARTTLS).
	peer      *certs.Peer // verified certificate chain, nil if none
	leafSPKI  []byte      // the peer certificate's key, verified or not, for pins
	peerChain [][]byte    // the peer's certificates as sent, for DANE (nil without DANE)

	// Owner-only state.
	tls        bool
	from, to   string // stream header addresses (normal form)
	id         string
	saslDomain string // authenticated by SASL EXTERNAL
	legacy     bool   // the peer's header had no version (RFC 6120 §4.7.5)
	authed     bool   // some pair authorized: idle timeout instead of negotiation deadline

	negDeadline time.Time // the stream must authenticate before it (set before any goroutine starts)
	// shortDeadline: the stream runs under limits.preauth_timeout, until
	// its first verification (owner only).
	shortDeadline bool
	oversized     int            // stanzas skipped for their size (owner only)
	stall         stallBudget    // the stream's waits on stalled links (owner only)
	last          lastPair       // the previous stanza's addresses and pair (owner only)
	st            routing.Stanza // the stanza being routed, lent to the router (owner only)
	body          elemBody       // st.Body: the element with the outbound fix-ups (owner only)
	asleep        []routing.Link // links given stanzas with Defer, to wake before the next read (owner only)
	smOn          bool           // the peer enabled stream management (XEP-0198, owner only)
	smH           uint32         // stanzas taken charge of since, modulo 2^32 (owner only)
	shard         uint32         // the stream's number, for counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // verification goroutines
}

func (s *Server) newInConn(c net.Conn, face policy.Face, direct bool) (*inConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrServerClosed
	}
	ip := peerAddr(c)
	if face == policy.Federation && !s.connectAllowed(ip) {
		return nil, errConnectRate
	}
	// Each face has its own budget: a flood on the federation face must
	// not keep the organisation's own servers out. Internal servers open a
	// stream per remote domain from one address: no per-address limit.
	switch {
	case face == policy.Internal:
		if s.internalConns >= s.Limits.MaxInternalStreams {
			return nil, errTooManyInternal
		}
		s.internalConns++
	case s.perIP[ip] >= s.Limits.MaxStreamsPerIP:
		return nil, errTooManyFromIP
	case len(s.conns)-s.internalConns-s.evicting >= s.Limits.MaxStreams:
		// Full: the oldest connection that has not authenticated yet
		// makes room, if there is one (a flood of idle connections must
		// not keep new streams out); it finishes on its own goroutine.
		oldest := s.preauth.Front()
		if oldest == nil {
			return nil, errTooManyStreams
		}
		victim := s.preauth.Remove(oldest).(*inConn)
		victim.pre = nil
		victim.evicted = true
		s.evicting++
		s.stats.InboundEvicted.Add(1)
		go victim.shutdown(withText(stream.ConnectionTimeout, "the relay is at its connection limit"))
		fallthrough
	default:
		s.perIP[ip]++
	}
	ic := &inConn{s: s, face: face, direct: direct, raw: c, conn: c, ip: ip,
		pairs: map[dialback.Pair]*pairState{}, fromAuth: map[string]policy.Auth{},
		shard: uint32(s.stats.InboundTotal.Load()), started: time.Now()}
	ic.ctx, ic.cancel = context.WithCancel(s.ctx)
	ic.base = newStreamLog(s.Log.Handler(), ic)
	ic.logp.Store(ic.base)
	ic.dr = &deadlineReader{raw: c, conn: c}
	ic.dr.before = ic.wakeLinks
	ic.r = wire.NewReader(ic.dr, s.limits())
	ic.w = wire.NewWriter(c)
	s.conns[ic] = struct{}{}
	if face == policy.Federation {
		ic.pre = s.preauth.PushBack(ic)
	}
	s.wg.Add(1)
	s.stats.InboundOpen.Add(1)
	s.stats.InboundTotal.Add(1)
	return ic, nil
}

// logger is the stream's logger; verification goroutines read it while
// the owner replaces it on a restart.
func (c *inConn) logger() *slog.Logger { return c.logp.Load() }

// serve owns the connection until it ends or parks.
func (c *inConn) serve() { c.own(c.run) }

// resume carries on with a parked stream, on the goroutine the parker
// started.
func (c *inConn) resume() { c.own(c.carryOn) }

// carryOn reads on between two elements, as a resumed stream does.
func (c *inConn) carryOn() error { return c.loop(false) }

// own runs fn, the stream's work, as the connection's owner: until the
// stream ends (then it finishes it), or parks (then the parker owns it until
// it resumes it on a new goroutine; see park.go).
func (c *inConn) own(fn func() error) {
	for {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					c.logger().Error("panic while serving a stream; closing it", "panic", p, "stack", string(debug.Stack()))
					err = stream.InternalServerError
				}
			}()
			err = fn()
		}()
		if errors.Is(err, errPark) {
			if c.dr.park(c.resume) {
				return // the stream may already be another goroutine's
			}
			c.dr.parkable = false
			fn = c.carryOn
			continue
		}
		c.finish(err)
		c.r.Release() // the owner reads no more: its buffer goes back at once
		c.s.wg.Done()
		return
	}
}

// run negotiates and then reads the stream until it ends; a restart (after
// STARTTLS or SASL) reads a new header on the same loop.
func (c *inConn) run() error {
	start := time.Now()
	c.negDeadline = start.Add(c.s.Limits.NegotiationTimeout)
	deadline := c.negDeadline
	if pre := c.s.Limits.PreauthTimeout; c.face == policy.Federation && pre > 0 && pre < c.s.Limits.NegotiationTimeout {
		// A stranger has limits.preauth_timeout to get TLS and to ask
		// for authentication; a verification in flight extends that to
		// the negotiation deadline (extendDeadline).
		deadline, c.shortDeadline = start.Add(pre), true
	}
	c.raw.SetDeadline(deadline)
	c.dr.waitable, c.dr.until = true, deadline
	c.dr.parkable = canPark()
	if c.direct {
		if err := c.startTLS(c.s.serverTLS(c.face, true)); err != nil {
			return err
		}
	}
	return c.loop(true)
}

// loop reads the stream's elements, and its header first if header is set
// (false: a parked stream resuming between two elements).
func (c *inConn) loop(header bool) error {
	for {
		if header {
			if err := c.readHeader(); err != nil {
				return err
			}
			c.offerBidi() // a SASL pair, once our header after <success/> is out
		}
		header = true
		for restart := false; !restart; {
			el, err := c.r.Next()
			if err != nil {
				return err
			}
			if restart, err = c.handle(el); err != nil {
				return err
			}
		}
	}
}

// finish sends the stream error err calls for (or the closing tag), closes
// the connection and waits for the stream's verification goroutines.
func (c *inConn) finish(err error) {
	c.dr.parkable = false // the linger reads with its goroutine
	c.mu.Lock()
	requested := c.closeErr != nil // by Shutdown or a reload, not by the stream
	if requested {
		err = c.closeErr
	}
	c.closeErr = errStreamClosed
	pending := 0
	if c.db != nil {
		pending = len(c.db.Close())
	}
	c.mu.Unlock()
	c.wakeLinks()
	c.dr.stop()
	c.endBidi() // before the closing tag: the links riding the stream write no more

	se := closeReason(err)
	idle := isTimeout(err) && c.dr.idle.Load() != 0
	if idle {
		// An authenticated stream that carried nothing for
		// limits.idle_timeout is closed cleanly: connection-timeout is for
		// peers that stopped responding, not for idleness (RFC 6120 §4.6).
		se = nil
	}
	c.wmu.Lock()
	c.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if c.smOn && c.headerSent && !errors.Is(err, errHandshake) {
		// XEP-0198 §4: a last count before the end, so that the peer
		// knows what the relay took charge of.
		c.w.WriteRaw(appendAck(nil, c.smH))
	}
	switch {
	case errors.Is(err, errHandshake):
		// RFC 6120 §5.4.3.3: a failed TLS handshake ends the TCP connection
		// without a closing tag.
	case se != nil:
		if !c.headerSent {
			h := &wire.Header{From: c.to, To: c.from, ID: newStreamID(), Version: "1.0", Lang: langDefault}
			if c.legacy {
				h.Version = "" // RFC 6120 §4.7.5: answer a pre-1.0 peer without version
			}
			c.w.WriteHeader(h)
		}
		c.w.WriteStreamError(*se)
	case c.headerSent:
		c.w.WriteClose()
	}
	c.w.Flush()
	c.wmu.Unlock()
	if tc, ok := c.conn.(*tls.Conn); ok && !errors.Is(err, errHandshake) {
		// close_notify (RFC 8446 §6.1): the peer learns that the stream
		// ended here, not that the connection was cut (monitoring such as
		// check_xmppng reports an unexpected EOF otherwise). Reading goes
		// on for the linger.
		tc.CloseWrite()
	}
	if (requested || idle) && c.headerSent {
		c.linger()
	}
	c.cancel()
	c.raw.Close()
	c.wg.Wait()

	c.s.mu.Lock()
	delete(c.s.conns, c)
	if c.pre != nil {
		c.s.preauth.Remove(c.pre)
		c.pre = nil
	}
	if c.evicted {
		c.s.evicting--
	}
	if c.face == policy.Internal {
		c.s.internalConns--
	} else if c.s.perIP[c.ip] <= 1 {
		delete(c.s.perIP, c.ip)
	} else {
		c.s.perIP[c.ip]--
	}
	c.s.mu.Unlock()
	c.s.stats.InboundOpen.Add(-1)
	c.events.flush(c.logger())
	switch {
	case se != nil && se.Err == stream.SystemShutdown.Err:
		c.logger().Debug("stream closed for shutdown")
	case se != nil:
		c.logger().Info("stream closed with an error", "condition", se.Err, "err", err, "abandoned_checks", pending,
			"age", time.Since(c.started).Round(time.Millisecond))
	case idle:
		c.logger().Debug("idle stream closed", "idle_timeout", c.s.Limits.IdleTimeout)
	case err != nil && !errors.Is(err, io.EOF):
		c.logger().Debug("stream ended", "err", err)
	default:
		c.logger().Debug("stream closed by peer")
	}
}

var (
	errStreamClosed = errors.New("stream closed")
	errHandshake    = errors.New("TLS handshake failed")
)

// shutdown asks the owner to close the stream with err, from any goroutine:
// the owner's blocked read is woken by a deadline in the past.
func (c *inConn) shutdown(err error) {
	c.mu.Lock()
	first := c.closeErr == nil
	if first {
		c.closeErr = err
	}
	c.mu.Unlock()
	if first {
		c.dr.stop()
	}
}

// kill closes the connection under the owner's feet (Server.Close, or a
// Shutdown past its deadline): every blocked read or write fails at once,
// and the owner finishes without waiting on the peer.
func (c *inConn) kill() {
	c.shutdown(withText(stream.SystemShutdown, "the relay is shutting down"))
	c.raw.Close()
}

// lingerFor is how long a stream we close keeps being read (RFC 6120 §4.4).
const lingerFor = 3 * time.Second

// linger goes on reading a stream the relay closed of its own accord
// (shutdown, reload, idle) until the peer closes its side or lingerFor
// passes, and routes the stanzas that were already on their way: the peer
// sent them before it saw our closing, and without stream management
// nothing else would tell their senders they were lost (RFC 6120 §4.4).
// They are routed like any other, so a stanza the new policy refuses is
// bounced, not dropped.
//
// With stream management on, the relay acknowledged its last count before
// closing (finish): the stanzas that arrive after it are the peer's, which
// holds them as unacknowledged and sends them again or bounces them when
// its stream ends; routing them too would deliver them twice.
func (c *inConn) linger() {
	c.dr.resume(time.Now().Add(lingerFor))
	n := 0
	for {
		el, err := c.r.Next()
		if err != nil {
			break
		}
		if el.IsStanza() {
			n++
			if !c.smOn && c.stanza(el) != nil {
				break
			}
		}
	}
	switch {
	case n > 0 && c.smOn:
		c.logger().Debug("stanzas read after closing the stream left unacknowledged to the peer (XEP-0198)", "count", n)
	case n > 0:
		c.logger().Debug("stanzas read after closing the stream", "count", n)
	}
}

// streamManagement handles an XEP-0198 element from the peer: <enable/>
// once the stream is authenticated, <r/> answered with the count, the
// peer's own acknowledgements ignored (the relay sends no stanzas on an
// inbound stream).
func (c *inConn) streamManagement(local string) error {
	switch local {
	case "enable":
		switch {
		case c.smOn:
			return c.write(smFailed("unexpected-request"))
		case !c.authed || !c.s.Limits.StreamManagement:
			return c.write(smFailed("feature-not-implemented"))
		}
		c.smOn, c.smH = true, 0
		c.logger().Debug("stream management enabled by the peer")
		return c.write(smEnabled)
	case "r":
		if !c.smOn {
			c.events.log(c.logger(), slog.LevelDebug, "ignoring an acknowledgement request without stream management")
			return nil
		}
		var b [64]byte
		return c.write(appendAck(b[:0], c.smH))
	case "resume":
		return c.write(smFailed("item-not-found"))
	case "a", "enabled", "failed":
		return nil
	}
	return withText(stream.UnsupportedStanzaType, "unexpected element {%s}%s", NSSM, local)
}

// write writes elements and flushes them, within limits.write_timeout: a
// peer that does not read is cut off, authenticated or not.
func (c *inConn) write(p ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, b := range p {
		c.w.WriteRaw(b)
	}
	return c.flush()
}

// flush writes what c.w holds within limits.write_timeout. c.wmu must be
// held.
func (c *inConn) flush() error {
	if c.w.Buffered() == 0 {
		return nil
	}
	c.raw.SetWriteDeadline(time.Now().Add(c.s.Limits.WriteTimeout))
	return c.w.Flush()
}

// readHeader reads the peer's stream header, checks it, and answers with our
// header and features (RFC 6120 §4.7, §4.3.2).
func (c *inConn) readHeader() error {
	hdr, err := c.r.ReadHeader()
	if err != nil {
		return err
	}
	restart := c.id != ""
	legacy := hdr.Version == "" || hdr.Version[0] == '0'
	c.legacy = legacy

	to, from := "", ""
	if hdr.To != "" {
		if to, err = dialback.Domain(hdr.To); err != nil || !c.s.serves(c.face, to) {
			return withText(stream.HostUnknown, "%q is not served here", hdr.To)
		}
	} else {
		return withText(stream.HostUnknown, "the stream header has no 'to'")
	}
	if hdr.From != "" {
		if from, err = dialback.Domain(hdr.From); err != nil {
			return withText(stream.InvalidFrom, "%q is not a domain", hdr.From)
		}
		if !c.s.peerAllowed(c.face, from) {
			c.to = to
			return withText(stream.InvalidFrom, "streams from %s are not accepted on this face", from)
		}
	}
	if restart && (to != c.to || from != "" && c.from != "" && from != c.from) {
		return withText(stream.ImproperAddressing, "stream addresses changed on restart")
	}
	c.to = to
	if from != "" {
		c.from = from
	}
	c.logp.Store(newStreamLog(c.base.Handler(), &pairLog{from: c.from, to: c.to}))

	if remote := c.remoteOf(dialback.Pair{From: c.from, To: c.to}); remote != "" && !restart {
		if d := c.s.Router.Policy().Domain(remote); !d.Allowed {
			c.audit(d.Record(time.Now(), policy.StreamState{Face: c.face, Dir: c.dirIn(), Remote: remote}, c.localOf(dialback.Pair{From: c.from, To: c.to})))
			return c.s.explain(c.face, d.Condition, d.Rule, "federation with %s is not allowed here", remote)
		}
	}
	if legacy && !c.tls && c.s.TLS.Required {
		return withText(stream.PolicyViolation, "TLS is required; a stream without version cannot negotiate it")
	}

	c.id = newStreamID()
	c.smOn, c.smH = false, 0 // stream management lasts one stream (XEP-0198 §3)
	c.mu.Lock()
	c.hdr = dialback.Pair{From: c.from, To: c.to}
	if c.db != nil {
		c.db.Close()
	}
	c.db = dialback.NewStream(dialback.Config{
		ID:         c.id,
		Secret:     c.s.Secret,
		Serves:     func(d string) bool { return c.s.serves(c.face, d) },
		CertValid:  c.certValid,
		MaxPending: c.s.Limits.VerificationsPerStream,
		MaxPairs:   c.s.Limits.PairsPerStream,
	})
	c.forgetPairs()
	if c.saslDomain != "" {
		// SASL EXTERNAL authenticated the header's from for its to.
		c.db.Authorize(c.saslDomain, c.to)
		c.authorize(dialback.Pair{From: c.saslDomain, To: c.to}, policy.AuthExternal)
	}
	c.mu.Unlock()
	if c.saslDomain != "" {
		c.authenticated()
		c.raiseLimit()
	}

	h := &wire.Header{To: c.from, From: c.to, ID: c.id, Lang: langDefault}
	if !legacy {
		h.Version = "1.0"
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w.WriteHeader(h)
	c.headerSent = true
	if !legacy {
		c.w.WriteRaw(c.features())
	}
	return c.flush()
}

// features lists what this stream offers next (RFC 6120 §4.3.2).
func (c *inConn) features() []byte {
	b := []byte("<stream:features>")
	switch {
	case !c.tls:
		b = append(b, "<starttls xmlns='"+NSTLS+"'>"...)
		if c.s.TLS.Required {
			b = append(b, "<required/>"...)
		}
		b = append(b, "</starttls>"...)
		if !c.s.TLS.Required {
			b = append(b, dialbackFeature...)
		}
	case c.saslDomain == "":
		// XEP-0178: offer EXTERNAL only when the certificate is good for
		// the header's from.
		if c.from != "" && c.certValid(c.from) {
			b = append(b, "<mechanisms xmlns='"+NSSASL+"'><mechanism>EXTERNAL</mechanism></mechanisms>"...)
		}
		b = append(b, dialbackFeature...)
		b = c.appendBidiFeature(b)
	default:
		// Authenticated: dialback stays available for more pairs, and
		// stream management may be enabled (XEP-0198; Prosody asks for it
		// only after SASL EXTERNAL, in the features that follow).
		b = append(b, dialbackFeature...)
		if c.s.Limits.StreamManagement {
			b = append(b, "<sm xmlns='"+NSSM+"'/>"...)
		}
	}
	// XEP-0478: what this stream takes once authenticated without closing
	// (advertisedMaxBytes), so that the peer bounces a larger stanza
	// itself instead of losing the stream.
	b = append(b, "<limits xmlns='"+NSLimits+"'><max-bytes>"...)
	b = strconv.AppendInt(b, int64(c.s.advertisedMaxBytes()), 10)
	b = append(b, "</max-bytes><idle-seconds>"...)
	b = strconv.AppendInt(b, int64(c.s.Limits.IdleTimeout/time.Second), 10)
	b = append(b, "</idle-seconds></limits>"...)
	return append(b, "</stream:features>"...)
}

const dialbackFeature = "<dialback xmlns='" + dialback.NSFeature + "'><errors/></dialback>"

// handle dispatches one top-level element; restart reports that the stream
// restarts (a new header follows).
func (c *inConn) handle(el *wire.Element) (restart bool, err error) {
	switch el.Kind {
	case wire.Message, wire.Presence, wire.IQ:
		// With stream management on, every stanza read is one the relay
		// takes charge of, routed or bounced before the next is read.
		c.smH++
		return false, c.stanza(el)
	case wire.Space:
		return false, nil
	}
	c.wakeLinks() // what follows may write to the peer, and wait
	switch el.Kind {
	case wire.DialbackResult, wire.DialbackVerify:
		return false, c.dialback(el)
	case wire.StreamError:
		return false, parseStreamError(el.Raw)
	}
	switch ns, local := string(el.NS), string(el.Local); {
	case ns == NSTLS && local == "starttls":
		return true, c.handleStartTLS()
	case ns == NSSASL && local == "auth":
		return c.handleAuth(el)
	case ns == NSSM:
		return false, c.streamManagement(string(el.Local))
	case ns == NSBidi || ns == NSBidiFeat:
		return false, c.bidiRequest(el)
	}
	if err := el.CheckStanza(); err != nil {
		return false, withText(err.(stream.Error), "unexpected element %s", elementName(el))
	}
	return false, withText(stream.UnsupportedStanzaType, "unexpected element %s", elementName(el))
}

// handleStartTLS answers <starttls/> (RFC 6120 §5.4.2).
func (c *inConn) handleStartTLS() error {
	if c.tls {
		return withText(stream.PolicyViolation, "TLS is already in place")
	}
	if c.r.Buffered() != 0 {
		// Bytes after <starttls/> would be processed as if protected (the
		// STARTTLS command injection attack).
		return withText(stream.PolicyViolation, "data after <starttls/>")
	}
	if err := c.write([]byte("<proceed xmlns='" + NSTLS + "'/>")); err != nil {
		return err
	}
	return c.startTLS(c.s.serverTLS(c.face, false))
}

// startTLS runs the server side of the TLS handshake and restarts the reader
// and writer on it. The peer's certificate chain is verified here, for
// SASL EXTERNAL and XEP-0344; an unverifiable one only means dialback.
func (c *inConn) startTLS(cfg *tls.Config) error {
	// Without SNI the certificate is the header's 'to' (empty, so unused,
	// on direct TLS). TLS reads the socket through a readAhead.
	c.dr.ahead = newReadAhead(c.raw)
	tc := tls.Server(certs.StreamTo(c.dr.ahead, c.to), cfg)
	ctx, cancel := context.WithTimeout(c.ctx, c.s.Limits.NegotiationTimeout)
	defer cancel()
	// The handshake and the chain's verification grow a stack the owner
	// would keep while the stream idles: they run aside.
	var (
		err, verr error
		peer      *certs.Peer
	)
	aside(func() {
		if err = tc.HandshakeContext(ctx); err == nil {
			peer, verr = c.s.Verifier.VerifyChain(tc.ConnectionState())
		}
	})
	if err != nil {
		c.logger().Info("TLS handshake failed", "err", err)
		return errHandshake
	}
	c.dr.ahead.start(c.dr.before)
	// What the stream needs of the peer's certificates, kept in a few
	// hundred bytes; tc drops its parsed copies (kilobytes) before others
	// can see it.
	state := tc.ConnectionState()
	if certs := state.PeerCertificates; len(certs) > 0 {
		c.leafSPKI = bytes.Clone(certs[0].RawSubjectPublicKeyInfo)
		if c.face == policy.Federation && c.s.DANE != nil {
			c.peerChain = make([][]byte, len(certs))
			for i, cert := range certs {
				c.peerChain[i] = bytes.Clone(cert.Raw)
			}
		}
	}
	dropPeerCertificates(tc)
	c.wmu.Lock()
	c.conn = tc
	c.w.Reset(tc)
	c.headerSent = false
	c.wmu.Unlock()
	c.dr.conn = tc
	c.r.Reset(c.dr)
	if verr == nil {
		c.peer = peer
		c.certOK.Store(true)
	} else {
		c.logger().Debug("peer certificate not usable; dialback only", "err", verr)
	}
	// Last: a verification started before STARTTLS (TLS not required)
	// runs on while the stream restarts, and reads what is set above only
	// once it sees tlsOn (certTrusted, daneMayHelp).
	c.tls = true
	c.tlsOn.Store(true)
	return nil
}

// certValid reports whether the peer's verified certificate covers domain.
func (c *inConn) certValid(domain string) bool {
	if c.face == policy.Internal {
		// The internal domains are authenticated against their configured
		// route only, by dialback (the relay asks the route): a certificate
		// valid for an internal domain, from any CA the relay trusts, does
		// not prove that its holder is the organisation's server.
		return false
	}
	return c.certTrusted(domain)
}

// handleAuth answers a SASL <auth/>; only EXTERNAL is offered (XEP-0178).
func (c *inConn) handleAuth(el *wire.Element) (restart bool, err error) {
	fail := func(cond string) (bool, error) {
		c.s.metrics.externalOutcome(false, false)
		return false, c.write([]byte("<failure xmlns='" + NSSASL + "'><" + cond + "/></failure>"))
	}
	if !c.tls {
		return fail("encryption-required")
	}
	if c.saslDomain != "" {
		return false, withText(stream.PolicyViolation, "SASL already completed")
	}
	a, err := parseAuth(el.Raw)
	if err != nil {
		return fail("malformed-request")
	}
	if a.Mechanism != "EXTERNAL" {
		return fail("invalid-mechanism")
	}
	domain := c.from
	if a.AuthzID != "" {
		d, err := dialback.Domain(a.AuthzID)
		if err != nil || (c.from != "" && d != c.from) {
			return fail("invalid-authzid")
		}
		domain = d
	}
	if domain == "" || !c.s.peerAllowed(c.face, domain) || !c.certValid(domain) {
		return fail("not-authorized")
	}
	pair := dialback.Pair{From: domain, To: c.to}
	if d := c.streamDecision(pair, policy.AuthExternal); !d.Allowed {
		return fail("not-authorized")
	}
	if err := c.write([]byte("<success xmlns='" + NSSASL + "'/>")); err != nil {
		return false, err
	}
	c.saslDomain = domain
	c.s.metrics.externalOutcome(false, true)
	c.logger().Info("peer authenticated by SASL EXTERNAL", "domain", domain)
	return true, nil
}

// streamDecision asks the policy about a pair about to be authorized and
// audits a refusal.
func (c *inConn) streamDecision(p dialback.Pair, auth policy.Auth) policy.StreamDecision {
	st := policy.StreamState{Face: c.face, Dir: c.dirIn(), Remote: c.remoteOf(p), TLS: c.tlsOn.Load(), Auth: auth}
	d := c.s.Router.Policy().Stream(st)
	if !d.Allowed {
		c.audit(d.Record(time.Now(), st, c.localOf(p)))
	}
	return d
}

// remoteOf returns the remote domain of a pair authorized on this stream:
// the sender on the federation face, the target on the internal face.
func (c *inConn) remoteOf(p dialback.Pair) string {
	if c.face == policy.Internal {
		return p.To
	}
	return p.From
}

// localOf returns the organisation's domain of a pair on this stream: the
// target on the federation face, the sender on the internal face.
func (c *inConn) localOf(p dialback.Pair) string {
	if c.face == policy.Internal {
		return p.From
	}
	return p.To
}

// dirIn is the direction of the stanzas an inbound stream carries.
func (c *inConn) dirIn() policy.Direction {
	if c.face == policy.Internal {
		return policy.Out
	}
	return policy.In
}

// pairState is what an inbound stream keeps of a pair authorized on it.
type pairState struct {
	auth policy.Auth // how it was authorized (guarded by inConn.mu)
	// via is what the router keeps of the pair between its stanzas
	// (Stanza.Via): only the stream's owner goroutine reads or writes it.
	via routing.Via
}

// forgetPairs forgets every pair authorized on the stream (a restart).
// c.mu must be held.
func (c *inConn) forgetPairs() {
	clear(c.pairs)
	clear(c.fromAuth)
	c.pairsGen.Add(1)
}

// authorize records an authorized pair. c.mu must be held.
func (c *inConn) authorize(p dialback.Pair, auth policy.Auth) {
	c.pairsGen.Add(1)
	if ps := c.pairs[p]; ps != nil {
		ps.auth = auth
	} else {
		c.pairs[p] = &pairState{auth: auth}
	}
	if c.fromAuth[p.From] < auth {
		c.fromAuth[p.From] = auth
	}
	c.auditAuthorized(p, auth)
}

// dialback handles db:result and db:verify (XEP-0220): Receiving server for
// requests to our domains, Authoritative server for db:verify.
func (c *inConn) dialback(el *wire.Element) error {
	if !c.tls && c.s.TLS.Required {
		return withText(stream.PolicyViolation, "TLS is required before dialback")
	}
	e, err := dialback.Parse(el.Raw)
	if err != nil {
		var se stream.Error
		if errors.As(err, &se) {
			return withText(se, "%v", err)
		}
		return err
	}
	if e.Kind == dialback.KindResult && e.Type == dialback.TypeRequest {
		pair := e.Pair()
		if !c.s.peerAllowed(c.face, pair.From) {
			c.events.log(c.logger(), slog.LevelInfo, "dialback refused: sender domain not accepted on this face", "sender", pair.From)
			return c.write(e.ErrorResponse(stanza.PolicyViolation).Append(nil))
		}
		// Without a certificate for the sender, dialback alone may not be
		// enough (federation.secure_auth, require_auth): then DANE is
		// asked on the verification's goroutine, and the policy decides
		// there.
		if !c.daneMayHelp(pair) {
			if d := c.streamDecision(pair, c.authOf(pair.From)); !d.Allowed {
				c.events.log(c.logger(), slog.LevelInfo, "dialback refused by policy", "sender", pair.From, "target", pair.To, "rule", d.Rule)
				return c.write(e.ErrorResponse(stanza.Condition(d.Condition.Err)).Append(nil))
			}
		}
	}
	c.mu.Lock()
	dec := c.db.Handle(e)
	c.mu.Unlock()
	if dec.Action == dialback.Forward || dec.Action == dialback.Reply && dec.Reply.Type == dialback.TypeValid {
		c.raiseLimit()
	}
	return c.apply(dec)
}

// apply carries out a dialback decision on this stream.
func (c *inConn) apply(dec dialback.Decision) error {
	switch dec.Action {
	case dialback.Reply:
		r := dec.Reply
		c.s.metrics.dialbackReply(r)
		if r.Kind == dialback.KindResult && r.Type == dialback.TypeValid {
			pair := r.Pair()
			auth := c.authOf(pair.From)
			c.mu.Lock()
			c.authorize(pair, auth)
			c.mu.Unlock()
			c.authenticated()
			c.events.log(c.logger(), slog.LevelInfo, "peer authenticated by dialback", "pair", pair.From+"→"+pair.To)
			c.s.Router.Reachable(pair.From)
		}
		if err := c.write(r.Append(nil)); err != nil {
			return err
		}
		if r.Kind == dialback.KindResult && r.Type == dialback.TypeValid {
			c.offerBidi() // the peer has read its answer: the reverse pair may carry stanzas
		}
		if dec.Close != nil {
			return dec.Close
		}
	case dialback.Forward:
		// The relay-wide and per-address caps are for the federation face:
		// the internal face's verifications go to the organisation's own
		// route, and an internal server opening streams to many remote
		// domains at once must not see them refused.
		if c.face == policy.Federation && !c.s.verifyStart(c.ip, dec.Verify.To) {
			// The relay's or this address's verifications are all in
			// flight: answered at once, without a dial or a DNS query.
			c.s.stats.VerificationsRefused.Add(1)
			c.events.log(c.logger(), slog.LevelInfo, "dialback refused: too many verifications in flight", "domain", dec.Verify.To)
			c.mu.Lock()
			refused := c.db.Conclude(dec.Verify.ErrorResponse(stanza.ResourceConstraint))
			c.mu.Unlock()
			return c.apply(refused)
		}
		c.extendDeadline()
		c.wg.Add(1)
		go c.verify(dec.Verify)
	case dialback.Ignore:
		c.s.stats.DialbackIgnored.Add(1)
		c.events.log(c.logger(), slog.LevelDebug, "dialback element ignored", "reason", dec.Reason)
	default:
		c.events.log(c.logger(), slog.LevelDebug, "dialback decision not applicable to an inbound stream", "action", dec.Action.String())
	}
	return nil
}

// extendDeadline moves a stream still under limits.preauth_timeout to its
// negotiation deadline, now that a verification starts: the stranger has
// shown a key, and the Authoritative server may take its time. Owner only.
func (c *inConn) extendDeadline() {
	if !c.shortDeadline {
		return
	}
	c.shortDeadline = false
	if c.dr.idle.Load() == 0 { // not authenticated meanwhile
		c.raw.SetDeadline(c.negDeadline)
		c.dr.until = c.negDeadline
	}
}

// authenticated switches the stream from the negotiation deadline to the
// idle timeout; the owner then raises the stanza limit. It may run on a
// verification goroutine: only atomic or self-synchronised state is touched.
func (c *inConn) authenticated() {
	c.s.mu.Lock()
	if c.pre != nil {
		c.s.preauth.Remove(c.pre)
		c.pre = nil
	}
	c.s.mu.Unlock()
	if c.dr.setIdle(c.s.Limits.IdleTimeout) {
		// Writes keep their own deadline (limits.write_timeout). The owner
		// may be blocked in a read that began under the negotiation
		// deadline: move that read's deadline too.
		// (WaitIdle rereads the idle timeout by itself within idleGrace.)
		if !c.dr.waiting.Load() {
			c.raw.SetReadDeadline(time.Now().Add(c.s.Limits.IdleTimeout))
		}
		if c.dr.stopped.Load() {
			c.dr.stop() // a stop that raced with this keeps its effect
		}
	}
}

// raiseLimit switches the reader to the post-authentication stanza limit.
// Owner only. It is called as soon as a pair is authorized on the owner's
// side, and when a verification starts: the peer sends its first stanza as
// soon as it reads our valid answer, while the owner is already blocked
// reading with whatever limit was set before, so the limit must be raised
// before the answer can go out. During a verification the peer, which has
// presented a key over the stream, may thus send elements up to
// limits.max_stanza_bytes: memory stays bounded by that.
func (c *inConn) raiseLimit() {
	if !c.authed {
		c.authed = true
		c.r.SetAuthenticated(true)
	}
}

// verify checks a forwarded key with the Authoritative server of the sender
// domain and concludes the dialback on this stream (Receiving role).
func (c *inConn) verify(v dialback.Element) {
	defer c.wg.Done()
	if c.face == policy.Federation {
		defer c.s.verifyEnd(c.ip)
	}
	// On a stream not authenticated yet, the answer must go out before the
	// stream's own negotiation deadline: a slow Authoritative server gets
	// the peer db:result type='error' (remote-connection-failed) on a
	// stream that lives on, not connection-timeout (XEP-0220 §2.4).
	timeout := c.s.Limits.ConnectTimeout + c.s.Limits.NegotiationTimeout
	if c.dr.idle.Load() == 0 {
		timeout = min(timeout, time.Until(c.negDeadline)-c.s.Limits.NegotiationTimeout/10)
	}
	ctx, cancel := context.WithTimeout(c.ctx, max(timeout, 0))
	defer cancel()
	// v goes to the Authoritative server of the sender domain: v.To.
	pair := dialback.Pair{From: v.To, To: v.From}
	if c.daneMayHelp(pair) {
		c.tryDANE(ctx, v.To)
		if d := c.streamDecision(pair, c.authOf(v.To)); !d.Allowed {
			c.events.log(c.logger(), slog.LevelInfo, "dialback refused by policy", "sender", pair.From, "target", pair.To, "rule", d.Rule)
			c.conclude(v.ErrorResponse(stanza.Condition(d.Condition.Err)))
			return
		}
	}
	answer, err := c.s.askAuthoritative(ctx, v)
	if err != nil {
		cond := dialback.RemoteConnectionFailed
		var de *routing.DeliveryError
		if errors.As(err, &de) && de.Condition == stanza.RemoteServerNotFound {
			cond = stanza.RemoteServerNotFound
		}
		c.events.log(c.logger(), slog.LevelInfo, "dialback: authoritative server not reached", "domain", v.To, "err", err)
		answer = v.ErrorResponse(cond)
	}
	c.conclude(answer)
}

// conclude ends a verification with the Authoritative server's answer (or
// the relay's own refusal) and applies the outcome on the stream.
func (c *inConn) conclude(answer dialback.Element) {
	c.mu.Lock()
	dec := c.db.Conclude(answer)
	c.mu.Unlock()
	if err := c.apply(dec); err != nil {
		c.shutdown(err)
	}
}

// stanza checks a stanza's addressing against the pairs authorized on this
// stream (RFC 6120 §8.1.1.2, §8.1.2.2) and hands it to the router.
func (c *inConn) stanza(el *wire.Element) error {
	c.nIn.Add(1)
	if len(el.To) == 0 || len(el.From) == 0 {
		return withText(stream.ImproperAddressing, "a stanza without 'to' or 'from'")
	}
	a, err := c.addressing(el)
	if err != nil {
		return err
	}
	from, to, ps := a.from, a.to, a.ps
	if el.Oversize > 0 {
		// Larger than limits.max_stanza_bytes: the framer skipped it
		// without keeping it. Its sender gets policy-violation (modify)
		// and the stream goes on, unless the peer keeps doing it.
		c.oversized++
		if c.oversized > maxOversized {
			return withText(stream.PolicyViolation, "more than %d stanzas over %d bytes", maxOversized, c.s.Limits.MaxStanzaBytes)
		}
		c.events.log(c.logger(), slog.LevelInfo, "stanza over limits.max_stanza_bytes skipped and bounced",
			"size", el.Oversize, "sender", from, "recipient", to)
	}
	if isPingTo(el, to) {
		c.s.Router.Route(pingAnswer(el, from, to, c.face, c.tls, c.shard))
		return nil
	}
	// The stanza is lent to the router, which keeps nothing of it: the
	// link it goes to copies its bytes (with the fix-ups, from el) and its
	// facts. The read buffer and c.st serve the next stanza.
	c.body.el = el
	c.st = routing.Stanza{
		Kind: policy.ParseKind(el.Local), Type: stanzaType(el.Type),
		From: a.fromJID, To: a.toJID, ID: lentString(el.ID), // the id is lent, as Raw is
		FromDomain: from, ToDomain: to,
		Raw: el.Raw, Body: &c.body,
		Face: c.face, TLS: c.tls, Auth: a.auth, Received: c.dr.at,
		Shard: c.shard, Via: &ps.via, Defer: true, MaxWait: c.stall.maxWait(c.s.Limits.StallTimeout, c.s.Limits.StallBudget),
		Oversize: int(el.Oversize),
	}
	c.s.Router.Route(&c.st)
	if l := ps.via.Link; l != nil && (len(c.asleep) == 0 || c.asleep[len(c.asleep)-1] != l) {
		if len(c.asleep) >= 16 {
			c.wakeAll(true) // many pairs in one read: wake their writers in groups, and read on
		}
		c.asleep = append(c.asleep, l)
	}
	waited := c.st.Waited
	c.st, c.body.el = routing.Stanza{}, nil
	if waited > 0 {
		c.stall.charge(waited, c.s.Limits.StallTimeout)
	}
	return nil
}

// lastPair is what inConn.stanza works out of a stanza's addresses: the
// JIDs, their domains and the pair's state. The stream keeps the previous
// stanza's: a stream carries long runs between the same two JIDs, and the
// next one that has them again needs neither their domains split nor the
// pair looked up under c.mu. gen is c.pairsGen when it was filled: any
// change to the stream's pairs or their authentication empties it.
type lastPair struct {
	fromJID, toJID string
	from, to       string
	ps             *pairState
	auth           policy.Auth
	gen            uint64
}

// addressing checks a stanza's from and to against the pairs authorized on
// the stream and returns them with their domains and the pair's state
// (c.last, unless the pair is a multiplexed reply's).
// From and to share one string (one allocation), or, when they are the
// previous stanza's, are that stanza's strings (none); the domains are
// substrings of the addresses when already in normal form.
func (c *inConn) addressing(el *wire.Element) (*lastPair, error) {
	if k := &c.last; k.ps != nil && k.gen == c.pairsGen.Load() &&
		string(el.From) == k.fromJID && string(el.To) == k.toJID {
		return k, nil
	}
	a, se, ok := splitAddresses(el)
	if !ok {
		return nil, se
	}
	var fromOK, anyAuth bool // for the refusal only
	c.mu.Lock()
	a.gen = c.pairsGen.Load()
	if a.ps = c.pairs[dialback.Pair{From: a.from, To: a.to}]; a.ps != nil {
		a.auth = a.ps.auth
	} else {
		_, fromOK = c.fromAuth[a.from]
		anyAuth = len(c.fromAuth) > 0
	}
	c.mu.Unlock()
	switch {
	case a.ps != nil:
		c.last = a
		return &c.last, nil
	case !anyAuth:
		return nil, withText(stream.NotAuthorized, "stanza before authentication")
	case !fromOK:
		return nil, withText(stream.InvalidFrom, "%s is not authenticated on this stream", a.from)
	}
	// Not kept for the next stanza: the multiplexed reply's state is made
	// afresh.
	if a.ps = c.multiplexReply(a.from, a.to); a.ps == nil {
		return nil, withText(stream.HostUnknown, "%s may not send to %s on this stream", a.from, a.to)
	}
	a.auth = a.ps.auth
	return &a, nil
}

// splitAddresses returns a lastPair with a stanza's from and to (sharing
// one string: one allocation) and their domains; if one is not a JID, ok is
// false and se is the stream error to close with.
func splitAddresses(el *wire.Element) (a lastPair, se stream.Error, ok bool) {
	attrs := string(el.From) + string(el.To)
	a.fromJID, a.toJID = attrs[:len(el.From)], attrs[len(el.From):]
	var err error
	if a.from, err = splitDomain(a.fromJID); err != nil {
		return a, withText(stream.ImproperAddressing, "bad 'from'"), false
	}
	if a.to, err = splitDomain(a.toJID); err != nil {
		return a, withText(stream.ImproperAddressing, "bad 'to'"), false
	}
	return a, se, true
}

// lentString is b as a string without a copy, for as long as b is not
// changed: only for a Stanza's lent fields (routing.Stanza), which whoever
// keeps copies.
func lentString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// maxOversized is how many stanzas over limits.max_stanza_bytes a stream
// may send (each skipped and bounced) before it is closed with
// policy-violation: a peer that does it again and again is either broken
// or making the relay read for nothing.
const maxOversized = 16

// wakeLinks wakes the links this stream handed stanzas to without waking
// them (Stanza.Defer): before the stream reads its socket again (under TLS,
// from the readAhead, not before each record TLS already holds), and so
// before it can block. A link in the list twice is woken twice, at no cost.
//
// A stream that has caught up with its peer (its last read did not fill
// the room it had) has nothing else to do: it writes the links' batches
// itself when it can without waiting (Wake, link.writeInline), which
// saves handing them to a writer on another thread. One that is behind
// (more is likely waiting) wakes the writers and reads on, so that the
// writing runs beside the reading. Paced at 50 % of the maximum rate, in
// 3-4 alternating runs each (see the commit), the relay's p99 was:
//
//	                          260k/s   342k/s
//	writer always (before)    2.24 ms  3.96-4.07 ms
//	inline always             1.71     5.23
//	inline once caught up     1.88     3.47-4.34
//
// Handing over earlier, in the middle of what one read brought, was
// measured too and left out (260k/s, the medians of 8 alternating runs
// beside this rule). Waking the writer once 16 or 48 stanzas of a read
// were queued, or writing them inline once 32 or 96 were: a tick's first
// stanza arrived 0.03-0.15 ms sooner, its last 0.02-0.06 ms later, the
// relay used 2-7 % more CPU, and the p99 was 2.06-2.22 ms against 1.89 in
// one series and 2.44-2.53 against 2.61 in the other. So were writing
// inline whenever the stream had caught up in the last 2 ms (2.22 against
// 1.87) and waking the writer at every TLS record (2.79 against 2.13).
func (c *inConn) wakeLinks() {
	c.wakeAll(c.dr.ahead != nil && c.dr.ahead.behind)
}

// wakeAll wakes the links in c.asleep: their writers if behind, else
// through Wake.
func (c *inConn) wakeAll(behind bool) {
	for i, l := range c.asleep {
		if lk, ok := l.(*link); ok && behind {
			lk.signal()
		} else {
			l.Wake()
		}
		c.asleep[i] = nil
	}
	c.asleep = c.asleep[:0]
}

// elemBody writes an element read from an inbound stream for an outbound
// one: Raw, with the namespace and xml:lang fix-ups the new stream needs.
type elemBody struct{ el *wire.Element }

func (b *elemBody) AppendTo(dst []byte) []byte { return b.el.AppendTo(dst, langDefault) }

// deniedBy closes the stream with policy-violation if p no longer allows
// one of its pairs (hot reload), and reports whether it did.
func (c *inConn) deniedBy(p *policy.Policy) bool {
	c.mu.Lock()
	var denied *policy.StreamDecision
	for pair, ps := range c.pairs {
		st := policy.StreamState{Face: c.face, Dir: c.dirIn(), Remote: c.remoteOf(pair), TLS: c.tlsOn.Load(), Auth: ps.auth}
		if d := p.Stream(st); !d.Allowed {
			denied = &d
			c.audit(d.Record(time.Now(), st, c.localOf(pair)))
			break
		}
	}
	c.mu.Unlock()
	if denied == nil {
		return false
	}
	c.shutdown(c.s.explain(c.face, denied.Condition, denied.Rule, "federation is no longer allowed"))
	return true
}

// isPing reports whether an IQ is an XEP-0199 ping: its only child is
// <ping xmlns='urn:xmpp:ping'/>. The cheap test runs on every IQ; the parse
// only on candidates.
func isPing(raw []byte) bool {
	if !bytes.Contains(raw, []byte(nsPing)) {
		return false
	}
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth, children, ping := 0, 0, false
	for {
		tok, err := d.Token()
		if err != nil {
			return ping && children == 1
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				children++
				ping = t.Name.Space == nsPing && t.Name.Local == "ping"
			}
		case xml.EndElement:
			depth--
		}
	}
}

// isPingTo reports whether el is an XEP-0199 ping to the domain to itself
// (not to a user): the relay answers it, since it speaks as to on this hop
// (RFC 6120 §8.1.2.1: the server answers IQs to its bare domain).
func isPingTo(el *wire.Element, to string) bool {
	return el.Kind == wire.IQ && string(el.Type) == "get" && string(el.To) == to && el.Oversize == 0 && isPing(el.Raw)
}

// pingAnswer is the relay's result for a ping from from to its domain to,
// read on a stream of face, for the router to send back.
func pingAnswer(el *wire.Element, from, to string, face policy.Face, tls bool, shard uint32) *routing.Stanza {
	return &routing.Stanza{
		Kind: policy.IQ, Type: "result", From: string(el.To), To: string(el.From), ID: string(el.ID),
		FromDomain: to, ToDomain: from, Raw: pingResult(el), Face: face, TLS: tls, Received: time.Now(),
		Answer: true, Shard: shard,
	}
}

// pingResult is the answer to an XEP-0199 ping.
func pingResult(el *wire.Element) []byte {
	var b bytes.Buffer
	b.WriteString("<iq type='result' from='")
	xml.EscapeText(&b, el.To)
	b.WriteString("' to='")
	xml.EscapeText(&b, el.From)
	if el.ID != nil {
		b.WriteString("' id='")
		xml.EscapeText(&b, el.ID)
	}
	b.WriteString("'/>")
	return b.Bytes()
}

// stallBudget is a reader's budget of waits on stalled links
// (limits.stall_budget, refilling at a tenth of itself per second), kept by
// an inbound stream and by the reverse reader of a bidi outbound stream:
// while it has a whole limits.stall_timeout left, the next stanza may wait
// that long for room (maxWait), and a wait is charged to it (charge). The
// clock is read only once the budget ran low. Owner only.
type stallBudget struct {
	lim *rate.Limiter
	ok  bool
}

func (b *stallBudget) maxWait(stall, budget time.Duration) time.Duration {
	if b.ok {
		return stall
	}
	if b.lim == nil {
		ms := max(1, int(budget/time.Millisecond))
		b.lim = rate.NewLimiter(rate.Limit(float64(ms)/10), ms)
		b.ok = true
		return stall
	}
	if b.lim.Tokens() >= float64(stall/time.Millisecond) {
		b.ok = true
		return stall
	}
	return 0
}

func (b *stallBudget) charge(d, stall time.Duration) {
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	b.lim.ReserveN(time.Now(), min(ms, b.lim.Burst()))
	b.ok = b.lim.Tokens() >= float64(stall/time.Millisecond)
}
