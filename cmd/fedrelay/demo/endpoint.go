package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/fedrelay/fedrelay/dialback"
)

// DefaultTimeout is the Endpoint's Timeout when it is zero.
const DefaultTimeout = 5 * time.Second

// ErrClosed is returned by an Endpoint that is shutting down.
var ErrClosed = errors.New("demo endpoint: closed")

// aLongTimeAgo is a deadline that makes a blocked read or write return at
// once.
var aLongTimeAgo = time.Unix(1, 0)

// Endpoint is a small XMPP server for one domain that plays the
// organisation's internal server behind a relay, speaking real S2S
// (RFC 6120 streams, STARTTLS, XEP-0220 dialback) with the relay's internal
// face, which stands for every remote domain:
//
//   - It accepts the relay's streams on the listener given to Serve: it
//     answers the header, requires STARTTLS (a self-signed certificate of
//     its own), checks the relay's db:result keys by a db:verify to the
//     relay (the Authoritative server of every remote domain) and answers
//     the relay's db:verify for keys it made itself.
//   - It opens streams of its own to the relay for each remote domain
//     (Connect, Send): STARTTLS, then a db:result with a key made from its
//     own secret, and it waits for type='valid'.
//   - It keeps every stanza it receives (Wait), answers XEP-0199 pings to
//     its domain and its users, and refuses other iq requests with
//     service-unavailable, as a server whose users are offline would.
//
// Set the exported fields before calling Serve or Connect and leave them
// alone afterwards.
type Endpoint struct {
	// Domain is the XMPP domain the endpoint hosts. Required.
	Domain string
	// Relay is host:port of the relay's internal face: where the endpoint
	// opens its streams, and the Authoritative server it asks about every
	// other domain. Required.
	Relay string
	// Log receives what happens on the endpoint's streams (never keys or
	// stanza bodies); nil discards it.
	Log *slog.Logger
	// Timeout bounds each network step: connecting, TLS, waiting for a
	// dialback answer, writing. Zero means DefaultTimeout.
	Timeout time.Duration

	once    sync.Once
	err     error
	domain  string // Domain in dialback's normal form
	log     *slog.Logger
	timeout time.Duration
	secret  *dialback.Secret
	cert    tls.Certificate
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc

	dialMu sync.Mutex // serialises opening streams, so that one pair gets one stream

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // every connection, to close them all
	in        map[*inStream]struct{}
	out       map[string]*outStream // by remote domain
	received  []Stanza
	changed   chan struct{} // closed and replaced whenever received grows
	wg        sync.WaitGroup
}

// init makes the endpoint's dialback secret and certificate on first use.
func (e *Endpoint) init() error {
	e.once.Do(func() {
		e.ctx, e.cancel = context.WithCancel(context.Background())
		e.listeners = map[net.Listener]struct{}{}
		e.conns = map[net.Conn]struct{}{}
		e.in = map[*inStream]struct{}{}
		e.out = map[string]*outStream{}
		e.changed = make(chan struct{})
		e.log, e.timeout = e.Log, e.Timeout
		if e.log == nil {
			e.log = slog.New(slog.DiscardHandler)
		}
		if e.timeout <= 0 {
			e.timeout = DefaultTimeout
		}
		var err error
		if e.domain, err = dialback.Domain(e.Domain); err != nil {
			e.err = fmt.Errorf("demo endpoint: %w", err)
			return
		}
		var b [32]byte
		rand.Read(b[:])
		if e.secret, err = dialback.NewSecret([]byte(hex.EncodeToString(b[:]))); err != nil {
			e.err = fmt.Errorf("demo endpoint %s: %w", e.domain, err)
			return
		}
		if e.cert, err = selfSigned(e.domain); err != nil {
			e.err = fmt.Errorf("demo endpoint %s: certificate: %w", e.domain, err)
		}
	})
	return e.err
}

// hosts reports whether the endpoint serves domain (in dialback's normal
// form): the Serves of its dialback streams.
func (e *Endpoint) hosts(domain string) bool { return domain == e.domain }

// Serve accepts the relay's streams on l until Shutdown or Close, and
// returns ErrClosed then. It closes l.
func (e *Endpoint) Serve(l net.Listener) error {
	if err := e.init(); err != nil {
		l.Close()
		return err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	e.listeners[l] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.listeners, l)
		e.mu.Unlock()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if e.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		log := e.log.With("dir", "in", "peer", c.RemoteAddr().String())
		s := &inStream{e: e, raw: c, conn: c, base: log, log: log}
		if !e.goTracked(func() { s.serve() }, c, s) {
			c.Close()
			return ErrClosed
		}
	}
}

// goTracked runs fn on a goroutine Close waits for, registering c and s
// (either may be nil) until fn returns; it reports false, and runs
// nothing, once the endpoint is closing.
func (e *Endpoint) goTracked(fn func(), c net.Conn, s *inStream) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	if c != nil {
		e.conns[c] = struct{}{}
	}
	if s != nil {
		e.in[s] = struct{}{}
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer func() {
			e.mu.Lock()
			delete(e.conns, c)
			delete(e.in, s)
			e.mu.Unlock()
		}()
		fn()
	}()
	return true
}

// track registers a connection the calling goroutine owns, so that Close
// can break it; it reports false once the endpoint is closing.
func (e *Endpoint) track(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.conns[c] = struct{}{}
	return true
}

func (e *Endpoint) untrack(c net.Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
}

func (e *Endpoint) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// deliver keeps a stanza received from the relay and answers it if the
// endpoint's server would.
func (e *Endpoint) deliver(st Stanza) {
	e.mu.Lock()
	e.received = append(e.received, st)
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if st.Kind != "iq" || (st.Type != "get" && st.Type != "set") {
		return
	}
	answer := iqError(st, "service-unavailable")
	if st.IsPing() {
		answer = result(st)
	}
	// Answering may mean opening a stream; the stream the request came on
	// must keep reading meanwhile.
	e.goTracked(func() {
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		defer cancel()
		if err := e.Send(ctx, answer); err != nil {
			e.log.Warn("cannot answer iq", "from", st.From, "id", st.ID, "err", err)
		}
	}, nil, nil)
}

// Received returns every stanza received so far, in order of arrival.
func (e *Endpoint) Received() []Stanza {
	if e.init() != nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Stanza(nil), e.received...)
}

// Wait returns the first stanza received (before or after the call) that
// satisfies match, or ctx's error.
func (e *Endpoint) Wait(ctx context.Context, match func(Stanza) bool) (Stanza, error) {
	if err := e.init(); err != nil {
		return Stanza{}, err
	}
	seen := 0
	for {
		e.mu.Lock()
		for _, st := range e.received[seen:] {
			if match(st) {
				e.mu.Unlock()
				return st, nil
			}
		}
		seen = len(e.received)
		changed := e.changed
		e.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Stanza{}, ctx.Err()
		}
	}
}

// Connect opens a stream from the endpoint's domain to remote at the relay
// and authenticates it by dialback, unless one is open already.
func (e *Endpoint) Connect(ctx context.Context, remote string) error {
	_, err := e.stream(ctx, remote)
	return err
}

// Send writes st on the endpoint's stream to the domain of st.To, opening
// it first (Connect) if needed. st.From must be at the endpoint's domain.
func (e *Endpoint) Send(ctx context.Context, st Stanza) error {
	if err := e.init(); err != nil {
		return err
	}
	if d := domainOf(st.From); d != e.domain {
		return fmt.Errorf("demo endpoint %s: cannot send from %q", e.domain, st.From)
	}
	to := domainOf(st.To)
	if to == "" {
		return fmt.Errorf("demo endpoint %s: cannot send to %q", e.domain, st.To)
	}
	s, err := e.stream(ctx, to)
	if err != nil {
		return err
	}
	return s.send(ctx, st)
}

// stream returns the authenticated stream to remote, opening one if there
// is none or the last one ended.
func (e *Endpoint) stream(ctx context.Context, remote string) (*outStream, error) {
	if err := e.init(); err != nil {
		return nil, err
	}
	remote, err := dialback.Domain(remote)
	if err != nil {
		return nil, fmt.Errorf("demo endpoint %s: %w", e.domain, err)
	}
	e.dialMu.Lock()
	defer e.dialMu.Unlock()
	e.mu.Lock()
	s := e.out[remote]
	e.mu.Unlock()
	if s != nil && !s.ended() {
		return s, nil
	}
	s, err = e.open(ctx, remote)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		s.conn.Close()
		return nil, ErrClosed
	}
	e.out[remote] = s
	e.conns[s.raw] = struct{}{}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		s.own()
		e.untrack(s.raw)
	}()
	return s, nil
}

// Shutdown ends the endpoint gracefully: it stops accepting, closes every
// stream with </stream:stream> and waits for the peers to close theirs,
// then closes what is left when ctx ends.
func (e *Endpoint) Shutdown(ctx context.Context) error {
	if e.init() != nil {
		return nil
	}
	e.mu.Lock()
	e.closed = true
	for l := range e.listeners {
		l.Close()
	}
	var outs []*outStream
	for _, s := range e.out {
		outs = append(outs, s)
	}
	var ins []*inStream
	for s := range e.in {
		ins = append(ins, s)
	}
	e.mu.Unlock()
	for _, s := range outs {
		s.close()
	}
	for _, s := range ins {
		s.close()
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		e.Close()
		return nil
	case <-ctx.Done():
		e.Close()
		return ctx.Err()
	}
}

// Close stops the endpoint at once: listeners and connections are closed,
// and it waits for its goroutines.
func (e *Endpoint) Close() error {
	if e.init() != nil {
		return nil
	}
	e.mu.Lock()
	e.closed = true
	for l := range e.listeners {
		l.Close()
	}
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	return nil
}

// selfSigned makes the endpoint's certificate: self-signed, so the relay
// cannot verify it and authenticates the endpoint by dialback, as it does
// with a Prosody configured with s2s_secure_auth = false.
func selfSigned(domain string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// isEOF reports whether err is the end of a stream or connection rather
// than a failure worth reporting.
func isEOF(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
