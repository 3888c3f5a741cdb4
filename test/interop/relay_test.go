//go:build interop

package interop_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/routing"
)

// relay runs fedrelay in process, as cmd/fedrelay's run command does,
// through package app: that gives the tests its counters and a hook on
// every bounce. Its log goes to relay.log (debug level), its audit log to
// audit.log.
type relay struct {
	dir     string
	fed     string // federation face
	fedTLS  string // federation face, direct TLS (XEP-0368)
	intl    string // internal face
	dnsAddr string // internal DNS responder
	pubDNS  string // the "public" DNS server
	// domains are the internal domains and their servers' routes.
	domains []relayDomain
	// caCert and caKey are the internal CA (internal.ca_cert_file and
	// ca_key_file); with noCA set the next instance started runs without
	// it, so its generated certificates are self-signed.
	caCert, caKey string
	noCA          bool
	// With secureCA (a PEM file) the next instance started runs with
	// federation.secure_auth and tls.ca_file = secureCA, and the domains'
	// cert_file/key_file; without it, secure_auth is off and the relay
	// generates the domains' certificates.
	secureCA string
	// noBidi turns federation.bidi off for the next instance started.
	noBidi bool

	logf *os.File
	gen  int        // instances started: restarts make new ones
	cur  *app.Relay // the running instance
	all  []*app.Relay

	mu      sync.Mutex
	bounces []bounce

	// The sockets the running instance listens on, by address, for a
	// handoff to its successor (as `fedrelay run` does on SIGUSR2).
	lns map[string]net.Listener
	pcs map[string]net.PacketConn
}

// relayDomain is one of domains[]: cert and key are used with secureCA.
type relayDomain struct {
	name, route string
	cert, key   string
}

// bounce is one error stanza the relay made, as OnBounce saw it.
type bounce struct {
	gen       int
	to        string // the bounced stanza's to (the error goes to its from)
	condition string
	text      string
	elapsed   time.Duration // from reading the stanza to the bounce being routed
}

// yaml returns the relay's configuration; deny is policy.deny.
func (r *relay) yaml(deny []string) string {
	q := make([]string, len(deny))
	for i, d := range deny {
		q[i] = fmt.Sprintf("%q", d)
	}
	ca := ""
	if !r.noCA {
		ca = fmt.Sprintf(", ca_cert_file: %q, ca_key_file: %q", r.caCert, r.caKey)
	}
	var domains []string
	for _, d := range r.domains {
		files := ""
		if r.secureCA != "" && d.cert != "" {
			files = fmt.Sprintf(", cert_file: %q, key_file: %q", d.cert, d.key)
		}
		domains = append(domains, fmt.Sprintf("{name: %s, route: %q%s}", d.name, d.route, files))
	}
	listenTLS, secure, tlsCA := "", "false", ""
	if r.fedTLS != "" {
		listenTLS = fmt.Sprintf("%q", r.fedTLS)
	}
	if r.secureCA != "" {
		secure, tlsCA = "true", fmt.Sprintf("tls: {ca_file: %q}\n", r.secureCA)
	}
	return fmt.Sprintf(`log: {level: debug}
federation: {listen: [%q], listen_tls: [%s], secure_auth: %s, bidi: %v}
internal: {listen: [%q], dns_listen: %q%s}
domains: [%s]
%sdialback: {secret: "interop-test-secret-0123456789"}
dns: {servers: [%q], timeout: 2s, retries: 1, allow_private: [127.0.0.0/8]}
limits: {connect_timeout: 5s, negotiation_timeout: 10s}
breaker: {failures: 2, open_for: %s, max_open_for: 30s}
policy: {deny: [%s], audit_log: %q}
admin: {listen: ""}
`, r.fed, listenTLS, secure, !r.noBidi, r.intl, r.dnsAddr, ca, strings.Join(domains, ", "), tlsCA, r.pubDNS, breakerOpenFor,
		strings.Join(q, ", "), r.auditLog())
}

// breakerOpenFor is breaker.open_for: short, so the remote-down scenario
// sees the breaker open and close again quickly.
const breakerOpenFor = 3 * time.Second

func (r *relay) auditLog() string { return filepath.Join(r.dir, "audit.log") }

// load writes the configuration and loads it as fedrelay would, with no
// environment overrides.
func (r *relay) load(deny []string) (*config.Config, error) {
	path := filepath.Join(r.dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(r.yaml(deny)), 0o644); err != nil {
		return nil, err
	}
	return config.Load(config.Options{Path: path, Getenv: func(string) (string, bool) { return "", false }})
}

// start builds and starts a new instance.
func (r *relay) start(deny []string) error { return r.startWith(deny, false) }

// startWith starts a new instance; with inherit, it takes over the running
// instance's listening sockets (duplicates of them, as tableflip passes
// them to a new process), so that the ports never close.
func (r *relay) startWith(deny []string, inherit bool) error {
	old, oldPCs := r.lns, r.pcs
	r.lns, r.pcs = map[string]net.Listener{}, map[string]net.PacketConn{}
	listen := func(network, addr string) (net.Listener, error) {
		var l net.Listener
		var err error
		if ol, ok := old[addr]; ok && inherit {
			var f *os.File
			if f, err = ol.(*net.TCPListener).File(); err == nil {
				l, err = net.FileListener(f)
				f.Close()
			}
		} else {
			l, err = net.Listen(network, addr)
		}
		if err == nil {
			r.lns[addr] = l
		}
		return l, err
	}
	listenPacket := func(network, addr string) (net.PacketConn, error) {
		var pc net.PacketConn
		var err error
		if op, ok := oldPCs[addr]; ok && inherit {
			var f *os.File
			if f, err = op.(*net.UDPConn).File(); err == nil {
				pc, err = net.FilePacketConn(f)
				f.Close()
			}
		} else {
			pc, err = net.ListenPacket(network, addr)
		}
		if err == nil {
			r.pcs[addr] = pc
		}
		return pc, err
	}
	cfg, err := r.load(deny)
	if err != nil {
		return err
	}
	if r.logf == nil {
		if r.logf, err = os.OpenFile(filepath.Join(r.dir, "relay.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
	}
	r.gen++
	gen := r.gen
	log := slog.New(slog.NewTextHandler(r.logf, &slog.HandlerOptions{Level: cfg.Log.Level})).With("relay", gen)
	a, err := app.New(cfg, log, app.Options{OnBounce: func(st *routing.Stanza, e stanza.Error) {
		b := bounce{gen: gen, elapsed: time.Since(st.Received), to: st.To, condition: string(e.Condition), text: e.Text[""]}
		r.mu.Lock()
		r.bounces = append(r.bounces, b)
		r.mu.Unlock()
	}, Listen: listen, ListenPacket: listenPacket})
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		a.Shutdown(context.Background())
		return err
	}
	r.cur = a
	r.all = append(r.all, a)
	return nil
}

// reload applies a new policy.deny to the running instance.
func (r *relay) reload(deny []string) error {
	cfg, err := r.load(deny)
	if err != nil {
		return err
	}
	return r.cur.Reload(cfg)
}

// shutdown stops the running instance gracefully.
func (r *relay) shutdown() error {
	if r.cur == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := r.cur.Shutdown(ctx)
	r.cur = nil
	return err
}

// handoff replaces the running instance by a new one that takes over its
// listening sockets (what `fedrelay run` does on SIGUSR2, in process); the
// old one then drains and stops. The ports never close.
func (r *relay) handoff() (old *app.Relay, err error) {
	old = r.cur
	if err := r.startWith(nil, true); err != nil {
		return old, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return old, old.Shutdown(ctx)
}

// bouncesFrom returns the bounces recorded from index i on.
func (r *relay) bouncesFrom(i int) []bounce {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bounce(nil), r.bounces[min(i, len(r.bounces)):]...)
}

func (r *relay) bounceCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bounces)
}

// stats formats an instance's router counters.
func stats(a *app.Relay) string {
	s := a.Router.Stats()
	return fmt.Sprintf("accepted=%d delivered=%d bounced=%d dropped=%d refused=%d breaker_bounces=%d "+
		"bounces_delivered=%d bounces_dropped=%d", s.Accepted.Load(), s.Delivered.Load(), s.Bounced.Load(),
		s.Dropped.Load(), s.Refused.Load(), s.BreakerBounces.Load(), s.BouncesDelivered.Load(), s.BouncesDropped.Load())
}
