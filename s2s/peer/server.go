package peer

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
	"sync/atomic"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// DefaultTimeout is a Server's Timeout when it is zero.
const DefaultTimeout = 5 * time.Second

// maxStanza bounds what a Server reads in one element, before and after
// authentication: above the relay's own default (wire.DefaultMaxStanza), so
// that a relay configured for big stanzas is not refused by its peer.
const maxStanza = 1 << 20

// alpn is the ALPN protocol of direct TLS (XEP-0368).
const alpn = "xmpp-server"

// ErrServerClosed is returned by a Server that is shutting down.
var ErrServerClosed = errors.New("peer: server closed")

// aLongTimeAgo is a deadline that makes a blocked read or write return at
// once.
var aLongTimeAgo = time.Unix(1, 0)

// Server is a small real XMPP server-to-server peer for one or more domains:
// RFC 6120 streams, STARTTLS and XEP-0220 dialback in all three roles.
//
//   - It accepts streams on the listeners given to Serve: it answers the
//     header, requires STARTTLS (Cert; or TLS from the first byte with
//     ServeDirectTLS), plays Receiving server for db:result
//     (checking the key by db:verify with the Authoritative server of the
//     sender domain, on a connection of its own) and Authoritative server
//     for db:verify of the keys it made with Secret.
//   - It accepts stanzas only for the domain pairs authorized on their
//     stream; anything else closes the stream with the stream error RFC 6120
//     prescribes (and, if Strict, is recorded as a violation).
//   - It opens authenticated streams of its own: Dial and DialDirectTLS (a
//     new stream each time), Connect and Send (one stream per domain pair, kept open).
//   - Stanzas go to Handler, or are kept (Received, Wait) and iq requests
//     answered.
//
// Set the exported fields before the Server is first used (Serve, Dial,
// Connect, Send) and leave them alone afterwards.
type Server struct {
	// Domains are the domains the Server hosts, in any case; dialback's
	// normal form (dialback.Domain) is applied.
	Domains []string
	// Hosts, if set, reports whether the Server also hosts a domain (given
	// in normal form) not in Domains: for many generated domains.
	Hosts func(domain string) bool
	// Authoritative returns host:port of the server of a domain the Server
	// does not host: the Authoritative server its db:verify for that
	// domain's keys goes to, and where Connect and Send open streams to the
	// domain (in DNS terms, the domain's SRV target). Nil, or "", means
	// none: keys of that domain are answered with remote-connection-failed.
	Authoritative func(domain string) string
	// Secret makes and checks the Server's dialback keys; nil means a
	// random one (DialbackSecret returns it).
	Secret *dialback.Secret
	// Cert is presented to the peers of accepted streams; nil means one
	// made by SelfSigned for Domains.
	Cert *tls.Certificate
	// Log receives what happens on the Server's streams (never keys or
	// stanza bodies); nil discards it.
	Log *slog.Logger
	// Timeout bounds each network step: connecting and negotiating a
	// stream, a TLS handshake, a dialback exchange, a write. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Strict records the protocol violations of the Server's peers
	// (Violations): a stanza for a pair not authorized on its stream,
	// dialback before TLS, an element the framer refuses, and so on. The
	// stream is closed with the stream error either way. A test turns it
	// on and fails on any violation.
	Strict bool
	// Handler, if set, is called on the reading goroutine of a stream for
	// every stanza received for a pair authorized on it, with the stream
	// (nil for a stanza that came on one of the Server's outbound streams)
	// and the framer's element, valid only during the call. The Server
	// neither copies nor allocates on this path. Handler must not block
	// for long: the stream reads nothing meanwhile.
	//
	// When Handler is nil, the Server keeps a copy of each stanza
	// (Received, Wait), answers XEP-0199 pings to the domains it hosts and
	// their users with a result, and other iq requests with
	// service-unavailable, as a server whose users are offline would.
	// A Handler that wants the copies without the answers calls Keep.
	Handler func(in *Inbound, el *wire.Element)

	once     sync.Once
	initErr  error
	maxBytes atomic.Int64
	domains  map[string]bool
	secret   *dialback.Secret
	tls      *tls.Config
	log      *slog.Logger
	timeout  time.Duration
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc

	refuseVerify atomic.Bool
	cutResults   atomic.Int64 // how many more db:result requests reset their connection
	sm           atomic.Bool  // offer XEP-0198 on accepted streams
	bidi         atomic.Bool
	refuseMux    atomic.Value // of string: how a db:result for another pair on an authenticated stream is answered ("": accepted)
	accepted     atomic.Int64 // connections accepted

	dialMu sync.Mutex // serialises Connect, so that a pair gets one stream

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // every connection, to break them all
	inbound   map[*Inbound]struct{}
	outbound  map[*Outbound]struct{}
	streams   map[dialback.Pair]*Outbound // Connect's streams
	wg        sync.WaitGroup

	records
}

// init checks the configuration and makes the secret and certificate on
// first use.
func (s *Server) init() error {
	s.once.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]struct{}{}
		s.inbound = map[*Inbound]struct{}{}
		s.outbound = map[*Outbound]struct{}{}
		s.streams = map[dialback.Pair]*Outbound{}
		s.changed = make(chan struct{})
		s.log, s.timeout = s.Log, s.Timeout
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		if s.timeout <= 0 {
			s.timeout = DefaultTimeout
		}
		s.domains = map[string]bool{}
		for _, d := range s.Domains {
			n, err := dialback.Domain(d)
			if err != nil {
				s.initErr = fmt.Errorf("peer: %w", err)
				return
			}
			s.domains[n] = true
		}
		if s.secret = s.Secret; s.secret == nil {
			var b [32]byte
			rand.Read(b[:])
			s.secret, _ = dialback.NewSecret([]byte(hex.EncodeToString(b[:])))
		}
		cert := s.Cert
		if cert == nil {
			c, err := SelfSigned(s.Domains...)
			if err != nil {
				s.initErr = fmt.Errorf("peer: certificate: %w", err)
				return
			}
			cert = &c
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{alpn}}
	})
	return s.initErr
}

// hosts reports whether the Server hosts domain, in dialback's normal form:
// the Serves of its dialback streams.
func (s *Server) hosts(domain string) bool {
	return s.domains[domain] || s.Hosts != nil && s.Hosts(domain)
}

// DialbackSecret returns the secret the Server makes its keys with: Secret,
// or the random one it made.
func (s *Server) DialbackSecret() *dialback.Secret {
	s.init()
	return s.secret
}

// Certificate returns the certificate the Server presents (Cert, or the
// self-signed one it made).
func (s *Server) Certificate() tls.Certificate {
	s.init()
	return s.tls.Certificates[0]
}

// SetMaxBytes makes the Server advertise n as the XEP-0478 max-bytes of
// the streams it accepts from now on (0: none); it does not enforce it.
func (s *Server) SetMaxBytes(n int) { s.maxBytes.Store(int64(n)) }

// SetStreamManagement makes the Server offer XEP-0198 stream management
// (urn:xmpp:sm:3, without resumption) on the streams it accepts from now
// on, in their features after TLS: a peer that enables it gets every
// acknowledgement request answered with the count of stanzas received.
func (s *Server) SetStreamManagement(on bool) { s.sm.Store(on) }

// Lose makes the streams the Server has accepted so far lose what arrives
// from now on, as a connection whose packets stop getting through would:
// their stanzas are neither kept nor counted, acknowledgement requests go
// unanswered. Cut then closes them, as the network's failure would be
// noticed at last; streams accepted later are not affected.
func (s *Server) Lose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for in := range s.inbound {
		in.lost.Store(true)
	}
}

// Cut closes the connections of the streams the Server accepted that Lose
// marked, without a closing element: a connection that died.
func (s *Server) Cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for in := range s.inbound {
		if in.lost.Load() {
			in.raw.Close()
		}
	}
}

// SetBidi makes the Server do XEP-0288: offer bidi on its accepted streams
// once TLS is up (a peer that asks may then be sent stanzas on them,
// Inbound.WriteRaw), and ask for it on the streams it opens to a peer that
// offers it, taking the peer's stanzas on them.
func (s *Server) SetBidi(on bool) { s.bidi.Store(on) }

// InboundFor returns an accepted stream on which the peer authenticated as
// from for the hosted domain to, or nil; Inbound.Bidi says whether the peer
// asked for bidi on it.
func (s *Server) InboundFor(from, to string) *Inbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := string(appendPairKey(nil, from, to))
	for in := range s.inbound {
		in.mu.Lock()
		_, ok := in.pairs[key]
		in.mu.Unlock()
		if ok {
			return in
		}
	}
	return nil
}

// SetRefuseVerify makes the Server answer every db:verify with
// type='invalid' while on is true, as if the keys were forged: a peer that
// refuses a relay's dialback.
func (s *Server) SetRefuseVerify(on bool) { s.refuseVerify.Store(on) }

// SetCutResults makes the Server reset the connection (TCP RST, no closing
// element) of the next n streams on which a peer asks it to verify a
// db:result, instead of answering: a server that drops a connection while
// the peer authenticates.
func (s *Server) SetCutResults(n int) { s.cutResults.Store(int64(n)) }

// SetRefuseMultiplex makes the Server refuse, on the streams it accepts, a
// db:result for a further pair once a pair is authorized on the stream
// (XEP-0220 §4.3 multiplexing), as how says: "error" answers it with
// type='error' and <not-allowed/>, "invalid" with type='invalid', "ignore"
// not at all; "" accepts it again (the default, as Prosody and ejabberd do).
func (s *Server) SetRefuseMultiplex(how string) { s.refuseMux.Store(how) }

// Accepted returns how many connections the Server has accepted.
func (s *Server) Accepted() int { return int(s.accepted.Load()) }

// Serve accepts streams on l until Shutdown or Close, and returns
// ErrServerClosed then. It closes l.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeDirectTLS is Serve for streams that start with TLS instead of
// negotiating STARTTLS (XEP-0368, ALPN xmpp-server).
func (s *Server) ServeDirectTLS(l net.Listener) error { return s.serve(l, true) }

func (s *Server) serve(l net.Listener, direct bool) error {
	if err := s.init(); err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.accepted.Add(1)
		in := newInbound(s, c, direct)
		if !s.goTracked(in.serve, c, in) {
			c.Close()
			return ErrServerClosed
		}
	}
}

// goTracked runs fn on a goroutine Close waits for, registering c and in
// (either may be nil) until fn returns; it reports false, and runs nothing,
// once the Server is closing.
func (s *Server) goTracked(fn func(), c net.Conn, in *Inbound) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if c != nil {
		s.conns[c] = struct{}{}
	}
	if in != nil {
		s.inbound[in] = struct{}{}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			delete(s.inbound, in)
			s.mu.Unlock()
		}()
		fn()
	}()
	return true
}

// track registers a connection, so that Close can break it; it reports
// false once the Server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Connect returns the Server's stream from the hosted domain from to the
// domain to, opening it with Dial at Authoritative(to) unless one is open.
func (s *Server) Connect(ctx context.Context, from, to string) (*Outbound, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	p, err := normalPair(from, to)
	if err != nil {
		return nil, err
	}
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	s.mu.Lock()
	o := s.streams[p]
	s.mu.Unlock()
	if o != nil && !o.ended() {
		return o, nil
	}
	addr := ""
	if s.Authoritative != nil {
		addr = s.Authoritative(p.To)
	}
	if addr == "" {
		return nil, fmt.Errorf("peer: stream %s: no address for %s", pairString(p), p.To)
	}
	if o, err = s.Dial(ctx, addr, p.From, p.To); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.streams[p] = o
	s.mu.Unlock()
	return o, nil
}

// Send writes st on the Server's stream from the domain of st.From, which
// it must host, to the domain of st.To, opening it first (Connect) if
// needed.
func (s *Server) Send(ctx context.Context, st Stanza) error {
	if err := s.init(); err != nil {
		return err
	}
	from, to := DomainOf(st.From), DomainOf(st.To)
	if from == "" || !s.hosts(from) {
		return fmt.Errorf("peer: cannot send from %q", st.From)
	}
	if to == "" {
		return fmt.Errorf("peer: cannot send to %q", st.To)
	}
	o, err := s.Connect(ctx, from, to)
	if err != nil {
		return err
	}
	return o.Send(ctx, st)
}

// serveStanza is what a Server without Handler does with a stanza: keep it,
// and answer an iq request.
func (s *Server) serveStanza(in *Inbound, el *wire.Element) {
	st := s.keep(el)
	if st.Kind != wire.IQ || (st.Type != "get" && st.Type != "set") {
		return
	}
	answer := iqError(st, "service-unavailable")
	if st.IsPing() {
		answer = result(st)
	}
	// Answering may mean opening a stream; the stream the request came on
	// must keep reading meanwhile.
	s.goTracked(func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		defer cancel()
		if err := s.Send(ctx, answer); err != nil {
			s.log.Warn("cannot answer iq", "from", st.From, "id", st.ID, "err", err)
		}
	}, nil, nil)
}

// Shutdown ends the Server gracefully: it stops accepting, closes every
// stream with </stream:stream> and waits for the peers to close theirs;
// when ctx ends first it closes what is left (Close) and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.init() != nil {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	var outs []*Outbound
	for o := range s.outbound {
		outs = append(outs, o)
	}
	var ins []*Inbound
	for in := range s.inbound {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	for _, o := range outs {
		o.closeStream()
	}
	for _, in := range ins {
		in.close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.Close()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close stops the Server at once: listeners and connections are closed, and
// it waits for its goroutines. It must not be called from Handler.
func (s *Server) Close() error {
	if s.init() != nil {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// normalPair returns (from, to) in dialback's normal form.
func normalPair(from, to string) (dialback.Pair, error) {
	f, err := dialback.Domain(from)
	if err != nil {
		return dialback.Pair{}, fmt.Errorf("peer: %w", err)
	}
	t, err := dialback.Domain(to)
	if err != nil {
		return dialback.Pair{}, fmt.Errorf("peer: %w", err)
	}
	return dialback.Pair{From: f, To: t}, nil
}
