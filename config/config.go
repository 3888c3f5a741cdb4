package config

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Config is the whole validated configuration of one relay instance. Load
// fills every field: defaults are applied, durations parsed, addresses and
// domain names checked. A Config is a plain value; nothing in it refers back to
// files, the environment or flags.
type Config struct {
	Log        Log        `mapstructure:"log"`
	Federation Federation `mapstructure:"federation"`
	Internal   Internal   `mapstructure:"internal"`
	Domains    []Domain   `mapstructure:"domains"`
	Dialback   Dialback   `mapstructure:"dialback"`
	TLS        TLS        `mapstructure:"tls"`
	DNS        DNS        `mapstructure:"dns"`
	Limits     Limits     `mapstructure:"limits"`
	Breaker    Breaker    `mapstructure:"breaker"`
	Policy     Policy     `mapstructure:"policy"`
	Admin      Admin      `mapstructure:"admin"`

	// Source is the file the configuration was read from ("" for the
	// embedded defaults only).
	Source string `mapstructure:"-"`
	// Warnings are conditions worth a log line at start that do not stop the
	// relay (a generated dialback secret, a short idle timeout). Config does
	// not log; the caller does.
	Warnings []string `mapstructure:"-"`
}

// Log selects the log/slog handler.
type Log struct {
	// Level is the minimum level logged: debug, info, warn or error.
	Level slog.Level `mapstructure:"level"`
	// Format is "text" (slog.TextHandler) or "json" (slog.JSONHandler).
	Format string `mapstructure:"format"`
}

// Federation is the public face: where the federation's S2S streams arrive.
type Federation struct {
	// Listen are host:port addresses for STARTTLS streams (RFC 6120, port
	// 5269 style).
	Listen []string `mapstructure:"listen"`
	// ListenTLS are host:port addresses for direct TLS streams (XEP-0368,
	// ALPN xmpp-server).
	ListenTLS []string `mapstructure:"listen_tls"`
	// SecureAuth accepts a remote domain, in either direction, only once
	// it is authenticated: by a certificate valid for it (RFC 6125,
	// XEP-0178), by DANE (TLSA records validated by DNSSEC, RFC 7673) or
	// by a pinned key (policy.rules[].pin_sha256). Domains a rule marks
	// insecure may use dialback alone. Off, dialback alone is enough for
	// every domain (identity then rests on DNS).
	SecureAuth bool `mapstructure:"secure_auth"`
	// Bidi offers XEP-0288 bidirectional streams on inbound streams of
	// both faces (once TLS is up) and asks for them on outbound streams
	// whose peer offers them and is authenticated enough: one TCP
	// connection then carries a domain pair both ways. Off: one stream per
	// direction.
	Bidi bool `mapstructure:"bidi"`
}

// Internal is the face toward the organisation's own servers.
type Internal struct {
	// Listen are host:port addresses where internal servers open their S2S
	// streams to any remote domain.
	Listen []string `mapstructure:"listen"`
	// DNSListen, when not empty, is the host:port of a DNS responder that
	// answers _xmpp-server._tcp SRV queries for remote domains with the
	// internal face's address.
	DNSListen string `mapstructure:"dns_listen"`
	// CACertFile and CAKeyFile, both set, are an internal CA (PEM) that
	// signs the certificates the relay presents on the internal face for
	// remote domains, minted on demand, cached and renewed before expiry,
	// so that internal servers can verify them (s2s_secure_auth). Empty:
	// those certificates are self-signed.
	CACertFile string `mapstructure:"ca_cert_file"`
	CAKeyFile  string `mapstructure:"ca_key_file"`
}

// Domain is one internal domain the relay fronts.
type Domain struct {
	// Name is the XMPP domain (lower-case ASCII form).
	Name string `mapstructure:"name"`
	// Route is host:port of the internal server that hosts Name. Stanzas
	// from the federation to Name are delivered there, and dialback checks of
	// Name go there, never through public DNS.
	Route string `mapstructure:"route"`
	// CertFile and KeyFile are a PEM certificate chain and key for Name.
	// Both empty: a self-signed certificate is generated at start.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Dialback holds the Server Dialback (XEP-0185) secret shared by every
// instance of the relay.
type Dialback struct {
	// Secret is the key secret, from dialback.secret or read from
	// dialback.secret_file. When neither is set Load generates a random one
	// (and adds a warning): keys then verify only on this instance.
	Secret Secret `mapstructure:"secret"`
	// SecretFile is the file the secret was read from, if any.
	SecretFile string `mapstructure:"secret_file"`
}

// TLS configures stream encryption and peer certificate checks.
type TLS struct {
	// Required refuses streams (with policy-violation) that do not negotiate
	// TLS.
	Required bool `mapstructure:"required"`
	// CAFile is a PEM bundle trusted in addition to the system roots.
	CAFile string `mapstructure:"ca_file"`
	// VerifyPeers checks peer certificates per RFC 6125/XEP-0178. When false
	// every peer falls back to dialback.
	VerifyPeers bool `mapstructure:"verify_peers"`
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13 (config: "1.2" or
	// "1.3").
	MinVersion uint16 `mapstructure:"min_version"`
}

// DNS configures SRV resolution of remote domains.
type DNS struct {
	// Servers are host:port nameservers; empty means /etc/resolv.conf.
	Servers []string `mapstructure:"servers"`
	// Timeout bounds one query to one server.
	Timeout time.Duration `mapstructure:"timeout"`
	// Retries is how many more times a query is sent after a timeout.
	Retries int `mapstructure:"retries"`
	// CacheSize is the number of entries in the answer cache.
	CacheSize int `mapstructure:"cache_size"`
	// MinTTL and MaxTTL clamp the TTL of cached answers, positive and
	// negative.
	MinTTL time.Duration `mapstructure:"min_ttl"`
	MaxTTL time.Duration `mapstructure:"max_ttl"`
	// Overrides maps a domain to fixed targets that bypass DNS. Each target
	// is "host:port" (STARTTLS) or "tls://host:port" (direct TLS).
	Overrides map[string][]string `mapstructure:"overrides"`
	// AllowPrivate lists the address prefixes ("10.1.0.0/16", or one
	// address) that addresses learnt from DNS may be in although they are
	// loopback, private, link-local, unspecified or multicast; the relay
	// never connects to any other such address found through DNS (a public
	// record pointing at the organisation's network). Routes and overrides
	// are not checked.
	AllowPrivate []string `mapstructure:"allow_private"`
	// DNSSEC is how DNSSEC is trusted for DANE (RFC 7673): "validate" (the
	// relay validates the answers itself from the trust anchors),
	// "trust-ad" (the nameservers validate; their AD bit is believed, so
	// they must be trusted and reached over a trusted path) or "off" (no
	// DANE).
	DNSSEC string `mapstructure:"dnssec"`
	// TrustAnchors is a file of DS (or DNSKEY) records in zone-file form
	// for the root zone, replacing the built-in IANA root anchors; for
	// tests and private roots.
	TrustAnchors string `mapstructure:"trust_anchors"`
}

// Limits bound what one stream or one peer may cost.
type Limits struct {
	// MaxStanzaBytes is the largest top-level element accepted on an
	// authenticated stream (policy-violation beyond it).
	MaxStanzaBytes int `mapstructure:"max_stanza_bytes"`
	// MaxPreauthBytes is the largest element accepted before the stream is
	// authenticated.
	MaxPreauthBytes int `mapstructure:"max_preauth_bytes"`
	// QueueStanzas and QueueBytes bound the stanzas held for one domain pair
	// while its outbound stream is being set up; beyond them stanzas bounce
	// with resource-constraint.
	QueueStanzas int `mapstructure:"queue_stanzas"`
	QueueBytes   int `mapstructure:"queue_bytes"`
	// IdleTimeout closes a stream that carried nothing, not even whitespace,
	// for this long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// ConnectTimeout bounds resolving and connecting to a remote domain,
	// all candidates together.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// NegotiationTimeout bounds TLS and authentication of a new stream.
	NegotiationTimeout time.Duration `mapstructure:"negotiation_timeout"`
	// PreauthTimeout bounds, on the federation face, the time from accept
	// until the stream has TLS and its first authenticated domain; a
	// connection that is not there by then is closed with
	// connection-timeout. Shorter than NegotiationTimeout so that idle
	// strangers cannot sit on the connection budget.
	PreauthTimeout time.Duration `mapstructure:"preauth_timeout"`
	// RouteRetry is how long a link to an internal domain's route keeps
	// retrying (short backoff, stanzas held in its queue) before it bounces
	// them: an internal server that restarts loses nothing.
	RouteRetry time.Duration `mapstructure:"route_retry"`
	// RouteConnections bounds the outbound streams open at once towards one
	// internal route (whatever their domain pairs); RouteSetups those of
	// them being connected and authenticated at once; RouteQueueBytes the
	// bytes waiting, all pairs together, in that route's links that are not
	// up yet. A link that finds no slot within connect_timeout +
	// negotiation_timeout bounces what it holds; a stanza beyond
	// RouteQueueBytes bounces with resource-constraint.
	RouteConnections int `mapstructure:"route_connections"`
	RouteSetups      int `mapstructure:"route_setups"`
	RouteQueueBytes  int `mapstructure:"route_queue_bytes"`
	// BounceIdleTimeout closes sooner than IdleTimeout an outbound stream
	// that has carried only the relay's own stanzas (bounces, answers):
	// a dead remote domain's bounces need a stream from that domain to the
	// internal server, which should not stay for the whole idle timeout.
	BounceIdleTimeout time.Duration `mapstructure:"bounce_idle_timeout"`
	// MaxStreams bounds the inbound connections open at once on the
	// federation face; MaxStreamsPerIP those from one address there.
	// Beyond them new connections are closed at once.
	MaxStreams      int `mapstructure:"max_streams"`
	MaxStreamsPerIP int `mapstructure:"max_streams_per_ip"`
	// ConnectRatePerIP and ConnectBurstPerIP are the token bucket of new
	// connections one address may open on the federation face: a burst,
	// then so many per second. Beyond it a connection is closed at once,
	// before a byte is read.
	ConnectRatePerIP  float64 `mapstructure:"connect_rate_per_ip"`
	ConnectBurstPerIP int     `mapstructure:"connect_burst_per_ip"`
	// MaxLinks bounds the outbound streams towards remote domains open at
	// once; LinkRate and LinkBurst the token bucket of new ones (per
	// second, and the burst). A stanza that would need one more is
	// bounced with resource-constraint. Links to internal routes are bounded
	// by the route_* limits instead.
	MaxLinks  int     `mapstructure:"max_links"`
	LinkRate  float64 `mapstructure:"link_rate"`
	LinkBurst int     `mapstructure:"link_burst"`
	// LinkRatePerDomain and LinkBurstPerDomain are the token bucket of new
	// outbound streams towards one remote domain (dialback verifications
	// included): what a stranger can make the relay open at one victim.
	LinkRatePerDomain  float64 `mapstructure:"link_rate_per_domain"`
	LinkBurstPerDomain int     `mapstructure:"link_burst_per_domain"`
	// MaxInternalStreams is the internal face's own budget of inbound
	// connections, so that a flood on the federation face never keeps the
	// organisation's servers out; no per-address limit applies there (an
	// internal server opens one stream per remote domain).
	MaxInternalStreams int `mapstructure:"max_internal_streams"`
	// VerificationsPerStream, VerificationsPerIP and Verifications bound
	// the dialback verifications (a connection to the sender domain's
	// Authoritative server) in flight for one inbound stream, for the
	// federation-face streams of one peer address, and for the federation
	// face in all. A db:result beyond them is
	// answered at once with type='error' (resource-constraint): no dial, no
	// DNS query. PairsPerStream bounds the domain pairs one stream may
	// authorise.
	VerificationsPerStream int `mapstructure:"verifications_per_stream"`
	VerificationsPerIP     int `mapstructure:"verifications_per_ip"`
	Verifications          int `mapstructure:"verifications"`
	PairsPerStream         int `mapstructure:"pairs_per_stream"`
	// WriteTimeout bounds every write to a peer, authenticated or not: a
	// peer that does not read for this long is cut off (connection-timeout)
	// and what was not written to it is rerouted or bounced.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// StallTimeout is how long the writer of an outbound link may stay
	// blocked writing to its peer (which is not reading) before the link
	// counts as stalled: the stanza waiting for room then bounces with
	// resource-constraint, and so does every stanza for the link at once
	// until its writer moves again. While the writer is not blocked (a busy
	// link), a full buffer makes its feeders wait: back-pressure.
	// StallBudget is the most one inbound stream may spend waiting on
	// stalled links in total, refilled at a tenth of itself per second, so
	// that stuck links cannot slow the other pairs of the stream that feeds
	// them for long.
	StallTimeout time.Duration `mapstructure:"stall_timeout"`
	StallBudget  time.Duration `mapstructure:"stall_budget"`
	// DrainTimeout is what `fedrelay run` gives a graceful stop
	// (SIGINT/SIGTERM): past it the connections left are closed and what
	// was not written is bounced.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
	// StreamManagement turns on XEP-0198 on the streams whose peer offers
	// it (Prosody's mod_smacks does, once a stream is authenticated by
	// SASL EXTERNAL): outbound, a stanza counts as delivered once the
	// peer acknowledges it, and what a dead stream leaves unacknowledged
	// is sent again over a new one; inbound, the relay offers it and
	// acknowledges what it has taken charge of. AckTimeout is how long an
	// acknowledgement request may stay unanswered before the stream is
	// taken for dead (connection-timeout).
	StreamManagement bool          `mapstructure:"stream_management"`
	AckTimeout       time.Duration `mapstructure:"ack_timeout"`
	// Multiplex lets the pairs of several internal domains towards one
	// remote domain share one authenticated outbound stream (XEP-0220
	// §4.3): a new pair is authenticated by another db:result on the
	// stream that is up, and gets a stream of its own only if the peer
	// refuses (the refusal is remembered for the domain for an hour).
	Multiplex bool `mapstructure:"multiplex"`
}

// Breaker configures the circuit breaker kept per destination domain.
type Breaker struct {
	// Failures is the number of consecutive connection or authentication
	// failures that open the breaker.
	Failures int `mapstructure:"failures"`
	// OpenFor is how long the breaker stays open before one probe.
	OpenFor time.Duration `mapstructure:"open_for"`
	// MaxOpenFor caps the open period, which doubles on each failed probe.
	MaxOpenFor time.Duration `mapstructure:"max_open_for"`
	// InternalOpenFor and InternalMaxOpenFor replace OpenFor and MaxOpenFor
	// for the breakers of internal domains (those with a route): the
	// organisation's own server is restarted, not gone, and what is
	// addressed to it must not bounce long after it is back.
	InternalOpenFor    time.Duration `mapstructure:"internal_open_for"`
	InternalMaxOpenFor time.Duration `mapstructure:"internal_max_open_for"`
}

// Policy decides which remote domains the organisation federates with.
type Policy struct {
	// Default is "allow" or "deny": the decision for a domain no list names.
	Default string `mapstructure:"default"`
	// Allow and Deny are domain patterns: "example.org" matches exactly,
	// "*.example.org" every subdomain of example.org (not example.org
	// itself). Deny wins over Allow.
	Allow []string `mapstructure:"allow"`
	Deny  []string `mapstructure:"deny"`
	// Rules refine what allowed domains may send; the first rule whose Match
	// names the remote domain applies.
	Rules []Rule `mapstructure:"rules"`
	// AuditLog is a file path, "-" for standard output, or "" for none: one
	// JSON line per refused stanza and per stream-level decision, accepted
	// or refused. SIGHUP reopens it (log rotation).
	AuditLog string `mapstructure:"audit_log"`
	// Explain is what a refusal tells the federation: "none" (the error
	// condition alone), "brief" (a generic sentence naming no rule,
	// address or host) or "full" (the rule and the reason, for debugging
	// with a partner). Internal users always get the full reason, and so do
	// the log and the audit trail.
	Explain string `mapstructure:"explain"`
}

// Rule is a per-remote-domain refinement of the policy.
type Rule struct {
	// Match are domain patterns, as in Policy.Allow.
	Match []string `mapstructure:"match"`
	// Kinds are the stanza kinds that may cross: message, presence, iq.
	// Empty means all.
	Kinds []string `mapstructure:"kinds"`
	// Subscriptions is "allow" or "deny" for presence subscription stanzas
	// (subscribe, subscribed, unsubscribe, unsubscribed) in both directions;
	// SubscriptionsIn and SubscriptionsOut override it for one direction
	// (in: from the remote domain to ours). Empty means allow.
	Subscriptions    string `mapstructure:"subscriptions"`
	SubscriptionsIn  string `mapstructure:"subscriptions_in"`
	SubscriptionsOut string `mapstructure:"subscriptions_out"`
	// RequireAuth lists the authentication methods accepted for the remote
	// domain: "external" (SASL EXTERNAL, a verified certificate) and/or
	// "dialback". Empty accepts either.
	RequireAuth []string `mapstructure:"require_auth"`
	// RequireTLS refuses streams with the remote domain that are not
	// encrypted, whatever tls.required says.
	RequireTLS bool `mapstructure:"require_tls"`
	// MaxStanzaBytes, when not zero, lowers limits.max_stanza_bytes for the
	// remote domain.
	MaxStanzaBytes int `mapstructure:"max_stanza_bytes"`
	// Rate (stanzas per second) and Burst set a token bucket per remote
	// domain; zero Rate means unlimited.
	Rate  float64 `mapstructure:"rate"`
	Burst int     `mapstructure:"burst"`
	// Insecure lets the remote domain authenticate by dialback alone when
	// federation.secure_auth is on (a partner without a valid certificate
	// or DANE; its identity then rests on DNS).
	Insecure bool `mapstructure:"insecure"`
	// PinSHA256 are SHA-256 digests of SubjectPublicKeyInfo (base64, as
	// "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
	// openssl dgst -sha256 -binary | base64" prints, or hex). When set, a
	// certificate of the remote domain authenticates it only if its key is
	// one of them, whatever CA or DANE say.
	PinSHA256 []string `mapstructure:"pin_sha256"`
}

// Admin configures the HTTP endpoint for metrics and health.
type Admin struct {
	// Listen is host:port; empty disables the endpoint.
	Listen string `mapstructure:"listen"`
	// Pprof exposes net/http/pprof under /debug/pprof/ on the endpoint,
	// for profiling on demand. Off by default: profiles reveal internals and
	// cost CPU while they run.
	Pprof bool `mapstructure:"pprof"`
	// TokenFile, when set, is a file holding a bearer token that every
	// admin request but /healthz must carry (Authorization: Bearer ...);
	// others get 401.
	TokenFile string `mapstructure:"token_file"`
	// MetricsTopDomains is how many destination domains, beyond those the
	// configuration names, get per-domain series on /metrics: the busiest
	// by stanzas written (docs/metrics.md). 0 limits them to the named ones.
	MetricsTopDomains int `mapstructure:"metrics_top_domains"`
}

// TLSVersionName returns "1.2" or "1.3" for a MinVersion value.
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "1.3"
	default:
		return "1.2"
	}
}

// MaxMetricsTopDomains caps admin.metrics_top_domains: each domain is a
// handful of series on every scrape.
const MaxMetricsTopDomains = 1000
