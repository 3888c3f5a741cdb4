package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/dialback"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s"
	"github.com/fedrelay/fedrelay/s2s/certs"
	"github.com/fedrelay/fedrelay/s2s/internaldns"
	"github.com/fedrelay/fedrelay/s2s/resolve"
)

// Relay is one running relay instance.
type Relay struct {
	log      *slog.Logger
	cfg      *config.Config
	Server   *s2s.Server
	Router   *routing.Router
	resolver *resolve.Resolver
	certs    *certs.Store
	audit    *auditLog
	dns      *internaldns.Responder
	admin    *http.Server

	opts      Options
	reloads   reloads // metrics.go
	started   time.Time
	ready     atomic.Bool // every listener is up
	draining  atomic.Bool // Shutdown has begun
	adminAddr string      // where the admin endpoint listens, once it does

	mu            sync.Mutex
	listeners     []listener
	lastReload    time.Time // the last reload attempt (guarded by mu)
	lastReloadErr string    // why it was refused, "" if applied
	wg            sync.WaitGroup
	errc          chan error
}

// listener is one open listening socket and what it serves.
type listener struct {
	net.Listener
	face   policy.Face
	direct bool
}

// Options adjust a relay for tests.
type Options struct {
	// ResolvConf replaces /etc/resolv.conf when dns.servers is empty.
	ResolvConf string
	// OnBounce is the router's OnBounce hook (tests).
	OnBounce func(st *routing.Stanza, e stanza.Error)
	// Load reads the configuration again, for a reload asked through the
	// admin API (POST /api/reload); nil refuses such reloads.
	Load func() (*config.Config, error)
	// Version is what the admin API and the status page report.
	Version string
	// Listen and ListenPacket open the relay's sockets; nil means
	// net.Listen and net.ListenPacket. `fedrelay run` passes those of its
	// upgrader, so that a new process inherits them (binary upgrades and
	// restarts without a closed port).
	Listen       func(network, addr string) (net.Listener, error)
	ListenPacket func(network, addr string) (net.PacketConn, error)
}

func (r *Relay) listen(network, addr string) (net.Listener, error) {
	if r.opts.Listen != nil {
		return r.opts.Listen(network, addr)
	}
	return net.Listen(network, addr)
}

func (r *Relay) listenPacket(network, addr string) (net.PacketConn, error) {
	if r.opts.ListenPacket != nil {
		return r.opts.ListenPacket(network, addr)
	}
	return net.ListenPacket(network, addr)
}

// New builds a relay from a validated configuration. Nothing listens yet.
func New(cfg *config.Config, log *slog.Logger, opts Options) (*Relay, error) {
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	secret, err := dialback.NewSecret(cfg.Dialback.Secret.Reveal())
	if err != nil {
		return nil, fmt.Errorf("dialback secret: %w", err)
	}
	table := routing.NewTable(cfg.Domains)
	issuer, _, err := InternalCA(cfg.Internal, time.Now()) // the store logs its warnings
	if err != nil {
		return nil, err
	}
	var router *routing.Router // set below; the store asks the current table
	store, err := certs.NewStore(cfg.Domains, certs.Options{
		OnDemand: true,
		// On-demand certificates are for the remote domains the internal
		// face stands in for, never for an internal domain, also after a
		// reload changed the domains.
		AllowOnDemand: func(d string) bool { return !router.Table().IsInternal(d) },
		// With an internal CA they are signed by it (and so are those of
		// internal domains without cert_file), so that internal servers
		// can verify the relay (s2s_secure_auth); the store renews them
		// once two thirds of their validity have passed.
		Issuer:     issuer,
		MinVersion: cfg.TLS.MinVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	for _, w := range store.Warnings() {
		log.Warn(w)
	}
	verifier, err := certs.NewVerifier(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	res, err := resolve.New(cfg.DNS, resolve.Options{ResolvConf: opts.ResolvConf})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	audit, err := openAudit(cfg.Policy.AuditLog)
	if err != nil {
		res.Close()
		return nil, err
	}
	external := map[string]bool{}
	for _, d := range cfg.Domains {
		if d.CertFile != "" {
			external[d.Name] = true
		}
	}
	srv := &s2s.Server{
		Log: log, Secret: secret, Certs: store, Verifier: verifier,
		Dialer:          &resolve.Dialer{Resolver: res, Timeout: cfg.Limits.ConnectTimeout, Allowed: resolve.PublicOnly(allowPrivate(cfg.DNS))},
		ExternalDomains: external, Limits: cfg.Limits, TLS: cfg.TLS, Audit: audit.write,
		Bidi: cfg.Federation.Bidi,
	}
	router = routing.NewRouter(routing.Options{
		Table: table, Policy: pol, Breaker: cfg.Breaker,
		Dialer: srv, Bouncer: s2s.Bounce, Audit: audit.write, OnBounce: opts.OnBounce,
	})
	srv.Router = router
	if cfg.DNS.DNSSEC != "off" {
		srv.DANE = s2s.NewDANE(res, verifier)
	}
	return &Relay{log: log, cfg: cfg, Server: srv, Router: router, resolver: res, certs: store, audit: audit,
		opts: opts, started: time.Now(), errc: make(chan error, 16)}, nil
}

// InternalCA loads the internal CA of internal.ca_cert_file and
// internal.ca_key_file and checks that it can sign: nil without them. A bad
// CA (unreadable, not a CA, expired, a key that is not its own) is a
// config.Errors naming the key; the warnings say that it expires soon.
// check-config and New use it.
func InternalCA(in config.Internal, now time.Time) (*tls.Certificate, []string, error) {
	if in.CACertFile == "" && in.CAKeyFile == "" {
		return nil, nil, nil
	}
	ca, warnings, err := certs.LoadIssuer(in.CACertFile, in.CAKeyFile, now)
	if err != nil {
		key, value := "internal.ca_cert_file", in.CACertFile
		if errors.Is(err, certs.ErrIssuerKey) {
			key, value = "internal.ca_key_file", in.CAKeyFile
		}
		return nil, nil, config.Errors{{Key: key, Value: value, Reason: err.Error()}}
	}
	return ca, warnings, nil
}

// Start opens every listener of the configuration and serves them in the
// background. Errors of a listener that fails later arrive on Err.
func (r *Relay) Start() error {
	open := func(addrs []string, face policy.Face, direct bool) error {
		for _, a := range addrs {
			l, err := r.listen("tcp", a)
			if err != nil {
				return fmt.Errorf("%s face: listen %s: %w", face, a, err)
			}
			r.listeners = append(r.listeners, listener{l, face, direct})
		}
		return nil
	}
	err := errors.Join(
		open(r.cfg.Federation.Listen, policy.Federation, false),
		open(r.cfg.Federation.ListenTLS, policy.Federation, true),
		open(r.cfg.Internal.Listen, policy.Internal, false),
	)
	if err == nil && r.cfg.Internal.DNSListen != "" {
		err = r.startDNS()
	}
	if err == nil && r.cfg.Admin.Listen != "" {
		err = r.startAdmin()
	}
	if err != nil {
		r.closeListeners()
		return err
	}
	for _, l := range r.listeners {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.Server.Serve(l, l.face, l.direct); err != nil && !errors.Is(err, s2s.ErrServerClosed) {
				r.errc <- fmt.Errorf("%s face %s: %w", l.face, l.Addr(), err)
			}
		}()
		kind := "starttls"
		if l.direct {
			kind = "directtls"
		}
		r.log.Info("listening", "face", l.face.String(), "addr", l.Addr().String(), "mode", kind)
	}
	r.ready.Store(true)
	return nil
}

// startDNS opens the internal DNS responder, advertising the first internal
// face address.
func (r *Relay) startDNS() error {
	var face netip.AddrPort
	for _, l := range r.listeners {
		if l.face == policy.Internal {
			if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil && !ap.Addr().IsUnspecified() {
				face = ap
				break
			}
		}
	}
	if !face.IsValid() {
		return errors.New("internal.dns_listen needs an internal.listen address with a specific IP to advertise")
	}
	pc, err := r.listenPacket("udp", r.cfg.Internal.DNSListen)
	if err != nil {
		return fmt.Errorf("internal DNS responder: %w", err)
	}
	l, err := r.listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return fmt.Errorf("internal DNS responder: %w", err)
	}
	r.dns = &internaldns.Responder{Face: face, Route: func(d string) (string, bool) { return r.Router.Table().Route(d) }}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.dns.Serve(pc, l); err != nil {
			r.errc <- fmt.Errorf("internal DNS responder: %w", err)
		}
	}()
	r.log.Info("internal DNS responder", "addr", pc.LocalAddr().String(), "face", face.String())
	return nil
}

// Err delivers errors of listeners that failed after Start.
func (r *Relay) Err() <-chan error { return r.errc }

// Addrs returns the listening addresses of a face (direct TLS or not).
func (r *Relay) Addrs(face policy.Face, direct bool) []string {
	var out []string
	for _, l := range r.listeners {
		if l.face == face && l.direct == direct {
			out = append(out, l.Addr().String())
		}
	}
	return out
}

// Reload applies a new configuration's domains, policy and breaker settings
// without dropping streams that are still allowed; streams whose remote
// domain is now denied are closed with policy-violation. Other sections
// need a restart; a change to them is reported as a warning.
func (r *Relay) Reload(cfg *config.Config) (err error) {
	defer func() { r.reloads.note(err) }()
	_, err = r.reload(cfg)
	if err != nil {
		r.mu.Lock()
		r.lastReload, r.lastReloadErr = time.Now(), err.Error()
		r.mu.Unlock()
	}
	return err
}

func (r *Relay) reload(cfg *config.Config) (ReloadResult, error) {
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("policy: %w", err)
	}
	r.mu.Lock()
	old := r.cfg
	r.cfg = cfg
	r.lastReload, r.lastReloadErr = time.Now(), ""
	r.mu.Unlock()
	r.Router.Reload(routing.NewTable(cfg.Domains), pol, cfg.Breaker)
	closed := r.Server.CloseDenied()
	// Renewed certificate files of the configured domains take effect now;
	// a domain added by the reload has no certificate of its own until a
	// restart (peers then authenticate it by dialback).
	warnings, err := r.certs.Reload()
	for _, w := range warnings {
		r.log.Warn(w)
	}
	if err != nil {
		r.log.Error("certificate reload: some domains keep their previous certificate", "err", err)
	}
	r.log.Info("configuration reloaded", "domains", len(cfg.Domains), "closed_streams", closed)
	res := ReloadResult{Outcome: "applied", ClosedStreams: closed, Restart: restartSections(old, cfg)}
	if len(res.Restart) > 0 {
		r.log.Warn("reload applies domains, policy and breaker only; restart for the other changes", "changed", res.Restart)
	}
	return res, nil
}

// Config returns the configuration in force (the last one reloaded).
func (r *Relay) Config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// Shutdown stops accepting, closes streams with system-shutdown, lets
// outbound links write what they hold, and waits for everything or ctx: at
// ctx's deadline it closes every connection left, bounces what was not
// written, and returns ctx.Err().
func (r *Relay) Shutdown(ctx context.Context) error {
	r.draining.Store(true)
	err := r.Server.Shutdown(ctx)
	r.closeListeners()
	if r.dns != nil {
		r.dns.Shutdown(ctx)
	}
	if r.admin != nil {
		r.admin.Shutdown(ctx)
	}
	r.wg.Wait()
	r.resolver.Close()
	r.audit.close()
	return err
}

func (r *Relay) closeListeners() {
	for _, l := range r.listeners {
		l.Close()
	}
}

// allowPrivate is dns.allow_private, parsed (Validate has checked it).
func allowPrivate(d config.DNS) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range d.AllowPrivate {
		if p, err := config.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
