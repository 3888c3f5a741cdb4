package s2s

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s/certs"
	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/wire"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("s2s: server closed")

// Routing is the router as the stream layer sees it: where the stanzas read
// go, where links report what became of those they took, and the current
// domain table and policy. *routing.Router implements it; package routing
// never sees this package.
type Routing interface {
	// Route sends a stanza on its way (routing.Router.Route); it keeps
	// nothing of st.
	Route(st *routing.Stanza)
	// Settle reports the fate of stanzas a link took, or of the link
	// (routing.Router.Settle).
	Settle(f routing.Fate, pair routing.Pair, sts []routing.Stanza, err error)
	// SettleTally is Settle for a batch the link counted as it took it
	// (routing.Router.SettleTally).
	SettleTally(f routing.Fate, pair routing.Pair, sts []routing.Stanza, t *routing.Tally)
	// Reachable says an inbound stream from domain authenticated: the
	// domain is up.
	Reachable(domain string)
	Table() *routing.Table
	Policy() *policy.Policy
}

// Server is fedrelay's S2S engine: it accepts streams on the listeners of
// both faces, opens outbound streams per domain pair, negotiates TLS, SASL
// EXTERNAL and Server Dialback on them, and hands authenticated stanzas to
// the Router. It implements routing.Dialer.
//
// Fill the exported fields, then call Serve for each listener. Fields must
// not change after the first Serve.
type Server struct {
	// Log receives the server's log lines. Required.
	Log *slog.Logger
	// Router routes the stanzas read from authenticated streams, and
	// learns from the links what became of them. Required.
	Router Routing
	// Secret makes and checks dialback keys. Required.
	Secret *dialback.Secret
	// Certs supplies certificates by SNI and for outbound streams; Verifier
	// checks peer certificates. Required.
	Certs    *certs.Store
	Verifier *certs.Verifier
	// Dialer resolves and connects remote domains (public DNS, overrides).
	// Required.
	Dialer *resolve.Dialer
	// DANE, when not nil, authenticates remote domains whose certificates
	// do not verify by their TLSA records (dns.dnssec not off).
	DANE DANE
	// ExternalDomains are the local domains whose certificates a remote
	// peer can verify (configured cert_file): for them SASL EXTERNAL is
	// tried on outbound streams.
	ExternalDomains map[string]bool
	// Limits and TLS are the configuration's sections.
	Limits config.Limits
	TLS    config.TLS
	// Audit receives stream-level policy records; nil discards them.
	Audit func(policy.Record)
	// Bidi offers XEP-0288 bidirectional streams on inbound streams and
	// asks for them on outbound ones (federation.bidi; bidi.go). False:
	// one stream per direction.
	Bidi bool

	mu            sync.Mutex
	closing       bool
	listeners     map[net.Listener]struct{}
	conns         map[*inConn]struct{}
	perIP         map[netip.Addr]int // federation-face connections by peer address
	internalConns int                // internal-face connections
	// preauth lists the federation-face connections not authenticated
	// yet, oldest first: at limits.max_streams the oldest is closed to
	// admit a new one, so that a flood of idle connections cannot keep
	// new federation streams out. evicting counts those closed so but
	// not finished yet (they are still in conns).
	preauth  list.List
	evicting int
	// connRates holds the token bucket of new federation-face connections
	// of the most recent addresses (guarded by mu).
	connRates *lru.Cache[netip.Addr, *rate.Limiter]

	vmu       sync.Mutex
	verifying int                // dialback verifications in flight
	verifyIP  map[netip.Addr]int // ...by the address of the stream that asked

	// The links are looked up for every stanza routed, so they have their
	// own lock, read-mostly, apart from mu. Lock order: mu, then lmu.
	lmu         sync.RWMutex
	links       map[routing.Pair]*link
	gates       map[string]*routeGate // by internal route address
	linksShut   bool                  // no new links (set with lmu held)
	remoteLinks int                   // links in links towards remote domains (lmu)
	linkRate    *rate.Limiter         // new links towards remote domains (lmu)
	// bidiIn are the inbound streams whose peers asked for bidi, and
	// bidiRoutes the pairs the relay may send over one of them (lmu;
	// bidi.go).
	bidiIn     map[*inConn]*bidiIn
	bidiRoutes map[routing.Pair]*bidiRoute

	// domainRates holds the token bucket of new outbound streams towards
	// each of the most recent remote domains (guarded by dmu).
	dmu         sync.Mutex
	domainRates *lru.Cache[string, *rate.Limiter]
	wg          sync.WaitGroup // every goroutine the server starts

	mux muxTable // the outbound streams several pairs share (multiplex.go)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	once   sync.Once

	stats Stats

	metrics Metrics // labelled counts (metrics.go)

	tlsConfigs [4]atomic.Pointer[tls.Config] // serverTLS's, by face and direct TLS
}

// Stats counts streams.
type Stats struct {
	InboundOpen   atomic.Int64
	InboundTotal  atomic.Int64
	OutboundOpen  atomic.Int64
	OutboundTotal atomic.Int64
	// DialbackIgnored counts dialback elements dropped as unsolicited or
	// repeated (XEP-0220 §3.1).
	DialbackIgnored atomic.Int64
	// InboundRefused counts connections closed at once because of
	// limits.max_streams, max_streams_per_ip or max_internal_streams.
	InboundRefused atomic.Int64
	// VerificationsRefused counts db:result requests answered at once with
	// resource-constraint because limits.verifications or
	// verifications_per_ip were reached. (Those beyond
	// verifications_per_stream get the same answer from the stream's
	// dialback state, uncounted.)
	VerificationsRefused atomic.Int64
	// InboundEvicted counts federation-face connections not authenticated
	// yet that were closed to admit a new one at limits.max_streams.
	InboundEvicted atomic.Int64
	// LinksRefused counts outbound streams to remote domains not started
	// because of limits.max_links or limits.link_rate.
	LinksRefused atomic.Int64
	// BidiInbound counts the inbound streams open whose peers asked for
	// XEP-0288 bidi; BidiLinks the links open that ride such a stream (the
	// relay's stanzas to the peer's domain, with no connection of their
	// own). Server.BidiOutbound counts the other way.
	BidiInbound atomic.Int64
	BidiLinks   atomic.Int64
	// ReverseRefused counts outbound streams closed because the peer sent
	// a stanza on them without bidi, or one bidi does not allow (a pair
	// other than the reverse of the link's, bad addressing, too many
	// oversized).
	ReverseRefused atomic.Int64
	// Multiplexed counts links whose pair was authenticated on, and
	// carried by, another pair's outbound stream (limits.multiplex);
	// MultiplexRefused those whose peer refused it, which then opened a
	// stream of their own.
	Multiplexed      atomic.Int64
	MultiplexRefused atomic.Int64
}

// Stats returns the server's stream counters.
func (s *Server) Stats() *Stats { return &s.stats }

func (s *Server) init() {
	s.once.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*inConn]struct{}{}
		s.perIP = map[netip.Addr]int{}
		s.links = map[routing.Pair]*link{}
		s.gates = map[string]*routeGate{}
		s.bidiIn = map[*inConn]*bidiIn{}
		s.bidiRoutes = map[routing.Pair]*bidiRoute{}
		if s.Audit == nil {
			s.Audit = func(policy.Record) {}
		}
	})
}

// Serve accepts streams on l for face until Shutdown or Close. With
// directTLS the connections start with a TLS handshake (XEP-0368, ALPN
// xmpp-server); otherwise they negotiate STARTTLS (RFC 6120 §5). It always
// returns a non-nil error: ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(l net.Listener, face policy.Face, directTLS bool) error {
	s.init()
	s.mu.Lock()
	if s.closing {
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
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Log.Warn("accept failed; retrying", "listener", l.Addr().String(), "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ic, err := s.newInConn(quietSocket(c), face, directTLS)
		if errors.Is(err, ErrServerClosed) {
			c.Close()
			return err
		}
		if err != nil {
			// Refused before a byte is read: a flood of connections costs
			// an accept and a close, nothing more.
			s.stats.InboundRefused.Add(1)
			s.Log.Debug("connection refused", "face", face.String(), "peer", c.RemoteAddr().String(), "err", err)
			c.Close()
			continue
		}
		go ic.serve()
	}
}

// serves reports whether face speaks as domain: the internal domains on the
// federation face, every other domain on the internal face.
func (s *Server) serves(face policy.Face, domain string) bool {
	if isIPLiteral(domain) {
		return false // see isIPLiteral
	}
	internal := s.Router.Table().IsInternal(domain)
	if face == policy.Internal {
		return !internal
	}
	return internal
}

// peerAllowed reports whether a peer on face may authenticate as domain:
// remote domains on the federation face, internal domains on the internal
// face (never an open relay).
func (s *Server) peerAllowed(face policy.Face, domain string) bool {
	return !isIPLiteral(domain) && !s.serves(face, domain)
}

// connectAllowed takes a token from ip's bucket of new federation-face
// connections (limits.connect_rate_per_ip, connect_burst_per_ip). s.mu is
// held.
func (s *Server) connectAllowed(ip netip.Addr) bool {
	if s.connRates == nil {
		s.connRates, _ = lru.New[netip.Addr, *rate.Limiter](1 << 16)
	}
	l, ok := s.connRates.Get(ip)
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.Limits.ConnectRatePerIP), max(s.Limits.ConnectBurstPerIP, 1))
		s.connRates.Add(ip, l)
	}
	return l.Allow()
}

// domainAllowed takes a token from domain's bucket of new outbound streams
// (limits.link_rate_per_domain, link_burst_per_domain): links and dialback
// verifications alike, so that no stranger can make the relay hammer one
// victim, whatever else caps allow.
func (s *Server) domainAllowed(domain string) bool {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.domainRates == nil {
		s.domainRates, _ = lru.New[string, *rate.Limiter](1 << 16)
	}
	l, ok := s.domainRates.Get(domain)
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.Limits.LinkRatePerDomain), max(s.Limits.LinkBurstPerDomain, 1))
		s.domainRates.Add(domain, l)
	}
	return l.Allow()
}

// verifyStart takes a place for a dialback verification of domain asked by
// a stream from ip, within limits.verifications and verifications_per_ip,
// and a token of domain's bucket (limits.link_rate_per_domain).
func (s *Server) verifyStart(ip netip.Addr, domain string) bool {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	if s.verifying >= s.Limits.Verifications || s.verifyIP[ip] >= s.Limits.VerificationsPerIP {
		return false
	}
	if !s.domainAllowed(domain) {
		return false
	}
	if s.verifyIP == nil {
		s.verifyIP = map[netip.Addr]int{}
	}
	s.verifying++
	s.verifyIP[ip]++
	return true
}

// verifyEnd gives the place back.
func (s *Server) verifyEnd(ip netip.Addr) {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	s.verifying--
	if s.verifyIP[ip] <= 1 {
		delete(s.verifyIP, ip)
	} else {
		s.verifyIP[ip]--
	}
}

// isIPLiteral reports whether domain is an IP address (RFC 7622 §3.2 allows
// one as a domainpart). The relay does not federate with such domains in
// either direction: federating would mean connecting wherever a stranger's
// db:result or an internal server's stanza says, for instance to a service
// inside the organisation's network.
func isIPLiteral(domain string) bool {
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(domain, "["), "]"))
	return err == nil
}

// faceOf returns the face an outbound pair belongs to: stanzas from an
// internal domain leave through the federation face.
func (s *Server) faceOf(p routing.Pair) policy.Face {
	if s.Router.Table().IsInternal(p.From) {
		return policy.Federation
	}
	return policy.Internal
}

// Link implements routing.Dialer: one outbound stream per domain pair.
func (s *Server) Link(pair routing.Pair, admit func(to string) (func(error), error)) (routing.Link, error) {
	s.init()
	s.lmu.RLock()
	l, ok := s.links[pair]
	s.lmu.RUnlock()
	if ok {
		return l, nil
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if l, ok := s.links[pair]; ok {
		return l, nil
	}
	if s.linksShut {
		return nil, routing.Timeout(ErrServerClosed)
	}
	if r := s.bidiRoutes[pair]; r != nil {
		// The peer's own stream carries the pair (XEP-0288): no
		// connection to open, so neither the breaker nor the link caps
		// are asked.
		return s.startBidiLink(pair, r), nil
	}
	// Links to remote domains are bounded in number and in how fast they
	// start (the internal routes have their gates): what strangers and
	// the organisation's servers send can never make the relay open
	// connections without end.
	remote := !s.Router.Table().IsInternal(pair.To)
	if remote {
		if s.remoteLinks >= s.Limits.MaxLinks {
			s.stats.LinksRefused.Add(1)
			return nil, &routing.DeliveryError{Condition: stanza.ResourceConstraint, Err: errTooManyLinks}
		}
		if s.linkRate == nil {
			s.linkRate = rate.NewLimiter(rate.Limit(s.Limits.LinkRate), max(s.Limits.LinkBurst, 1))
		}
		if !s.linkRate.Allow() {
			s.stats.LinksRefused.Add(1)
			return nil, &routing.DeliveryError{Condition: stanza.ResourceConstraint, Err: errLinkRate}
		}
		if !s.domainAllowed(pair.To) {
			s.stats.LinksRefused.Add(1)
			return nil, &routing.DeliveryError{Condition: stanza.ResourceConstraint, Err: errDomainRate}
		}
	}
	report, err := admit(pair.To)
	if err != nil {
		return nil, err
	}
	l = s.newLink(pair, report)
	l.remote = remote
	if remote {
		s.remoteLinks++
	}
	s.links[pair] = l
	s.wg.Add(1)
	go l.run()
	return l, nil
}

// removeLink forgets l if it is still the link of its pair.
func (s *Server) removeLink(l *link) {
	s.lmu.Lock()
	if s.links[l.pair] == l {
		delete(s.links, l.pair)
		s.metrics.retire(l)
		if l.remote {
			s.remoteLinks--
		}
	}
	s.lmu.Unlock()
	s.mux.forget(l) // new pairs no longer ride its stream
}

// shutLinks stops new links from starting (they would race with the
// WaitGroup's Wait) and returns the current ones.
func (s *Server) shutLinks() []*link {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.linksShut = true
	out := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		out = append(out, l)
	}
	return out
}

// Shutdown stops accepting, sends system-shutdown on every inbound stream
// (which goes on being read for the RFC 6120 §4.4 linger), lets outbound
// links write what they hold and close their streams, and waits for every
// connection to end. At ctx's deadline it closes every connection left, as
// Close does — no peer can hold it — bounces what was not written, and
// returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	// Links may still start while the inbound streams linger: a stanza
	// they read for a pair without a link needs one (after a binary
	// upgrade, the new process has the listeners, and this one must not
	// bounce what it still reads). The links are shut below, once the
	// inbound streams are gone.
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.shutdown(withText(stream.SystemShutdown, "the relay is shutting down"))
	}
	s.mu.Unlock()
	// Inbound streams first: they linger to route what their peers had
	// already sent, which the links must still carry. Then the links write
	// what they hold and close.
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, l := range s.shutLinks() {
		l.drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.killAll()
		<-done
		return ctx.Err()
	}
}

// Close closes every listener and connection at once; what the links had
// not written is bounced (to streams that are closing too, so mostly
// counted as dropped).
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.killAll()
	s.wg.Wait()
	return nil
}

// killAll cancels everything the server does and closes every connection
// under its owner's feet.
func (s *Server) killAll() {
	links := s.shutLinks()
	s.cancel()
	s.mu.Lock()
	conns := make([]*inConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
	for _, l := range links {
		l.kill()
	}
}

// serverTLS returns the TLS configuration for inbound streams of a face.
// The federation face presents only the internal domains' certificates; the
// internal face also makes certificates on demand for the remote domains
// the internal servers think they reach. Every stream of a face shares one
// (each tls.Conn keeps its configuration for its whole life): the
// certificates are looked up at each handshake, so renewed ones are used.
func (s *Server) serverTLS(face policy.Face, directTLS bool) *tls.Config {
	i := 0
	if face == policy.Federation {
		i = 2
	}
	if directTLS {
		i++
	}
	if cfg := s.tlsConfigs[i].Load(); cfg != nil {
		return cfg
	}
	var cfg *tls.Config
	if face == policy.Federation {
		cfg = s.Certs.ConfiguredOnly().ServerConfig(directTLS)
	} else {
		cfg = s.Certs.ServerConfig(directTLS)
	}
	if !s.tlsConfigs[i].CompareAndSwap(nil, cfg) {
		cfg = s.tlsConfigs[i].Load()
	}
	return cfg
}

// limits returns the framer limits from the configuration.
// advertisedMaxBytes is the max-bytes the relay advertises (XEP-0478):
// the size beyond which it closes a stream, not limits.max_stanza_bytes.
// Below it, a stanza over max_stanza_bytes is skipped without being kept
// and bounced to its sender with an error naming its size, and the stream
// goes on. A peer that honours the advertised limit refuses larger
// stanzas itself, and Prosody 13 (13.0.1) does so without telling the
// sender (its mod_s2s has a TODO there): advertising max_stanza_bytes made
// such stanzas vanish, advertising this makes them come back as errors.
func (s *Server) advertisedMaxBytes() int {
	return max(s.limits().MaxSkip, s.Limits.MaxStanzaBytes)
}

func (s *Server) limits() wire.Limits {
	return wire.Limits{MaxStanza: s.Limits.MaxStanzaBytes, MaxStanzaPreAuth: s.Limits.MaxPreauthBytes,
		MaxSkip: wire.RecommendedMaxSkip}
}

// CloseDenied closes the streams of remote domains the current policy no
// longer allows, with policy-violation (hot reload). It returns how many
// streams it closed.
func (s *Server) CloseDenied() int {
	p := s.Router.Policy()
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.deniedBy(p) {
			n++
		}
	}
	s.lmu.RLock()
	defer s.lmu.RUnlock()
	for _, l := range s.links {
		if l.deniedBy(p) {
			n++
		}
	}
	return n
}

// peerAddr is the IP address a connection comes from.
func peerAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

var (
	errTooManyStreams  = errors.New("limits.max_streams reached")
	errTooManyInternal = errors.New("limits.max_internal_streams reached")
	errConnectRate     = errors.New("limits.connect_rate_per_ip exceeded")
	errTooManyLinks    = errors.New("too many outbound streams (limits.max_links)")
	errLinkRate        = errors.New("too many new outbound streams (limits.link_rate)")
	errDomainRate      = errors.New("too many new outbound streams to this domain (limits.link_rate_per_domain)")
	errTooManyFromIP   = errors.New("limits.max_streams_per_ip reached")
)
