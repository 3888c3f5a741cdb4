package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/net/idna"

	"github.com/fedrelay/fedrelay/config"
)

// Defaults for the zero fields of Options.
const (
	// DefaultCacheSize is the number of on-demand certificates kept.
	DefaultCacheSize = 1024
	// DefaultValidity is the lifetime of generated certificates. They are
	// replaced once two thirds of it has passed.
	DefaultValidity = 365 * 24 * time.Hour
)

// ErrUnknownDomain is returned by Store.Certificate for a name that is not
// a configured domain when on-demand generation is off, not allowed for that
// name, or impossible (the name is not a valid host name).
var ErrUnknownDomain = errors.New("certs: no certificate for this domain")

// Options tune a Store. The zero value serves the configured domains only,
// with self-signed certificates where none is configured.
type Options struct {
	// DefaultDomain is the configured domain whose certificate answers a
	// handshake without SNI or with an SNI the store has no certificate for.
	// Empty means the first configured domain.
	DefaultDomain string

	// OnDemand generates a certificate for any name asked for that is not a
	// configured domain: on the internal face the relay is every remote
	// domain. Generated certificates are kept in an LRU cache of CacheSize
	// entries; concurrent requests for one name generate once, and at most
	// GOMAXPROCS generations run at a time, so a flood of made-up SNIs costs
	// bounded memory and CPU. See also Store.ConfiguredOnly.
	OnDemand bool
	// AllowOnDemand, when not nil, restricts on-demand generation to the
	// names (lower-case ASCII) for which it returns true; other names get
	// the default certificate. A policy check fits here.
	AllowOnDemand func(domain string) bool
	// CacheSize bounds the on-demand cache; 0 means DefaultCacheSize.
	CacheSize int

	// Issuer, when not nil, is a CA certificate and key (from
	// tls.LoadX509KeyPair, say) that signs every certificate the store
	// generates, instead of self-signing them: an internal CA the
	// organisation's servers trust, so that internal links can be
	// authenticated by certificate. Its chain is sent after the leaf.
	Issuer *tls.Certificate
	// Validity is the lifetime of generated certificates (capped by the
	// issuer's); 0 means DefaultValidity.
	Validity time.Duration

	// MinVersion is the lowest TLS version of the configs the store builds
	// (config.TLS.MinVersion); 0 means TLS 1.2.
	MinVersion uint16

	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Stats are counters of a Store, for metrics.
type Stats struct {
	// Configured is the number of configured domains.
	Configured int
	// Cached is the number of on-demand certificates in the cache.
	Cached int
	// Generated counts certificates generated since NewStore, at start,
	// on demand and on renewal.
	Generated uint64
	// Fallbacks counts handshakes answered with the default certificate
	// (no SNI, or a name the store has no certificate for).
	Fallbacks uint64
}

// Store holds the certificates the relay presents, and chooses one by name:
// by SNI as a TLS server, by local domain as a TLS client. It is safe for
// concurrent use.
//
// Lookup order for a name: a configured domain's certificate (loaded from
// cert_file/key_file, or generated at start when the domain has none); else,
// with OnDemand, a generated certificate for that name; else
// ErrUnknownDomain, which GetCertificate answers with the default domain's
// certificate (the peer then finds a name mismatch and can use dialback)
// and ClientCertificate with no certificate at all.
type Store struct {
	c        *storeCore
	onDemand bool
}

// storeCore is what every view of a Store shares.
type storeCore struct {
	opts        Options
	domains     map[string]*slot
	defaultName string
	cache       *lru.Cache[string, *minted]
	flight      flight
	sem         chan struct{} // bounds concurrent generations
	generated   atomic.Uint64
	fallbacks   atomic.Uint64
	warnings    []string
}

// slot is one configured domain's certificate, replaced on renewal (a
// generated one) or on Reload (one from files).
type slot struct {
	certFile, keyFile string // empty: generated
	cur               atomic.Pointer[minted]
}

// NewStore loads the certificates of domains (config.Config.Domains) and
// generates one for each domain without cert_file and key_file. It fails
// when a certificate or key cannot be loaded, a domain name is invalid, or
// the issuer cannot sign. Conditions worth a log line (a generated
// certificate, an expired or misnamed one) are reported by Warnings.
func NewStore(domains []config.Domain, opts Options) (*Store, error) {
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Validity <= 0 {
		opts.Validity = DefaultValidity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinVersion == 0 {
		opts.MinVersion = tls.VersionTLS12
	}
	if len(domains) == 0 {
		return nil, errors.New("certs: no domain configured")
	}
	now := opts.Now()
	if opts.Issuer != nil {
		issuer := *opts.Issuer // checkIssuer may fill Leaf: not in the caller's value
		opts.Issuer = &issuer
		if err := checkIssuer(opts.Issuer, now); err != nil {
			return nil, fmt.Errorf("certs: issuer: %w", err)
		}
	}
	c := &storeCore{
		opts:    opts,
		domains: make(map[string]*slot, len(domains)),
		sem:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
	}
	if opts.Issuer != nil {
		c.warnings = issuerWarnings(opts.Issuer, now)
	}
	for _, d := range domains {
		name, err := config.NormalizeDomain(d.Name)
		if err != nil {
			return nil, fmt.Errorf("certs: domain %q: %w", d.Name, err)
		}
		if _, dup := c.domains[name]; dup {
			return nil, fmt.Errorf("certs: domain %s listed twice", name)
		}
		sl := &slot{certFile: d.CertFile, keyFile: d.KeyFile}
		if d.CertFile != "" || d.KeyFile != "" {
			m, warns, err := loadPair(name, d.CertFile, d.KeyFile, now)
			if err != nil {
				return nil, err
			}
			sl.cur.Store(m)
			c.warnings = append(c.warnings, warns...)
		} else {
			if !mintable(name) {
				return nil, fmt.Errorf("certs: domain %s: cannot generate a certificate for this name: set cert_file and key_file", name)
			}
			m, err := mint(name, opts.Issuer, now, opts.Validity)
			if err != nil {
				return nil, fmt.Errorf("certs: domain %s: generate a certificate: %w", name, err)
			}
			c.generated.Add(1)
			sl.cur.Store(m)
			c.warnings = append(c.warnings, generatedWarning(name, m, opts.Issuer))
		}
		c.domains[name] = sl
		if c.defaultName == "" {
			c.defaultName = name
		}
	}
	if opts.DefaultDomain != "" {
		name, err := config.NormalizeDomain(opts.DefaultDomain)
		if _, ok := c.domains[name]; err != nil || !ok {
			return nil, fmt.Errorf("certs: default domain %q is not a configured domain", opts.DefaultDomain)
		}
		c.defaultName = name
	}
	cache, err := lru.New[string, *minted](opts.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	c.cache = cache
	return &Store{c: c, onDemand: opts.OnDemand}, nil
}

func generatedWarning(name string, m *minted, issuer *tls.Certificate) string {
	by := "a self-signed certificate"
	if issuer != nil {
		by = "a certificate signed by " + issuer.Leaf.Subject.String()
	}
	return fmt.Sprintf("domain %s has no cert_file/key_file: generated %s, valid until %s; "+
		"peers that do not trust it will authenticate this domain by dialback",
		name, by, m.cert.Leaf.NotAfter.UTC().Format(time.DateOnly))
}

// loadPair reads a PEM chain and key (RSA, ECDSA or Ed25519) and reports
// what would make peers refuse the certificate.
func loadPair(name, certFile, keyFile string, now time.Time) (*minted, []string, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: domain %s: load %s and %s: %w", name, certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("certs: domain %s: %s: %w", name, certFile, err)
		}
	}
	leaf := cert.Leaf
	var warns []string
	warn := func(format string, args ...any) {
		warns = append(warns, fmt.Sprintf("domain %s: certificate %s: ", name, certFile)+fmt.Sprintf(format, args...))
	}
	switch {
	case now.After(leaf.NotAfter):
		warn("expired on %s; peers will refuse it and use dialback", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		warn("not valid before %s; peers will refuse it and use dialback", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if n := certNames(leaf); matchNames(n, name) == idNone {
		warn("does not name %s (%v); peers will refuse it and use dialback", name, presented(n))
	}
	if !serverUsage(leaf) {
		warn("its extended key usage does not include serverAuth; peers will refuse it")
	}
	return &minted{cert: &cert}, warns, nil
}

func serverUsage(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// Warnings returns the conditions found by NewStore that deserve a log line
// but do not stop the relay: generated certificates, expired certificates,
// certificates that do not name their domain.
func (s *Store) Warnings() []string { return slices.Clone(s.c.warnings) }

// ConfiguredOnly returns a view of s, sharing its certificates and cache,
// that never generates on demand: unknown names get the default certificate.
// The federation face uses it, so that public peers cannot make the relay
// generate certificates, while the internal face uses s itself.
func (s *Store) ConfiguredOnly() *Store { return &Store{c: s.c} }

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Configured: len(s.c.domains),
		Cached:     s.c.cache.Len(),
		Generated:  s.c.generated.Load(),
		Fallbacks:  s.c.fallbacks.Load(),
	}
}

// Reload reads again the cert_file and key_file of every configured domain
// that has them, for renewed certificates. A domain whose files fail to load
// keeps its current certificate; the errors are joined. Handshakes started
// afterwards use the new certificates.
func (s *Store) Reload() (warnings []string, err error) {
	now := s.c.opts.Now()
	var errs []error
	for name, sl := range s.c.domains {
		if sl.certFile == "" && sl.keyFile == "" {
			continue
		}
		m, warns, err := loadPair(name, sl.certFile, sl.keyFile, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sl.cur.Store(m)
		warnings = append(warnings, warns...)
	}
	slices.Sort(warnings)
	return warnings, errors.Join(errs...)
}

// Certificate returns the certificate the relay presents as domain: the
// configured one, or with OnDemand a generated one, waiting for its
// generation if need be (until ctx is done). Otherwise it returns
// ErrUnknownDomain. domain may be in Unicode or ASCII form, any case.
func (s *Store) Certificate(ctx context.Context, domain string) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(domain, "."))
	if !isASCII(name) {
		if n, err := config.NormalizeDomain(domain); err == nil {
			name = n
		}
	}
	if sl, ok := s.c.domains[name]; ok {
		return s.c.configured(ctx, name, sl)
	}
	allow := s.c.opts.AllowOnDemand
	if !s.onDemand || !mintable(name) || (allow != nil && !allow(name)) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDomain, domain)
	}
	return s.c.get(ctx, name,
		func() (*minted, bool) { return s.c.cache.Get(name) },
		func(m *minted) { s.c.cache.Add(name, m) })
}

// GetCertificate is the tls.Config.GetCertificate of a listener: the
// certificate for the SNI name; without SNI, the certificate for the
// stream's 'to' when the connection was marked with it (StreamTo); else,
// or when the store has no certificate for the name, the default domain's
// certificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := orBackground(hello.Context())
	name := hello.ServerName
	if name == "" {
		if sc, ok := hello.Conn.(*streamConn); ok {
			name = sc.to
		}
	}
	if name != "" {
		cert, err := s.Certificate(ctx, name)
		if !errors.Is(err, ErrUnknownDomain) {
			return cert, err
		}
	}
	s.c.fallbacks.Add(1)
	return s.c.configured(ctx, s.c.defaultName, s.c.domains[s.c.defaultName])
}

// ClientCertificate returns the tls.Config.GetClientCertificate of an
// outbound stream from the local domain: the certificate Certificate gives
// for local, so that the peer can authenticate us with SASL EXTERNAL. When
// there is none, or the server could not accept its key type, no certificate
// is sent and the stream can still use dialback.
func (s *Store) ClientCertificate(local string) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := s.Certificate(orBackground(cri.Context()), local)
		switch {
		case errors.Is(err, ErrUnknownDomain):
			return &tls.Certificate{}, nil
		case err != nil:
			return nil, err
		case cri.SupportsCertificate(cert) != nil:
			return &tls.Certificate{}, nil
		}
		return cert, nil
	}
}

// configured returns a configured domain's certificate, replacing a
// generated one that is due for renewal.
func (c *storeCore) configured(ctx context.Context, name string, sl *slot) (*tls.Certificate, error) {
	if sl.certFile != "" || sl.keyFile != "" {
		return sl.cur.Load().cert, nil
	}
	return c.get(ctx, name,
		func() (*minted, bool) { return sl.cur.Load(), true },
		sl.cur.Store)
}

// get returns the fresh certificate load finds for name, or generates one
// and gives it to store, once for all concurrent callers.
func (c *storeCore) get(ctx context.Context, name string, load func() (*minted, bool), store func(*minted)) (*tls.Certificate, error) {
	fresh := func() *minted {
		if m, ok := load(); ok && c.opts.Now().Before(m.renewAt) {
			return m
		}
		return nil
	}
	if m := fresh(); m != nil {
		return m.cert, nil
	}
	for {
		m, shared, err := c.flight.do(ctx, name, func() (*minted, error) {
			// Another caller may have stored one between our look and now.
			if m := fresh(); m != nil {
				return m, nil
			}
			select {
			case c.sem <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-c.sem }()
			m, err := mint(name, c.opts.Issuer, c.opts.Now(), c.opts.Validity)
			if err != nil {
				return nil, fmt.Errorf("certs: generate a certificate for %s: %w", name, err)
			}
			c.generated.Add(1)
			store(m)
			return m, nil
		})
		// The caller that generated for us gave up: try again ourselves.
		if shared && ctx.Err() == nil &&
			(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return m.cert, nil
	}
}

// mintable reports whether name (lower-case) is a host name a certificate
// can be generated for: LDH labels of 1 to 63 characters, 253 in all, and
// valid Punycode where labels are A-labels. Anything else an SNI may carry
// gets no certificate of its own.
func mintable(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return false // an IP literal domain needs an IP SAN, not a DNS-ID
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	if strings.Contains(name, "xn--") {
		if _, err := idna.Lookup.ToUnicode(name); err != nil {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}
