package config

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"
	"mellium.im/xmpp/jid"
)

// minStanzaBytes is the smallest stanza limit RFC 6120 §13.12 allows a
// server to impose (10,000 bytes).
const minStanzaBytes = 10000

// prosodyKeepalive is Prosody's whitespace keepalive interval: an idle
// timeout below it closes healthy Prosody links.
const prosodyKeepalive = 840 * time.Second

// validate checks every field, normalises domain names and addresses, fills
// derived defaults, and reads the dialback secret file.
func (c *Config) validate(runnable bool) Errors {
	var errs Errors
	bad := func(key, value, reason string) {
		errs = append(errs, &Error{Key: key, Value: value, Reason: reason})
	}

	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", c.Log.Format, "must be text or json")
	}

	seen := map[string]string{}
	listen := func(key string, addrs []string) {
		for i, a := range addrs {
			k := fmt.Sprintf("%s[%d]", key, i)
			if err := checkHostPort(a, true); err != nil {
				bad(k, a, err.Error())
				continue
			}
			if prev, ok := seen[a]; ok {
				bad(k, a, "already used by "+prev)
			}
			seen[a] = k
		}
	}
	listen("federation.listen", c.Federation.Listen)
	listen("federation.listen_tls", c.Federation.ListenTLS)
	listen("internal.listen", c.Internal.Listen)
	if len(c.Federation.Listen)+len(c.Federation.ListenTLS) == 0 {
		bad("federation.listen", "", "the federation face needs at least one address in listen or listen_tls")
	}
	if len(c.Internal.Listen) == 0 {
		bad("internal.listen", "", "the internal face needs at least one address")
	}
	if a := c.Internal.DNSListen; a != "" {
		if err := checkHostPort(a, true); err != nil {
			bad("internal.dns_listen", a, err.Error())
		}
	}

	if (c.Internal.CACertFile == "") != (c.Internal.CAKeyFile == "") {
		bad("internal.ca_cert_file", c.Internal.CACertFile, "internal.ca_cert_file and internal.ca_key_file go together: set both or neither")
	}
	for k, f := range map[string]string{"internal.ca_cert_file": c.Internal.CACertFile, "internal.ca_key_file": c.Internal.CAKeyFile} {
		if f != "" {
			if err := checkReadable(f); err != nil {
				bad(k, f, err.Error())
			}
		}
	}

	if runnable && len(c.Domains) == 0 {
		bad("domains", "", "list at least one internal domain the relay fronts (name and route)")
	}
	names := map[string]int{}
	for i := range c.Domains {
		d := &c.Domains[i]
		k := fmt.Sprintf("domains[%d]", i)
		name, err := NormalizeDomain(d.Name)
		if err != nil {
			bad(k+".name", d.Name, err.Error())
		} else {
			if j, dup := names[name]; dup {
				bad(k+".name", d.Name, fmt.Sprintf("already listed as domains[%d]", j))
			}
			names[name] = i
			d.Name = name
		}
		if d.Route == "" {
			bad(k+".route", "", "required: host:port of the internal server for this domain")
		} else if err := checkHostPort(d.Route, false); err != nil {
			bad(k+".route", d.Route, err.Error())
		}
		if (d.CertFile == "") != (d.KeyFile == "") {
			bad(k+".cert_file", d.CertFile, "cert_file and key_file go together: set both or neither")
		}
		for key, f := range map[string]string{k + ".cert_file": d.CertFile, k + ".key_file": d.KeyFile} {
			if f != "" {
				if err := checkReadable(f); err != nil {
					bad(key, f, err.Error())
				}
			}
		}
	}

	switch {
	case c.Dialback.Secret != "" && c.Dialback.SecretFile != "":
		bad("dialback.secret_file", c.Dialback.SecretFile, "set either dialback.secret or dialback.secret_file, not both")
	case c.Dialback.SecretFile != "":
		data, err := os.ReadFile(c.Dialback.SecretFile)
		if err != nil {
			bad("dialback.secret_file", c.Dialback.SecretFile, readReason(err))
		} else {
			c.Dialback.Secret = Secret(strings.TrimSpace(string(data)))
		}
	case c.Dialback.Secret == "":
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			bad("dialback.secret", "", "cannot generate a random secret: "+err.Error())
		}
		c.Dialback.Secret = Secret(hex.EncodeToString(b[:]))
		c.Warnings = append(c.Warnings, "dialback.secret is not set: using a random secret, so dialback keys "+
			"verify only on this instance and only until it restarts; set one shared secret for every instance")
	}
	if s := c.Dialback.Secret; s != "" && len(strings.TrimSpace(string(s))) < 16 {
		// The value itself is never printed.
		bad("dialback.secret", "", "too short: use at least 16 characters")
	}

	if c.TLS.CAFile != "" {
		if err := checkReadable(c.TLS.CAFile); err != nil {
			bad("tls.ca_file", c.TLS.CAFile, err.Error())
		}
	}

	for i, s := range c.DNS.Servers {
		k := fmt.Sprintf("dns.servers[%d]", i)
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
		}
		if err := checkHostPort(s, false); err != nil {
			bad(k, c.DNS.Servers[i], err.Error())
			continue
		}
		c.DNS.Servers[i] = s
	}
	positive("dns.timeout", c.DNS.Timeout, bad)
	if c.DNS.Retries < 0 || c.DNS.Retries > 10 {
		bad("dns.retries", strconv.Itoa(c.DNS.Retries), "must be between 0 and 10")
	}
	if c.DNS.CacheSize < 1 {
		bad("dns.cache_size", strconv.Itoa(c.DNS.CacheSize), "must be at least 1")
	}
	if c.DNS.MinTTL < 0 {
		bad("dns.min_ttl", c.DNS.MinTTL.String(), "must not be negative")
	}
	if c.DNS.MaxTTL < c.DNS.MinTTL {
		bad("dns.max_ttl", c.DNS.MaxTTL.String(), "must not be below dns.min_ttl ("+c.DNS.MinTTL.String()+")")
	}
	switch c.DNS.DNSSEC {
	case "validate", "trust-ad", "off":
	default:
		bad("dns.dnssec", c.DNS.DNSSEC, "must be validate, trust-ad or off")
	}
	if f := c.DNS.TrustAnchors; f != "" {
		if err := checkReadable(f); err != nil {
			bad("dns.trust_anchors", f, err.Error())
		}
	}
	for i, p := range c.DNS.AllowPrivate {
		if _, err := ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("dns.allow_private[%d]", i), p, "is not an address or a prefix (10.1.0.0/16)")
		}
	}
	overrides := make(map[string][]string, len(c.DNS.Overrides))
	for dom, targets := range c.DNS.Overrides {
		k := "dns.overrides." + dom
		name, err := NormalizeDomain(dom)
		if err != nil {
			bad(k, dom, err.Error())
			continue
		}
		if len(targets) == 0 {
			bad(k, "", "needs at least one target (host:port or tls://host:port)")
		}
		for i, t := range targets {
			if err := checkHostPort(strings.TrimPrefix(t, "tls://"), false); err != nil {
				bad(fmt.Sprintf("%s[%d]", k, i), t, err.Error())
			}
		}
		overrides[name] = targets
	}
	c.DNS.Overrides = overrides

	l := &c.Limits
	if l.MaxStanzaBytes < minStanzaBytes {
		bad("limits.max_stanza_bytes", strconv.Itoa(l.MaxStanzaBytes), "must be at least 10000 (RFC 6120 §13.12)")
	}
	if l.MaxPreauthBytes < 1024 || l.MaxPreauthBytes > l.MaxStanzaBytes {
		bad("limits.max_preauth_bytes", strconv.Itoa(l.MaxPreauthBytes), "must be between 1024 and limits.max_stanza_bytes")
	}
	if l.QueueStanzas < 1 {
		bad("limits.queue_stanzas", strconv.Itoa(l.QueueStanzas), "must be at least 1")
	}
	if l.QueueBytes < l.MaxStanzaBytes {
		bad("limits.queue_bytes", strconv.Itoa(l.QueueBytes), "must hold at least one stanza of limits.max_stanza_bytes")
	}
	if l.MaxStreams < 1 {
		bad("limits.max_streams", strconv.Itoa(l.MaxStreams), "must be at least 1")
	}
	if l.MaxStreamsPerIP < 1 || l.MaxStreamsPerIP > l.MaxStreams {
		bad("limits.max_streams_per_ip", strconv.Itoa(l.MaxStreamsPerIP), "must be between 1 and limits.max_streams")
	}
	positive("limits.idle_timeout", l.IdleTimeout, bad)
	positive("limits.connect_timeout", l.ConnectTimeout, bad)
	positive("limits.negotiation_timeout", l.NegotiationTimeout, bad)
	positive("limits.preauth_timeout", l.PreauthTimeout, bad)
	positive("limits.write_timeout", l.WriteTimeout, bad)
	positive("limits.ack_timeout", l.AckTimeout, bad)
	if l.RouteRetry < 0 {
		bad("limits.route_retry", l.RouteRetry.String(), "must not be negative")
	}
	positive("limits.drain_timeout", l.DrainTimeout, bad)
	positive("limits.bounce_idle_timeout", l.BounceIdleTimeout, bad)
	if l.LinkRate <= 0 {
		bad("limits.link_rate", strconv.FormatFloat(l.LinkRate, 'g', -1, 64), "must be positive")
	}
	if l.LinkRatePerDomain <= 0 {
		bad("limits.link_rate_per_domain", strconv.FormatFloat(l.LinkRatePerDomain, 'g', -1, 64), "must be positive")
	}
	if l.ConnectRatePerIP <= 0 {
		bad("limits.connect_rate_per_ip", strconv.FormatFloat(l.ConnectRatePerIP, 'g', -1, 64), "must be positive")
	}
	for _, v := range []struct {
		key string
		n   int
	}{{"limits.max_internal_streams", l.MaxInternalStreams}, {"limits.connect_burst_per_ip", l.ConnectBurstPerIP},
		{"limits.max_links", l.MaxLinks}, {"limits.link_burst", l.LinkBurst}, {"limits.link_burst_per_domain", l.LinkBurstPerDomain}, {"limits.verifications_per_stream", l.VerificationsPerStream},
		{"limits.verifications_per_ip", l.VerificationsPerIP}, {"limits.verifications", l.Verifications},
		{"limits.pairs_per_stream", l.PairsPerStream}} {
		if v.n < 1 {
			bad(v.key, strconv.Itoa(v.n), "must be at least 1")
		}
	}
	if l.RouteConnections < 1 {
		bad("limits.route_connections", strconv.Itoa(l.RouteConnections), "must be at least 1")
	}
	if l.RouteSetups < 1 || l.RouteSetups > l.RouteConnections {
		bad("limits.route_setups", strconv.Itoa(l.RouteSetups), "must be between 1 and limits.route_connections")
	}
	if l.RouteQueueBytes < l.MaxStanzaBytes {
		bad("limits.route_queue_bytes", strconv.Itoa(l.RouteQueueBytes), "must be at least limits.max_stanza_bytes")
	}
	if l.StallTimeout <= 0 || l.StallTimeout > l.WriteTimeout {
		bad("limits.stall_timeout", l.StallTimeout.String(), "must be positive and at most limits.write_timeout")
	}
	if l.StallBudget < l.StallTimeout {
		bad("limits.stall_budget", l.StallBudget.String(), "must be at least limits.stall_timeout")
	}
	if l.IdleTimeout > 0 && l.IdleTimeout < prosodyKeepalive {
		c.Warnings = append(c.Warnings, fmt.Sprintf("limits.idle_timeout %s is below Prosody's %s whitespace "+
			"keepalive: idle Prosody links will be closed and reopened", l.IdleTimeout, prosodyKeepalive))
	}

	if c.Breaker.Failures < 1 {
		bad("breaker.failures", strconv.Itoa(c.Breaker.Failures), "must be at least 1")
	}
	positive("breaker.open_for", c.Breaker.OpenFor, bad)
	if c.Breaker.MaxOpenFor < c.Breaker.OpenFor {
		bad("breaker.max_open_for", c.Breaker.MaxOpenFor.String(), "must not be below breaker.open_for")
	}
	positive("breaker.internal_open_for", c.Breaker.InternalOpenFor, bad)
	if c.Breaker.InternalMaxOpenFor < c.Breaker.InternalOpenFor {
		bad("breaker.internal_max_open_for", c.Breaker.InternalMaxOpenFor.String(),
			"must not be below breaker.internal_open_for")
	}

	c.Policy.validate(bad)

	if a := c.Admin.Listen; a != "" {
		if err := checkHostPort(a, true); err != nil {
			bad("admin.listen", a, err.Error())
		}
	}
	if f := c.Admin.TokenFile; f != "" {
		if b, err := os.ReadFile(f); err != nil {
			bad("admin.token_file", f, err.Error())
		} else if len(strings.TrimSpace(string(b))) < 16 {
			bad("admin.token_file", f, "the token must be at least 16 characters")
		}
	}
	if n := c.Admin.MetricsTopDomains; n < 0 || n > MaxMetricsTopDomains {
		bad("admin.metrics_top_domains", strconv.Itoa(n), fmt.Sprintf("must be between 0 and %d", MaxMetricsTopDomains))
	}
	return errs
}

func positive(key string, d time.Duration, bad func(key, value, reason string)) {
	if d <= 0 {
		bad(key, d.String(), "must be more than zero")
	}
}

func (p *Policy) validate(bad func(key, value, reason string)) {
	switch p.Default {
	case "allow", "deny":
	default:
		bad("policy.default", p.Default, "must be allow or deny")
	}
	patterns := func(key string, list []string) {
		for i, s := range list {
			n, err := NormalizePattern(s)
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", key, i), s, err.Error())
				continue
			}
			list[i] = n
		}
	}
	switch p.Explain {
	case "none", "brief", "full":
	default:
		bad("policy.explain", p.Explain, "must be none, brief or full")
	}
	patterns("policy.allow", p.Allow)
	patterns("policy.deny", p.Deny)
	for i := range p.Rules {
		r := &p.Rules[i]
		k := fmt.Sprintf("policy.rules[%d]", i)
		if len(r.Match) == 0 {
			bad(k+".match", "", "required: the domain patterns this rule applies to")
		}
		patterns(k+".match", r.Match)
		for j, kind := range r.Kinds {
			switch kind {
			case "message", "presence", "iq":
			default:
				bad(fmt.Sprintf("%s.kinds[%d]", k, j), kind, "must be message, presence or iq")
			}
		}
		for key, v := range map[string]string{
			k + ".subscriptions": r.Subscriptions, k + ".subscriptions_in": r.SubscriptionsIn,
			k + ".subscriptions_out": r.SubscriptionsOut,
		} {
			if v != "" && v != "allow" && v != "deny" {
				bad(key, v, "must be allow or deny")
			}
		}
		if r.SubscriptionsIn == "" {
			r.SubscriptionsIn = r.Subscriptions
		}
		if r.SubscriptionsOut == "" {
			r.SubscriptionsOut = r.Subscriptions
		}
		for j, a := range r.RequireAuth {
			switch a {
			case "external", "dialback":
			default:
				bad(fmt.Sprintf("%s.require_auth[%d]", k, j), a, "must be external or dialback")
			}
		}
		if r.MaxStanzaBytes < 0 {
			bad(k+".max_stanza_bytes", strconv.Itoa(r.MaxStanzaBytes), "must not be negative")
		}
		if r.Rate < 0 {
			bad(k+".rate", strconv.FormatFloat(r.Rate, 'g', -1, 64), "must not be negative")
		}
		if r.Burst < 0 {
			bad(k+".burst", strconv.Itoa(r.Burst), "must not be negative")
		}
		for j, pin := range r.PinSHA256 {
			d, err := ParsePin(pin)
			if err != nil {
				bad(fmt.Sprintf("%s.pin_sha256[%d]", k, j), pin, err.Error())
				continue
			}
			r.PinSHA256[j] = d
		}
		if r.Rate > 0 && r.Burst == 0 {
			r.Burst = max(1, int(r.Rate+0.999))
		}
	}
}

// NormalizeDomain checks that s is an XMPP domain (a domainpart alone, no
// localpart or resource) and returns its lower-case ASCII (IDNA) form.
func NormalizeDomain(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty domain")
	}
	if strings.HasSuffix(s, ".") {
		return "", errors.New("no trailing dot: write the domain as in a JID")
	}
	j, err := jid.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a valid XMPP domain: %v", err)
	}
	if j.Localpart() != "" || j.Resourcepart() != "" {
		return "", errors.New("a domain only, without user@ or /resource")
	}
	if _, err := netip.ParseAddr(strings.Trim(j.Domainpart(), "[]")); err == nil {
		return j.Domainpart(), nil
	}
	a, err := idna.Lookup.ToASCII(j.Domainpart())
	if err != nil {
		return "", fmt.Errorf("not a valid domain name: %v", err)
	}
	return strings.ToLower(a), nil
}

// NormalizePattern checks a domain pattern, "example.org" or
// "*.example.org", and returns it in normalised form.
func NormalizePattern(s string) (string, error) {
	rest, wild := strings.CutPrefix(s, "*.")
	if strings.Contains(rest, "*") {
		return "", errors.New(`a wildcard is allowed only as the whole first label ("*.example.org")`)
	}
	d, err := NormalizeDomain(rest)
	if err != nil {
		return "", err
	}
	if wild {
		return "*." + d, nil
	}
	return d, nil
}

// checkHostPort validates "host:port"; an empty host and port 0 are allowed
// only for addresses we listen on.
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return errors.New("port is not a number")
	}
	if n < 0 || n > 65535 {
		return errors.New("port out of range")
	}
	if n == 0 && !listen {
		return errors.New("port 0 is only for listening")
	}
	if host == "" {
		if !listen {
			return errors.New("host is missing")
		}
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if _, err := idna.Lookup.ToASCII(host); err != nil || strings.ContainsAny(host, " /@") {
		return errors.New("host is neither an IP address nor a host name")
	}
	return nil
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.New(readReason(err))
	}
	return f.Close()
}

// ParsePrefix parses an address prefix of dns.allow_private: "10.1.0.0/16",
// or one address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePin reads a SHA-256 SubjectPublicKeyInfo pin, base64 (standard or
// URL alphabet, padded or not) or hex, and returns it in standard base64.
func ParsePin(s string) (string, error) {
	s = strings.TrimSpace(strings.TrimPrefix(s, "sha256/"))
	var raw []byte
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			raw = b
		}
	}
	if raw == nil {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				raw = b
				break
			}
		}
	}
	if len(raw) != sha256.Size {
		return "", errors.New("not a SHA-256 digest in base64 or hex (32 bytes)")
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}
