package app

import (
	"cmp"
	"context"
	"crypto/x509"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
	"github.com/fedrelay/fedrelay/s2s"
)

// Version is the relay's version for fedrelay_build_info; cmd/fedrelay sets
// it from its -ldflags "-X main.version=…" value. Empty means the module
// version, or "devel".
var Version = ""

// reloads remembers the outcome of the last reload, for /metrics.
type reloads struct {
	mu      sync.Mutex
	at      time.Time // of the last attempt; zero before any
	ok      bool
	success int64
	failure int64
}

func (r *reloads) note(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at, r.ok = time.Now(), err == nil
	if err == nil {
		r.success++
	} else {
		r.failure++
	}
}

// ReloadFailed records a reload that was refused before Reload could apply
// it (the configuration file did not load or validate), for /metrics.
func (r *Relay) ReloadFailed(err error) { r.reloads.note(err) }

// ReopenAudit opens policy.audit_log again by its name (log rotation; run
// calls it on SIGHUP). On failure the current file stays in use.
func (r *Relay) ReopenAudit() error { return r.audit.reopen() }

// AdminAddr returns the address the admin endpoint listens on, "" if none.
func (r *Relay) AdminAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.adminAddr
}

// metricsCollector exports what the router, the server, the resolver, the
// certificate store and the audit hook count, read at each scrape.
type metricsCollector struct {
	r          *Relay
	started    time.Time
	topDomains int

	stanzas, bounces, refusals, streamsOpen                 *prometheus.Desc
	setups, setupFailures, setupDuration                    *prometheus.Desc
	dialback, external                                      *prometheus.Desc
	dnsQueries, dnsFailures, dnsHits, dnsMisses             *prometheus.Desc
	domainWritten, domainQueued, domainLinks, domainBreaker *prometheus.Desc
	breakers, queued, certExpiry                            *prometheus.Desc
	reloadTime, reloadOK, reloadsTotal, buildInfo           *prometheus.Desc
	ownWritten, ownDropped, pingsAnswered, pendingIQErrors  *prometheus.Desc
}

func newMetricsCollector(r *Relay) *metricsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fedrelay_"+name, help, labels, nil)
	}
	m := &metricsCollector{r: r, started: time.Now()}
	m.stanzas = d("stanzas_total", "Stanzas by face, direction and kind: direction in counts the stanzas read from authenticated streams on the face (accepted), out those written to the face's links (delivered: handed to TCP, not acknowledged). The relay's own bounces and answers are in neither.", "face", "direction", "kind")
	m.bounces = d("bounces_total", "Stanzas answered with an error stanza, by the error's condition (other: any condition not listed in docs/metrics.md).", "condition")
	m.refusals = d("refusals_total", "Stanzas and stream pairs refused by the policy or the routing rules, by the rule that refused (labels from the configuration, bounded).", "event", "face", "reason", "rule")
	m.streamsOpen = d("streams_open", "Streams open by face, direction (in: a peer opened it, out: a link of the relay) and how its pairs are authenticated (none: not yet; for an inbound stream the strongest among its pairs).", "face", "direction", "auth")
	m.setups = d("stream_setups_total", "Setups of outbound links (resolution, connection, TLS, peer check, authentication; an internal route's retries are one setup).", "face")
	m.setupFailures = d("stream_setup_failures_total", "Failed setups of outbound links, by the stage that failed: dns, connect, tls, peer (the receiving server's identity or the policy), auth, other.", "face", "stage")
	m.setupDuration = d("stream_setup_duration_seconds", "Time from the start of an outbound link to its stream being authenticated (outcome up) or its setup failing (outcome failed).", "face", "outcome")
	m.dialback = d("dialback_total", "Dialback answers by role: receiving (the relay answered a peer's db:result after verifying it), authoritative (the relay answered a db:verify), initiating (a peer answered the relay's db:result).", "role", "answer")
	m.external = d("sasl_external_total", "SASL EXTERNAL exchanges by direction (in: a peer authenticated to the relay, out: the relay to a peer) and outcome.", "direction", "outcome")
	m.dnsQueries = d("dns_queries_total", "Questions asked of the nameservers (one per name and type, whatever retries it took).")
	m.dnsFailures = d("dns_query_failures_total", "Questions that got no usable answer (timeouts, SERVFAIL and the like; NXDOMAIN is an answer).")
	m.dnsHits = d("dns_cache_hits_total", "Lookups answered from the DNS cache.")
	m.dnsMisses = d("dns_cache_misses_total", "Lookups not in the DNS cache (or expired there).")
	m.domainWritten = d("domain_stanzas_written_total", "Stanzas written towards a destination domain (bounces included), for the domains the configuration names and the admin.metrics_top_domains busiest; approximate for a domain that dropped out of the tracked ones (docs/metrics.md).", "domain")
	m.domainQueued = d("domain_queued_stanzas", "Stanzas waiting in the links towards a destination domain (same domains as fedrelay_domain_stanzas_written_total).", "domain")
	m.domainLinks = d("domain_links", "Outbound links open towards a destination domain (one per domain pair; same domains as fedrelay_domain_stanzas_written_total).", "domain")
	m.domainBreaker = d("domain_breaker_state", "Circuit breaker of a destination domain: 0 closed, 1 half-open, 2 open (same domains as fedrelay_domain_stanzas_written_total).", "domain")
	m.breakers = d("breakers", "Circuit breakers kept (one per destination domain tried, at most 65536), by state.", "state")
	m.queued = d("queued_stanzas", "Stanzas waiting in all outbound links.")
	m.certExpiry = d("certificate_expiry_timestamp_seconds", "When the certificate the relay presents for a fronted domain expires (Unix time).", "domain")
	m.reloadTime = d("config_last_reload_timestamp_seconds", "When the configuration was last reloaded or a reload refused (Unix time); the start time before any reload.")
	m.reloadOK = d("config_last_reload_successful", "Whether the last reload was applied (1) or refused (0); 1 before any reload.")
	m.reloadsTotal = d("config_reloads_total", "Reloads by outcome (success, failure).", "outcome")
	m.buildInfo = d("build_info", "The relay's build: version, VCS revision and Go version; the value is 1.", "version", "revision", "goversion")
	m.ownWritten = d("own_stanzas_written_total", "Stanzas the relay made itself (bounces, answers to pings) written to a link.")
	m.ownDropped = d("own_stanzas_dropped_total", "Stanzas the relay made itself that could not be routed and were dropped (a bounce is never bounced).")
	m.pingsAnswered = d("pings_answered_total", "XEP-0199 pings to a domain the relay speaks as, answered by the relay.")
	m.pendingIQErrors = d("iq_link_errors_total", "Errors sent for IQ requests written on a link that died before they were answered (RFC 6120 §8.2.3).")
	m.topDomains = r.cfg.Admin.MetricsTopDomains
	return m
}

func (m *metricsCollector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{m.stanzas, m.bounces, m.refusals, m.streamsOpen, m.setups, m.setupFailures,
		m.setupDuration, m.dialback, m.external, m.dnsQueries, m.dnsFailures, m.dnsHits, m.dnsMisses,
		m.domainWritten, m.domainQueued, m.domainLinks, m.domainBreaker, m.breakers, m.queued, m.certExpiry,
		m.reloadTime, m.reloadOK, m.reloadsTotal, m.buildInfo, m.ownWritten, m.ownDropped, m.pingsAnswered,
		m.pendingIQErrors}
}

// Describe implements prometheus.Collector.
func (m *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	r := m.r
	counter := func(d *prometheus.Desc, n int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	faces := []policy.Face{policy.Federation, policy.Internal}

	rs := r.Router.Stats()
	for _, f := range faces {
		for _, dir := range []policy.Direction{policy.In, policy.Out} {
			for _, k := range []policy.Kind{policy.Message, policy.Presence, policy.IQ} {
				counter(m.stanzas, rs.Traffic.Load(f, dir, k), f.String(), dir.String(), k.String())
			}
		}
	}
	for i, c := range routing.BounceConditions {
		counter(m.bounces, rs.Bounces.Load(i), c)
	}
	for k, n := range r.audit.refusals.snapshot() {
		counter(m.refusals, n, k.event, k.face, k.reason, k.rule)
	}
	counter(m.ownWritten, rs.BouncesDelivered.Load())
	counter(m.ownDropped, rs.BouncesDropped.Load())
	counter(m.pingsAnswered, rs.Answered.Load())
	counter(m.pendingIQErrors, rs.PendingIQErrors.Load())

	for _, s := range r.Server.OpenStreams() {
		gauge(m.streamsOpen, float64(s.N), s.Face, s.Dir, s.Auth)
	}
	sm := r.Server.Metrics()
	for _, c := range sm.Setups() {
		counter(m.setups, c.N, c.Labels...)
	}
	for _, c := range sm.SetupFailures() {
		counter(m.setupFailures, c.N, c.Labels...)
	}
	sm.SetupDurations(func(face, outcome string, h s2s.HistogramSnapshot) {
		ch <- prometheus.MustNewConstHistogram(m.setupDuration, h.Count, h.Sum, h.Buckets, face, outcome)
	})
	for _, c := range sm.Dialback() {
		counter(m.dialback, c.N, c.Labels...)
	}
	for _, c := range sm.External() {
		counter(m.external, c.N, c.Labels...)
	}

	ds := r.resolver.Stats()
	counter(m.dnsQueries, ds.Queries.Load())
	counter(m.dnsFailures, ds.Failures.Load())
	counter(m.dnsHits, ds.CacheHits.Load())
	counter(m.dnsMisses, ds.CacheMisses.Load())

	cfg := r.Config()
	loads := r.Server.Domains()
	queued := 0
	for _, l := range loads {
		queued += l.Queued
	}
	gauge(m.queued, float64(queued))
	for _, d := range selectDomains(cfg, loads, m.topDomains) {
		l := loads[d]
		counter(m.domainWritten, l.Written, d)
		gauge(m.domainQueued, float64(l.Queued), d)
		gauge(m.domainLinks, float64(l.Links), d)
		gauge(m.domainBreaker, float64(r.Router.Breaker(d)), d)
	}
	kept, open, halfOpen := r.Router.BreakerCounts()
	gauge(m.breakers, float64(kept-open-halfOpen), "closed")
	gauge(m.breakers, float64(halfOpen), "half_open")
	gauge(m.breakers, float64(open), "open")

	for _, d := range cfg.Domains {
		if c, err := r.certificate(d.Name); err == nil {
			gauge(m.certExpiry, float64(c.NotAfter.Unix()), d.Name)
		}
	}

	r.reloads.mu.Lock()
	at, ok, succ, fail := r.reloads.at, r.reloads.ok, r.reloads.success, r.reloads.failure
	r.reloads.mu.Unlock()
	if at.IsZero() {
		at, ok = m.started, true
	}
	gauge(m.reloadTime, float64(at.UnixMilli())/1e3)
	gauge(m.reloadOK, boolValue(ok))
	counter(m.reloadsTotal, succ, "success")
	counter(m.reloadsTotal, fail, "failure")

	version, revision := buildVersion()
	gauge(m.buildInfo, 1, version, revision, runtime.Version())
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// certificate returns the leaf the relay presents for a configured domain,
// never generating one for a domain the store was not built with.
func (r *Relay) certificate(domain string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.certs.ConfiguredOnly().Certificate(ctx, domain)
	if err != nil {
		return nil, err
	}
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// NamedDomains returns the domains the configuration names, which always
// have per-domain series: the internal domains, and the exact domains (not
// the "*." patterns) of policy.allow, policy.deny and policy.rules[].match.
func NamedDomains(cfg *config.Config) []string {
	var out []string
	for _, d := range cfg.Domains {
		out = append(out, d.Name)
	}
	add := func(patterns []string) {
		for _, p := range patterns {
			if !strings.Contains(p, "*") {
				out = append(out, strings.ToLower(p))
			}
		}
	}
	add(cfg.Policy.Allow)
	add(cfg.Policy.Deny)
	for _, ru := range cfg.Policy.Rules {
		add(ru.Match)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// selectDomains picks the domains with per-domain series: those the
// configuration names, and the top busiest others by stanzas written (ties
// by name, so the choice is stable).
func selectDomains(cfg *config.Config, loads map[string]s2s.DomainLoad, top int) []string {
	named := NamedDomains(cfg)
	var others []string
	for d := range loads {
		if _, found := slices.BinarySearch(named, d); !found {
			others = append(others, d)
		}
	}
	slices.SortFunc(others, func(a, b string) int {
		if c := cmp.Compare(loads[b].Written, loads[a].Written); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if len(others) > top {
		others = others[:top]
	}
	return append(named, others...)
}

// buildVersion is the version and VCS revision for fedrelay_build_info.
func buildVersion() (version, revision string) {
	version = Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "devel"
	}
	return version, revision
}
