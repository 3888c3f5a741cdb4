package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"mellium.im/xmpp/stanza"

	"github.com/fedrelay/fedrelay/cmd/fedrelay/app"
	"github.com/fedrelay/fedrelay/config"
	"github.com/fedrelay/fedrelay/policy"
	"github.com/fedrelay/fedrelay/routing"
)

// baseConfig is laid under every test configuration: listeners on loopback
// addresses of the relay's own ($IP for the federation face, $INTERNAL_IP
// for the internal face; $TLS_IP is there for federation.listen_tls, since
// no two listeners may share an address:port, port 0 included), no admin
// endpoint, DNS only from the test,
// answers not cached, and timeouts short enough for tests but long enough
// for a loaded machine running -race.
const baseConfig = `
log: {level: debug, format: text}
federation: {listen: ["$IP:0"], listen_tls: [], secure_auth: false}
internal: {listen: ["$INTERNAL_IP:0"], dns_listen: ""}
dns: {servers: ["$DNS"], timeout: 1s, retries: 1, min_ttl: 0s, max_ttl: 1s, allow_private: ["127.0.0.0/8"]}
limits: {connect_timeout: 2s, negotiation_timeout: 5s, idle_timeout: 1m, route_retry: 1s, connect_rate_per_ip: 1000000, connect_burst_per_ip: 1000000, link_rate_per_domain: 1000000, link_burst_per_domain: 1000000, preauth_timeout: 5s}
breaker: {failures: 3, open_for: 300ms, max_open_for: 2s}
admin: {listen: ""}
`

// noDNS is where a relay started without WithDNS sends its queries: nothing
// answers there, so no test ever reaches a real nameserver.
const noDNS = "127.0.0.1:9"

// Relay is a running relay started by StartRelay.
type Relay struct {
	*app.Relay
	// Name labels the relay in failure output.
	Name string
	// IP, TLSIP and InternalIP are the loopback addresses of its
	// federation STARTTLS, federation direct TLS and internal listeners
	// ($IP, $TLS_IP and $INTERNAL_IP in configurations).
	IP, TLSIP, InternalIP string
	// Config is the configuration it runs with (the last one reloaded).
	Config *config.Config
	// ConfigPath is the file Config was loaded from, which a reload
	// through the admin API reads again.
	ConfigPath string
	// Logs keeps everything it logged.
	Logs *Logs

	// FederationAddr, FederationTLSAddr and InternalAddr are the first
	// listening address of each kind ("" if none); DNSAddr is the internal
	// DNS responder's (internal.dns_listen), "" if not configured.
	FederationAddr, FederationTLSAddr, InternalAddr, DNSAddr string

	opts    relayOptions
	mu      sync.Mutex
	bounces []Bounce
}

// Bounce is a stanza the relay answered with an error, as its router
// reported it (app.Options.OnBounce).
type Bounce struct {
	Kind         policy.Kind
	From, To, ID string
	Type         string // the bounced stanza's type
	Condition    stanza.Condition
	ErrorType    stanza.ErrorType
	Text         string
	// Latency is the time from reading the stanza to bouncing it, and At
	// the time of the bounce.
	Latency time.Duration
	At      time.Time
}

// Option adjusts StartRelay.
type Option func(*relayOptions)

type relayOptions struct {
	name     string
	dns      string
	onBounce func(*routing.Stanza, stanza.Error)
}

// WithDNS makes the relay resolve remote domains with d.
func WithDNS(d *DNS) Option { return func(o *relayOptions) { o.dns = d.Addr() } }

// WithName labels the relay in failure output.
func WithName(name string) Option { return func(o *relayOptions) { o.name = name } }

// WithOnBounce adds a hook called on every bounce, after the relay's own
// record of it.
func WithOnBounce(fn func(*routing.Stanza, stanza.Error)) Option {
	return func(o *relayOptions) { o.onBounce = fn }
}

// StartRelay starts a relay from configYAML laid over the test defaults
// (baseConfig): keys the test sets replace the defaults', lists included.
// "$IP", "$TLS_IP" and "$INTERNAL_IP" in configYAML stand for the relay's
// own loopback addresses (see baseConfig). The
// configuration must name the domains; a dialback secret is generated
// unless it sets one. The relay is shut down when the test ends, and its
// log is printed if the test failed.
func StartRelay(t testing.TB, configYAML string, opts ...Option) *Relay {
	t.Helper()
	r := &Relay{IP: NextIP(), TLSIP: NextIP(), InternalIP: NextIP(), Logs: NewLogs()}
	r.opts.dns = noDNS
	for _, o := range opts {
		o(&r.opts)
	}
	r.Name = r.opts.name
	if r.Name == "" {
		r.Name = "relay@" + r.IP
	}
	var b [16]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	cfg := r.loadConfig(t, configYAML, secret)
	r.Config = cfg

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", r.Name, r.Logs.Dump())
		}
	})
	log := slog.New(r.Logs).With("relay", r.Name)
	load := func() (*config.Config, error) {
		return config.Load(config.Options{Path: r.ConfigPath, Getenv: func(string) (string, bool) { return "", false }})
	}
	rel, err := app.New(cfg, log, app.Options{OnBounce: r.onBounce, Load: load, Version: "test"})
	if err != nil {
		t.Fatalf("%s: app.New: %v", r.Name, err)
	}
	if err := rel.Start(); err != nil {
		t.Fatalf("%s: Start: %v", r.Name, err)
	}
	r.Relay = rel
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		defer cancel()
		if err := rel.Shutdown(ctx); err != nil {
			t.Errorf("%s: Shutdown: %v", r.Name, err)
		}
		for drained := false; !drained; {
			select {
			case err := <-rel.Err():
				t.Errorf("%s: %v", r.Name, err)
			default:
				drained = true
			}
		}
	})
	first := func(face policy.Face, direct bool) string {
		if a := rel.Addrs(face, direct); len(a) > 0 {
			return a[0]
		}
		return ""
	}
	r.FederationAddr = first(policy.Federation, false)
	r.FederationTLSAddr = first(policy.Federation, true)
	r.InternalAddr = first(policy.Internal, false)
	if cfg.Internal.DNSListen != "" {
		rec := r.Logs.Wait(t, "internal DNS responder")
		r.DNSAddr = rec.Attrs["addr"]
	}
	return r
}

// loadConfig lays configYAML over baseConfig, writes the result to a file
// and loads it as fedrelay would, without the process environment.
func (r *Relay) loadConfig(t testing.TB, configYAML, secret string) *config.Config {
	t.Helper()
	expand := strings.NewReplacer("$INTERNAL_IP", r.InternalIP, "$TLS_IP", r.TLSIP, "$IP", r.IP, "$DNS", r.opts.dns)
	var base, over map[string]any
	if err := yaml.Unmarshal([]byte(expand.Replace(baseConfig)), &base); err != nil {
		t.Fatalf("base configuration: %v", err)
	}
	if err := yaml.Unmarshal([]byte(expand.Replace(configYAML)), &over); err != nil {
		t.Fatalf("test configuration: %v\n%s", err, configYAML)
	}
	merged := merge(base, over)
	if db, _ := merged["dialback"].(map[string]any); db == nil || (db["secret"] == nil && db["secret_file"] == nil) {
		merged["dialback"] = merge(map[string]any{"secret": secret}, db)
	}
	out, err := yaml.Marshal(merged)
	if err != nil {
		t.Fatalf("configuration: %v", err)
	}
	path := filepath.Join(t.TempDir(), "fedrelay.yaml")
	r.ConfigPath = path
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatalf("configuration: %v", err)
	}
	cfg, err := config.Load(config.Options{Path: path, Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("%s: configuration:\n%v\n---\n%s", r.Name, err, out)
	}
	return cfg
}

// merge lays over on base: mappings are merged key by key, everything else
// (lists included) is replaced.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = merge(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}

// ReloadYAML applies a new configuration (laid over the test defaults like
// StartRelay's, with the same secret, addresses and DNS) with
// app.Relay.Reload.
func (r *Relay) ReloadYAML(t testing.TB, configYAML string) {
	t.Helper()
	cfg := r.loadConfig(t, configYAML, string(r.Config.Dialback.Secret.Reveal()))
	if err := r.Relay.Reload(cfg); err != nil {
		t.Fatalf("%s: Reload: %v", r.Name, err)
	}
	r.Config = cfg
}

func (r *Relay) onBounce(st *routing.Stanza, e stanza.Error) {
	b := Bounce{Kind: st.Kind, From: st.From, To: st.To, ID: st.ID, Type: st.Type,
		Condition: e.Condition, ErrorType: e.Type, Text: e.Text[""], At: time.Now()}
	b.Latency = b.At.Sub(st.Received)
	r.mu.Lock()
	r.bounces = append(r.bounces, b)
	r.mu.Unlock()
	if r.opts.onBounce != nil {
		r.opts.onBounce(st, e)
	}
}

// Bounces returns the bounces so far.
func (r *Relay) Bounces() []Bounce {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Bounce(nil), r.bounces...)
}

// WaitBounce waits for the bounce of the stanza with this id.
func (r *Relay) WaitBounce(t testing.TB, id string) Bounce {
	t.Helper()
	var found Bounce
	Eventually(t, func() bool {
		for _, b := range r.Bounces() {
			if b.ID == id {
				found = b
				return true
			}
		}
		return false
	}, "%s: bounce of %s", r.Name, id)
	return found
}

// Stats formats the router's counters.
func (r *Relay) Stats() string {
	s := r.Router.Stats()
	return fmt.Sprintf("accepted=%d delivered=%d bounced=%d dropped=%d refused=%d breaker_bounces=%d "+
		"bounces_delivered=%d bounces_dropped=%d",
		s.Accepted.Load(), s.Delivered.Load(), s.Bounced.Load(), s.Dropped.Load(), s.Refused.Load(),
		s.BreakerBounces.Load(), s.BouncesDelivered.Load(), s.BouncesDropped.Load())
}

// WaitBalanced waits until every stanza the relay accepted is accounted for
// (routing.Stats.Balanced: accepted = delivered + bounced + dropped), which
// holds once its links have settled, and fails the test otherwise.
func (r *Relay) WaitBalanced(t testing.TB) {
	t.Helper()
	if !poll(WaitTimeout, r.Router.Stats().Balanced) {
		t.Errorf("%s: router counts do not balance: %s", r.Name, r.Stats())
	}
}

// Balanced checks every relay's counts (WaitBalanced).
func Balanced(t testing.TB, relays ...*Relay) {
	t.Helper()
	for _, r := range relays {
		r.WaitBalanced(t)
	}
}
