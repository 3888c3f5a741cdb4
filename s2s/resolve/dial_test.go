package resolve_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fedrelay/fedrelay/s2s/resolve"
	"github.com/fedrelay/fedrelay/s2s/resolve/resolvetest"
)

// serve accepts connections on 127.0.0.1 and runs handle for each, until
// the test ends. It returns the listening port.
func serve(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// plainServer speaks the start of an XMPP stream in the clear, as a
// STARTTLS port does, and waits for the client to go away.
func plainServer(t *testing.T) int {
	return serve(t, func(c net.Conn) {
		io.WriteString(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:server'>")
		io.Copy(io.Discard, c)
	})
}

// refusedPort returns a port on 127.0.0.1 where nothing listens.
func refusedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// selfSigned returns a certificate for names and a pool trusting it.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// tlsServer is a direct TLS S2S port that refuses handshakes without SNI
// equal to domain and ALPN xmpp-server.
type tlsServer struct {
	port int
	mu   sync.Mutex
	sni  []string
}

func newTLSServer(t *testing.T, domain string) (*tlsServer, *x509.CertPool) {
	cert, pool := selfSigned(t, domain)
	s := &tlsServer{}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"xmpp-server"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.sni = append(s.sni, hello.ServerName)
			s.mu.Unlock()
			if hello.ServerName != domain {
				return nil, fmt.Errorf("SNI %q, want %q", hello.ServerName, domain)
			}
			if !slices.Contains(hello.SupportedProtos, "xmpp-server") {
				return nil, errors.New("no ALPN xmpp-server")
			}
			return nil, nil
		},
	}
	s.port = serve(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			io.Copy(io.Discard, tc)
		}
	})
	return s, pool
}

func (s *tlsServer) SNI() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sni)
}

func tlsConfigFor(pool *x509.CertPool) func(string) *tls.Config {
	return func(string) *tls.Config { return &tls.Config{RootCAs: pool} }
}

func overrideDialer(t *testing.T, domain string, targets ...string) *resolve.Dialer {
	t.Helper()
	srv := resolvetest.NewServer(t, "")
	cfg := dnsConfig(srv.Addr)
	cfg.Overrides = map[string][]string{domain: targets}
	return &resolve.Dialer{Resolver: newResolver(t, cfg, resolve.Options{}), Timeout: 5 * time.Second}
}

func TestDialFirstRefusedSecondAccepts(t *testing.T) {
	refused := refusedPort(t)
	good := plainServer(t)
	d := overrideDialer(t, "partner.test",
		fmt.Sprintf("127.0.0.1:%d", refused), fmt.Sprintf("127.0.0.1:%d", good))
	conn, err := d.Dial(context.Background(), "partner.test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.Candidate.Port != uint16(good) || conn.Candidate.Mode != resolve.StartTLS ||
		conn.Addr.String() != fmt.Sprintf("127.0.0.1:%d", good) {
		t.Errorf("connected to %v via %v, want the second candidate", conn.Candidate, conn.Addr)
	}
	if _, ok := conn.Conn.(*tls.Conn); ok {
		t.Error("STARTTLS candidate came back as a TLS connection")
	}
}

func TestDialDirectTLS(t *testing.T) {
	srv, pool := newTLSServer(t, "partner.test")
	d := overrideDialer(t, "partner.test", fmt.Sprintf("tls://127.0.0.1:%d", srv.port))
	d.TLSConfig = tlsConfigFor(pool)
	conn, err := d.Dial(context.Background(), "partner.test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc, ok := conn.Conn.(*tls.Conn)
	if !ok {
		t.Fatalf("conn is %T, want *tls.Conn", conn.Conn)
	}
	if st := tc.ConnectionState(); !st.HandshakeComplete || st.NegotiatedProtocol != "xmpp-server" {
		t.Errorf("handshake %v, ALPN %q", st.HandshakeComplete, st.NegotiatedProtocol)
	}
	if conn.Candidate.Mode != resolve.DirectTLS {
		t.Errorf("mode %v", conn.Candidate.Mode)
	}
}

// SNI is the XMPP domain, never the SRV target, and internationalised
// domains go out as A-labels.
func TestDialDirectTLSViaSRV(t *testing.T) {
	srv, pool := newTLSServer(t, "xn--ncode-cta3g.test")
	dnsSrv := resolvetest.NewServer(t, fmt.Sprintf(`
_xmpps-server._tcp.xn--ncode-cta3g.test. 300 SRV 0 0 %d xmpp.hosting.test.
xmpp.hosting.test. 300 A 127.0.0.1
`, srv.port))
	d := &resolve.Dialer{
		Resolver:  newResolver(t, dnsConfig(dnsSrv.Addr), resolve.Options{}),
		TLSConfig: tlsConfigFor(pool),
		Timeout:   5 * time.Second,
	}
	conn, err := d.Dial(context.Background(), "ünïcode.test")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got := srv.SNI(); !slices.Equal(got, []string{"xn--ncode-cta3g.test"}) {
		t.Errorf("SNI sent %q, want the domain", got)
	}
	if conn.Candidate.Host != "xmpp.hosting.test" {
		t.Errorf("candidate %v", conn.Candidate)
	}
}

// Operators sometimes point _xmpps-server at a STARTTLS port: the failed
// handshake moves on to the next candidate.
func TestDialDirectTLSFailsThenStartTLS(t *testing.T) {
	plain := plainServer(t)
	_, pool := selfSigned(t, "partner.test")
	d := overrideDialer(t, "partner.test",
		fmt.Sprintf("tls://127.0.0.1:%d", plain), fmt.Sprintf("127.0.0.1:%d", plain))
	d.TLSConfig = tlsConfigFor(pool)
	conn, err := d.Dial(context.Background(), "partner.test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.Candidate.Mode != resolve.StartTLS {
		t.Errorf("connected with %v, want the STARTTLS candidate", conn.Candidate.Mode)
	}
}

func TestDialReportsEveryAttempt(t *testing.T) {
	refused := refusedPort(t)
	plain := plainServer(t)
	_, pool := selfSigned(t, "partner.test")
	d := overrideDialer(t, "partner.test",
		fmt.Sprintf("127.0.0.1:%d", refused),
		fmt.Sprintf("tls://127.0.0.1:%d", plain),
		"nowhere.partner.test:5269")
	d.TLSConfig = tlsConfigFor(pool)
	_, err := d.Dial(context.Background(), "partner.test")
	var de *resolve.DialError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v (%T), want *DialError", err, err)
	}
	if len(de.Attempts) != 3 {
		t.Fatalf("%d attempts, want 3: %v", len(de.Attempts), err)
	}
	msg := err.Error()
	for _, want := range []string{
		fmt.Sprintf("connect partner.test: 127.0.0.1:%d (starttls): dial tcp 127.0.0.1:%d: connect: connection refused", refused, refused),
		fmt.Sprintf("; 127.0.0.1:%d (directtls): TLS handshake with 127.0.0.1:%d: ", plain, plain),
		"; nowhere.partner.test:5269 (starttls): host not found: nowhere.partner.test does not exist (NXDOMAIN)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message is not one line: %q", msg)
	}
	if !errors.Is(err, resolve.ErrTemporary) || errors.Is(err, resolve.ErrNotFound) || resolve.KindOf(err) != resolve.Temporary {
		t.Errorf("err %v: want Temporary only", err)
	}
}

func TestDialDeadline(t *testing.T) {
	d := overrideDialer(t, "partner.test", "192.0.2.1:5269", "192.0.2.2:5269", "192.0.2.3:5269")
	d.Timeout = 150 * time.Millisecond
	d.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done() // a black hole
		return nil, ctx.Err()
	}
	start := time.Now()
	_, err := d.Dial(context.Background(), "partner.test")
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, resolve.ErrTemporary) {
		t.Fatalf("err = %v, want DeadlineExceeded and ErrTemporary", err)
	}
	var de *resolve.DialError
	if !errors.As(err, &de) || len(de.Attempts) != 1 || de.Untried != 2 {
		t.Fatalf("err = %v, want one attempt and two untried", err)
	}
	if elapsed < 150*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("Dial took %v with a 150ms timeout", elapsed)
	}
}

// fakeConn stands for a connection in happy-eyeballs tests.
type fakeConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *fakeConn) Close() error { c.closed.Store(true); return nil }

func newFakeConn() *fakeConn {
	a, b := net.Pipe()
	b.Close()
	a.Close()
	return &fakeConn{Conn: a}
}

// recorder is an injected dial function that logs when each address was
// tried and answers as the test says.
type recorder struct {
	start  time.Time
	mu     sync.Mutex
	order  []string
	at     []time.Duration
	answer func(ctx context.Context, addr string) (net.Conn, error)
}

func (r *recorder) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.order = append(r.order, addr)
	r.at = append(r.at, time.Since(r.start))
	r.mu.Unlock()
	return r.answer(ctx, addr)
}

func (r *recorder) tried() ([]string, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order), slices.Clone(r.at)
}

const heZone = `
_xmpp-server._tcp.he.test. 300 SRV 0 0 5269 xmpp.he.test.
xmpp.he.test. 300 AAAA 2001:db8::1
xmpp.he.test. 300 AAAA 2001:db8::2
xmpp.he.test. 300 A 192.0.2.1
xmpp.he.test. 300 A 192.0.2.2
`

func heDialer(t *testing.T, stagger time.Duration, rec *recorder) *resolve.Dialer {
	srv := resolvetest.NewServer(t, heZone)
	return &resolve.Dialer{
		Resolver:    newResolver(t, dnsConfig(srv.Addr), resolve.Options{}),
		Timeout:     5 * time.Second,
		Stagger:     stagger,
		DialContext: rec.dial,
	}
}

var refused = errors.New("connection refused")

// Addresses alternate IPv6, IPv4 (RFC 8305 §4), and a failure starts the
// next attempt at once rather than after the stagger.
func TestHappyEyeballsOrderAndFailFast(t *testing.T) {
	rec := &recorder{answer: func(context.Context, string) (net.Conn, error) { return nil, refused }}
	d := heDialer(t, 10*time.Second, rec)
	rec.start = time.Now()
	_, err := d.Dial(context.Background(), "he.test")
	var de *resolve.DialError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v", err)
	}
	want := []string{"[2001:db8::1]:5269", "192.0.2.1:5269", "[2001:db8::2]:5269", "192.0.2.2:5269"}
	order, _ := rec.tried()
	if !slices.Equal(order, want) {
		t.Errorf("tried %v, want %v", order, want)
	}
	var attempted []string
	for _, a := range de.Attempts {
		attempted = append(attempted, a.Addr.String())
	}
	if !slices.Equal(attempted, want) {
		t.Errorf("attempts reported %v, want %v", attempted, want)
	}
	if d := time.Since(rec.start); d > 5*time.Second {
		t.Errorf("took %v: failures must not wait for the 10s stagger", d)
	}
}

// A pending attempt gets the stagger delay before the next starts; the
// first success wins and the pending attempt is cancelled.
func TestHappyEyeballsStagger(t *testing.T) {
	const stagger = 100 * time.Millisecond
	var cancelled atomic.Bool
	winner := newFakeConn()
	rec := &recorder{answer: func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == "[2001:db8::1]:5269" {
			<-ctx.Done()
			cancelled.Store(true)
			return nil, ctx.Err()
		}
		return winner, nil
	}}
	d := heDialer(t, stagger, rec)
	rec.start = time.Now()
	conn, err := d.Dial(context.Background(), "he.test")
	if err != nil {
		t.Fatal(err)
	}
	if conn.Conn != winner || conn.Addr.String() != "192.0.2.1:5269" {
		t.Errorf("connected via %v", conn.Addr)
	}
	order, at := rec.tried()
	if len(order) != 2 {
		t.Fatalf("tried %v, want two attempts", order)
	}
	if gap := at[1] - at[0]; gap < stagger {
		t.Errorf("second attempt %v after the first, want at least %v", gap, stagger)
	}
	if !cancelled.Load() {
		t.Error("the pending IPv6 attempt was not cancelled")
	}
	if winner.closed.Load() {
		t.Error("the winning connection was closed")
	}
}

// A loser that connects after the winner is closed.
func TestHappyEyeballsClosesLosers(t *testing.T) {
	loser, winner := newFakeConn(), newFakeConn()
	rec := &recorder{answer: func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == "[2001:db8::1]:5269" {
			<-ctx.Done()
			return loser, nil // connected anyway, too late
		}
		return winner, nil
	}}
	d := heDialer(t, 10*time.Millisecond, rec)
	rec.start = time.Now()
	conn, err := d.Dial(context.Background(), "he.test")
	if err != nil {
		t.Fatal(err)
	}
	if conn.Conn != winner || winner.closed.Load() || !loser.closed.Load() {
		t.Errorf("winner %v closed %v; loser closed %v", conn.Addr, winner.closed.Load(), loser.closed.Load())
	}
}

// Glue from the SRV answer saves the address queries.
func TestDialUsesGlue(t *testing.T) {
	srv := resolvetest.NewServer(t, zone)
	srv.SetGlue(true)
	rec := &recorder{answer: func(context.Context, string) (net.Conn, error) { return newFakeConn(), nil }}
	d := &resolve.Dialer{
		Resolver:    newResolver(t, dnsConfig(srv.Addr), resolve.Options{}),
		DialContext: rec.dial,
	}
	for _, tt := range []struct {
		domain, target  string
		wantA, wantAAAA int
		wantAddr        string
	}{
		{"glued.test", "xmpp.glued.test.", 0, 0, "[::1]:5269"},
		{"halfglued.test", "xmpp.halfglued.test.", 0, 1, "127.0.0.1:5269"},
	} {
		conn, err := d.Dial(context.Background(), tt.domain)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if a, aaaa := srv.Count(tt.target, dns.TypeA), srv.Count(tt.target, dns.TypeAAAA); a != tt.wantA || aaaa != tt.wantAAAA {
			t.Errorf("%s: %d A and %d AAAA queries, want %d and %d", tt.domain, a, aaaa, tt.wantA, tt.wantAAAA)
		}
		if conn.Addr.String() != tt.wantAddr {
			t.Errorf("%s: connected to %v, want %s", tt.domain, conn.Addr, tt.wantAddr)
		}
	}
}

func TestDialLookupErrorPassesThrough(t *testing.T) {
	srv := newZoneServer(t)
	d := &resolve.Dialer{Resolver: newResolver(t, dnsConfig(srv.Addr), resolve.Options{})}
	_, err := d.Dial(context.Background(), "noservice.test")
	if !errors.Is(err, resolve.ErrNoService) || resolve.KindOf(err) != resolve.NoService {
		t.Errorf("err = %v, want the lookup's ErrNoService", err)
	}
}

func TestDialCandidate(t *testing.T) {
	good := plainServer(t)
	d := overrideDialer(t, "partner.test", fmt.Sprintf("127.0.0.1:%d", good))
	c, err := resolve.ParseOverride(fmt.Sprintf("127.0.0.1:%d", refusedPort(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DialCandidate(context.Background(), "partner.test", c); !errors.Is(err, resolve.ErrTemporary) {
		t.Errorf("DialCandidate to a closed port: %v", err)
	}
	c, _ = resolve.ParseOverride(fmt.Sprintf("127.0.0.1:%d", good))
	conn, err := d.DialCandidate(context.Background(), "partner.test", c)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// TestPublicOnly: what PublicOnly lets a Dialer connect to.
func TestPublicOnly(t *testing.T) {
	allowed := resolve.PublicOnly([]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")})
	for addr, want := range map[string]bool{
		"192.0.2.10": true, "2001:db8::1": true, "10.1.2.3": true, // public, or allowed
		"127.0.0.1": false, "::1": false, "10.2.0.1": false, "172.16.0.1": false, "192.168.1.1": false,
		"fd00::1": false, "169.254.169.254": false, "fe80::1": false, "0.0.0.0": false, "::": false,
		"224.0.0.1": false, "::ffff:127.0.0.1": false, "::ffff:10.1.0.9": true,
	} {
		if got := allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("PublicOnly(%s) = %v, want %v", addr, got, want)
		}
	}
}
